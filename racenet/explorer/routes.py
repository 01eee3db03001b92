"""The explorer's routes: HTML pages under `/explorer`, `/` redirecting there, and `/explorer/api/live`
(the height and latest blocks as JSON, which every page polls to update itself without a reload)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from racenet.explorer import data, pages
from racenet.explorer.html import PREFIX, error_box, page
from racenet.node.client import ChainClient, ClientError

Page = Callable[..., pages.Content]


def render(ex: pages.Explorer, build: Page, *args: Any) -> HTMLResponse:
    """A page, or the layout around an error box if the chain failed (503) or the address is wrong (400)."""
    status = 200
    try:
        title, content = build(ex, *args)
    except ClientError as e:
        title, content, status = "chain unreachable", error_box(f"the chain did not answer: {e}"), 503
    except (KeyError, TypeError) as e:
        title, content, status = "unexpected answer", error_box(f"the node answered an unexpected shape: {e!r}"), 502
    except ValueError as e:
        title, content, status = "bad address", error_box(f"this page does not exist: {e}"), 400
    try:
        height: object = ex.height()
    except ClientError:
        height = "?"
    return HTMLResponse(page(title, height, content), status_code=status)


def live(ex: pages.Explorer) -> dict[str, Any]:
    """The latest height and blocks (and a sample of the Race weights, for the weights plot)."""
    height = ex.height()
    blocks = data.recent_blocks(ex.client, height, pages.HOME_BLOCKS)
    ex.nodes()
    return {"height": height, "blocks": [{"height": b.height, "time": b.time, "txs": len(b.txs)} for b in blocks]}


def explorer_router(client: ChainClient, training_dir: Path | None = None) -> APIRouter:
    """The explorer's routes over `client`; `training_dir` (a daemon's) adds this node's loss curves."""
    ex = pages.Explorer(client, data.WeightHistory(), training_dir)
    router = APIRouter(include_in_schema=False)

    async def show(build: Page, *args: Any) -> HTMLResponse:
        return await run_in_threadpool(render, ex, build, *args)

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse(PREFIX)

    @router.get(PREFIX)
    async def overview() -> HTMLResponse:
        return await show(pages.overview)

    @router.get(PREFIX + "/api/live")
    async def live_json() -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(live, ex))
        except ClientError as e:
            return JSONResponse({"error": str(e)}, status_code=503)

    @router.get(PREFIX + "/blocks")
    async def blocks(top: str = "0") -> HTMLResponse:
        return await show(lambda e: pages.blocks(e, int(top)))

    @router.get(PREFIX + "/blocks/{height}")
    async def block(height: str) -> HTMLResponse:
        return await show(lambda e: pages.block_page(e, int(height)))

    @router.get(PREFIX + "/txs/{hash_hex}")
    async def tx(hash_hex: str) -> HTMLResponse:
        return await show(pages.tx_page, hash_hex)

    @router.get(PREFIX + "/requests/lookup")
    async def lookup(id: str = "") -> HTMLResponse:
        return await show(pages.request_page, id.strip().removeprefix("chatcmpl-").removeprefix("cmpl-"))

    @router.get(PREFIX + "/requests/{request_hex}")
    async def request(request_hex: str) -> HTMLResponse:
        return await show(pages.request_page, request_hex)

    @router.get(PREFIX + "/rewards/{bech32}")
    async def account(bech32: str) -> HTMLResponse:
        return await show(pages.account_page, bech32)

    @router.get(PREFIX + "/gov/{proposal_id}")
    async def proposal(proposal_id: str) -> HTMLResponse:
        return await show(lambda e: pages.proposal_page(e, int(proposal_id)))

    @router.get(PREFIX + "/training/{job_id}")
    async def job(job_id: str) -> HTMLResponse:
        return await show(lambda e: pages.job_page(e, int(job_id)))

    simple = {
        "/race": pages.race_page,
        "/beacon": pages.beacon_page,
        "/requests": pages.requests_page,
        "/rewards": pages.rewards_page,
        "/tokenomics": pages.tokenomics_page,
        "/pricing": pages.pricing_page,
        "/gov": pages.gov_page,
        "/training": pages.training_page,
    }
    for path, build in simple.items():
        router.add_api_route(PREFIX + path, _simple(show, build), methods=["GET"], response_class=HTMLResponse)
    return router


def _simple(show: Callable[..., Any], build: Page) -> Callable[[], Any]:
    """The handler of a page that takes no argument."""

    async def handler() -> HTMLResponse:
        response: HTMLResponse = await show(build)
        return response

    return handler

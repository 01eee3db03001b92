"""A client for CometBFT's RPC (also served by the embedded engine): typed queries and broadcasts.

Queries take the chain's own `QuerySpec`s and answer the same dataclasses the chain built, e.g.
`client.query(race.CYCLE).phase`. Signing and sending live in `racenet.node.sender.TxSender`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

import httpx

from racenet.chain.errors import Code
from racenet.chain.modules import auth
from racenet.chain.query import QuerySpec

DEFAULT_NODE = "http://127.0.0.1:26657"
A = TypeVar("A")
R = TypeVar("R")


class ClientError(Exception):
    """The node could not be reached or answered with an error."""


class TxRejected(ClientError):
    """The chain rejected a transaction (in CheckTx or when executing it)."""

    def __init__(self, code: int, log: str) -> None:
        name = Code(code).name.lower() if code in Code._value2member_map_ else "unknown"
        super().__init__(f"transaction rejected: {log} (code {code} {name})")
        self.code = code
        self.log = log
        self.name = name


@dataclass(frozen=True)
class TxOutcome:
    """A committed transaction: hash, height, result code/log and the data its messages returned."""

    hash: str
    height: int
    code: int
    log: str
    data: bytes = b""


class ChainClient:
    """Typed calls over a node's RPC; every request has a timeout. A context manager (closes its pool)."""

    def __init__(self, url: str = DEFAULT_NODE, timeout: float = 10.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def call(self, method: str, **params: str) -> Any:
        """One RPC call in URI form; returns `result` or raises ClientError with the node's message."""
        return self._result(lambda: self.http.get(f"/{method}", params=params))

    def post(self, method: str, params: dict[str, Any]) -> Any:
        """One JSON-RPC call over POST (no URL length limit, e.g. for large transactions)."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        return self._result(lambda: self.http.post("/", json=body))

    def _result(self, send: Callable[[], httpx.Response]) -> Any:
        try:
            body = send().json()
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise ClientError(f"cannot reach node at {self.url}: {e}") from e
        except ValueError as e:
            raise ClientError(f"node at {self.url} did not answer JSON") from e
        if "error" in body:
            err = body["error"]
            raise ClientError(str(err.get("data") or err.get("message")))
        return body["result"]

    def status(self) -> dict[str, Any]:
        """CometBFT's `/status` document (node info, sync info)."""
        result: dict[str, Any] = self.call("status")
        return result

    def height(self) -> int:
        """Latest committed height."""
        return int(self.status()["sync_info"]["latest_block_height"])

    def chain_id(self) -> str:
        """The chain id the node runs."""
        return str(self.status()["node_info"]["network"])

    @overload
    def query(self, spec: QuerySpec[None, R]) -> R: ...

    @overload
    def query(self, spec: QuerySpec[A, R], arg: A) -> R: ...

    def query(self, spec: QuerySpec[Any, R], arg: Any = None) -> R:
        """The chain's answer to a typed query, as the spec's response dataclass."""
        doc = self.query_raw(spec.path, spec.arg.encode(arg))
        try:
            return spec.decode(doc)
        except ValueError as e:
            raise ClientError(f"query {spec.path}: the node answered an unexpected shape: {e}") from e

    def query_raw(self, path: str, data: bytes = b"") -> Any:
        """ABCI query `path` with `data` (text such as an address); the JSON value as the node sent it."""
        response = self.call("abci_query", path=f'"{path}"', data="0x" + data.hex())["response"]
        if int(response.get("code", 0)) != 0:
            raise ClientError(f"query {path} failed: {response.get('log', '')} (code {response['code']})")
        return json.loads(base64.b64decode(response.get("value") or ""))

    def sequence(self, address: bytes) -> int:
        """The next sequence number the account must use."""
        return self.query(auth.ACCOUNT, address).sequence

    def broadcast(self, tx: bytes) -> str:
        """Submit a transaction through CheckTx; return its hash or raise TxRejected."""
        result = self.post("broadcast_tx_sync", {"tx": base64.b64encode(tx).decode()})
        if int(result["code"]) != 0:
            raise TxRejected(int(result["code"]), str(result.get("log", "")))
        return str(result["hash"])

    def wait_for_tx(self, hash_hex: str, timeout: float = 30.0) -> TxOutcome:
        """Poll until the transaction is in a committed block; raise ClientError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = self.call("tx", hash="0x" + hash_hex)
            except ClientError:
                if time.monotonic() > deadline:
                    raise ClientError(f"transaction {hash_hex} not committed within {timeout:.0f}s") from None
                time.sleep(0.2)
                continue
            r = found["tx_result"]
            data = base64.b64decode(r.get("data") or "")
            return TxOutcome(hash_hex, int(found["height"]), int(r.get("code", 0)), str(r.get("log", "")), data)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

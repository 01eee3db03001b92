"""The explorer in a real browser: headless Chromium (Debian's, driven by Selenium through Debian's chromedriver)
loads a 4-validator devnet's pages after a chat completion and a tallied Race cycle, checks what they show, keeps
a screenshot of each in `tests/network/artifacts/explorer/`, and sees the height change without a reload."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from racenet.chain.modules import inference, verification
from racenet.chain.modules.bank import MsgSend
from racenet.chain.modules.gov import MsgSubmitProposal
from racenet.chain.modules.verification import TaskStatus
from racenet.crypto.address import encode_address
from racenet.crypto.keyring import Keyring
from racenet.crypto.keys import PrivateKey
from racenet.devnet import DEVNET_PASSPHRASE, FAUCET_KEY, Devnet
from racenet.node.client import ChainClient
from racenet.node.sender import TxSender
from tests.network.conftest import running_devnet
from tests.network.netutil import wait_for
from tests.network.test_inference_devnet import MODEL, api_key
from tests.network.test_race_devnet import tallied_cycle

pytestmark = [pytest.mark.network, pytest.mark.timeout(1200)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parent / "artifacts" / "explorer"
HOSTILE_TITLE = "<script>alert('title')</script>"
HOSTILE_MEMO = "<img src=x onerror=alert('memo')>"
REQUESTS = 5
"""Each validator checks a new executor's task with probability 1/4 (its weight share): five requests make it
near certain (1 - 0.42^5) that one of them is checked."""


@dataclass
class Scene:
    """The running devnet seen through node 1's explorer, with one verified request and a hostile proposal."""

    url: str
    chain: ChainClient
    request_id: str
    executor: str
    proposal_height: int
    cycle: int


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    with running_devnet(tmp_path_factory, "explorer", "0.25,0.25,0.25,0.25") as directory:
        net = Devnet.open(directory)
        with ChainClient(net.state.nodes[0].rpc_url, timeout=10) as chain:
            wait_for(
                "every node to serve the model", lambda: len(chain.query(inference.SERVERS, MODEL).servers) == 4, 240
            )
            yield build_scene(net, chain)


def build_scene(net: Devnet, chain: ChainClient) -> Scene:
    """Once a Race cycle is tallied (checkers are weight holders), a developer pays for a few chat completions and
    submits a proposal whose title and memo are HTML; a checker checks one of the requests (its task lasts until its
    cycle's pay is settled, so the request page is shown first)."""
    cycle, _ = wait_for("a fully raced cycle to be tallied", lambda: tallied_cycle(chain, 1), timeout=400)
    faucet = Keyring(net.state.dir / "keyring").load(FAUCET_KEY, DEVNET_PASSPHRASE)
    dev = PrivateKey(hashlib.sha256(b"explorer developer").digest())
    TxSender(chain, faucet).send([MsgSend(dev.public_key.address, 50 * 10**9)])
    key = api_key(net, chain, dev, "explorer-dev")
    client = openai.OpenAI(base_url=net.state.nodes[0].api_url + "/v1", api_key=key, timeout=180, max_retries=0)
    asked = [ask(client, n) for n in range(REQUESTS)]
    proposal = MsgSubmitProposal(title=HOSTILE_TITLE, summary="<b>not bold</b>", messages=(), deposit=10 * 10**9)
    height = TxSender(chain, dev).send([proposal], memo=HOSTILE_MEMO).height
    request_id = wait_for("a request's check", lambda: first_checked(chain, asked), timeout=400)
    info = chain.query(inference.REQUEST, bytes.fromhex(request_id))
    assert info is not None and info.receipt is not None
    executor = encode_address(info.receipt.executor)
    return Scene(net.state.nodes[0].api_url, chain, request_id, executor, height, cycle)


def ask(client: openai.OpenAI, n: int) -> str:
    """One chat completion; its request id (hex)."""
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Name color number {n}."}], max_tokens=8, temperature=0
    )
    return reply.id.removeprefix("chatcmpl-")


def first_checked(chain: ChainClient, asked: list[str]) -> str | None:
    """The first of the requests whose verification task a checker has checked."""
    for request_id in asked:
        task = chain.query(verification.TASK, bytes.fromhex(request_id))
        if task is not None and task.status != TaskStatus.OPEN:
            return request_id
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium through Debian's chromedriver (Selenium Manager never downloads anything)."""
    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "run `make test-install` (Debian chromium)"
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def visit(browser: webdriver.Chrome, url: str, shot: str) -> str:
    """Open `url`, keep a full-page screenshot named `shot`, and return the page's visible text."""
    browser.get(url)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, max(int(height) + 100, 900))
    browser.save_screenshot(str(ARTIFACTS / f"{shot}.png"))
    text: str = browser.find_element(By.TAG_NAME, "main").text
    assert "Cannot show this page" not in text, text
    return text


def test_a_verified_request(scene: Scene, browser: webdriver.Chrome) -> None:
    request = visit(browser, f"{scene.url}/explorer/requests/{scene.request_id}", "01-request")
    assert scene.executor in request and MODEL in request and "finished" in request
    assert "checker" in request and "not checked yet" not in request


def test_pages_show_the_devnet(scene: Scene, browser: webdriver.Chrome) -> None:
    home = visit(browser, scene.url + "/", "02-overview")
    assert browser.current_url.endswith("/explorer") and "latest blocks" in home and "phase 1 of 12" in home
    assert len(browser.find_elements(By.CSS_SELECTOR, "#latest-blocks tbody tr")) == 10

    blocks = visit(browser, scene.url + "/explorer/blocks", "03-blocks")
    assert "height" in blocks and len(browser.find_elements(By.CSS_SELECTOR, "main tbody tr")) >= 20

    block = visit(browser, f"{scene.url}/explorer/blocks/{scene.proposal_height}", "04-block")
    assert "gov/SubmitProposal" in block and HOSTILE_MEMO in block  # shown as text, not run
    no_alert(browser)

    cycle = visit(browser, scene.url + "/explorer/race", "05-race")
    current = int(browser.find_element(By.TAG_NAME, "h1").text.rsplit(" ", 1)[1])
    assert current > scene.cycle and scene.executor in cycle and "weights over cycles" in cycle
    assert browser.find_elements(By.CSS_SELECTOR, "main svg")

    rewards = visit(browser, scene.url + "/explorer/rewards", "06-rewards")
    assert scene.executor in rewards and "pending rewards" in rewards

    econ = visit(browser, scene.url + "/explorer/tokenomics", "07-tokenomics")
    assert "phase 1 of 12" in econ and "core incentive minted" in econ
    assert browser.find_elements(By.CSS_SELECTOR, "main svg")

    gov = visit(browser, scene.url + "/explorer/gov", "08-governance")
    assert HOSTILE_TITLE in gov
    no_alert(browser)

    for path, shot in (("beacon", "09-beacon"), ("pricing", "10-pricing"), ("training", "11-training")):
        visit(browser, f"{scene.url}/explorer/{path}", shot)


def test_the_height_updates_without_a_reload(scene: Scene, browser: webdriver.Chrome) -> None:
    browser.get(scene.url + "/explorer")
    browser.execute_script("window.notReloaded = true")
    first = int(browser.find_element(By.ID, "height").text)
    later = wait_for("the height to change in place", lambda: newer(browser, first), timeout=30)
    assert browser.execute_script("return window.notReloaded") is True
    top = browser.find_element(By.CSS_SELECTOR, "#latest-blocks tbody tr td").text
    assert int(top) >= later > first
    browser.save_screenshot(str(ARTIFACTS / "12-overview-live.png"))


def no_alert(browser: webdriver.Chrome) -> None:
    """Assert no script of the chain's text ran (it would have opened an alert)."""
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text


def newer(browser: webdriver.Chrome, than: int) -> int | None:
    """The page's height once it is above `than`."""
    height = int(browser.find_element(By.ID, "height").text)
    return height if height > than else None

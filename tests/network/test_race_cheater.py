"""A cheating node on a 4-validator devnet: three honest nodes race with compute budgets 0.25, 0.5 and 1, the
fourth pads its claim with 10% fake nonces it never mined. Its first claim is rejected by the chain's verdict
on the honest votes, it loses its weight and validator power, and the honest weights follow their compute.

The cheater is a `RaceWorker` run by the test against node 4's RPC (node 4 has no daemon of its own), which
mines honestly and then adds its fakes before committing. It keeps its claim under the sample size, so every
leaf is opened and the rejection is certain; the rejection odds of larger claims are decision.py's analysis.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from racenet.chain.modules import race
from racenet.chain.modules.race import NodeInfo, OutcomeStatus
from racenet.cli.race import race as race_cli
from racenet.crypto.address import encode_address
from racenet.crypto.keyring import Keyring
from racenet.devnet import DEVNET_PASSPHRASE, Devnet
from racenet.node.client import ChainClient
from racenet.node.compute import ComputeThread
from racenet.node.race_worker import CycleState, RaceWorker
from racenet.node.sender import TxSender
from tests.network.conftest import running_devnet
from tests.network.netutil import wait_for
from tests.network.test_race_devnet import tally_height

pytestmark = pytest.mark.network

BUDGETS = "0.25,0.5,1,0"
CHI2_P001_DF2 = 13.82
"""Chi-square critical value at p = 0.001 with 2 degrees of freedom."""
FAKE_SHARE = 10
"""One fake nonce per this many honest ones."""
CLAIM_CAP = 28
"""Honest nonces the cheater keeps, so its claim with fakes stays under the sample size of 32."""


class Cheater(RaceWorker):
    """Mines honestly, then commits a claim padded with 10% nonces it never mined."""

    def _commit(self, state: CycleState) -> None:
        honest = sorted(state.nonces)[:CLAIM_CAP]
        fakes = [(1 << 62) + 7919 * i for i in range(max(1, len(honest) // FAKE_SHARE))]
        state.nonces = sorted(honest + fakes)
        super()._commit(state)


@pytest.fixture(scope="module")
def cheater_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with running_devnet(tmp_path_factory, "cheater", BUDGETS) as directory:
        yield directory


def first_claim(client: ChainClient, cheater: str) -> tuple[int, tuple[NodeInfo, ...]] | None:
    """(cycle, nodes) once all four nodes' last outcomes are from the cycle of the cheater's first claim, with
    every honest node racing in it."""
    nodes = client.query(race.NODES).nodes
    outcomes = {encode_address(n.address): n.last_outcome for n in nodes}
    mine = outcomes[cheater]
    if mine is None or mine.status == OutcomeStatus.ABSENT:
        return None
    same = all(o is not None and o.cycle == mine.cycle for o in outcomes.values())
    raced = all(o is not None and o.status != OutcomeStatus.ABSENT for o in outcomes.values())
    return (mine.cycle, nodes) if same and raced else None


def test_a_cheater_is_rejected_within_a_cycle_and_honest_weights_follow_compute(
    cheater_dir: Path, tmp_path: Path
) -> None:
    net = Devnet.open(cheater_dir)
    honest, node4 = net.state.nodes[:3], net.state.nodes[3]
    client = ChainClient(net.state.nodes[0].rpc_url, timeout=10)
    key = Keyring(cheater_dir / "keyring").load(node4.name, DEVNET_PASSPHRASE)
    cheater_client = ChainClient(node4.rpc_url, timeout=10)
    compute = ComputeThread(1)
    worker = Cheater(cheater_client, TxSender(cheater_client, key), compute, tmp_path / "cheater")
    thread = threading.Thread(target=worker.run, name="cheater")
    thread.start()
    try:
        cycle, nodes = wait_for("the cheater's first claim", lambda: first_claim(client, node4.account), timeout=400)
    finally:
        worker.stop.set()
        thread.join()
        cheater_client.close()

    outcomes = {encode_address(n.address): n.last_outcome for n in nodes}
    claim = outcomes[node4.account]
    assert claim is not None and claim.status == OutcomeStatus.REJECTED and claim.weight == 0, claim
    tried, found = [], []
    for record in honest:
        state = json.loads((net.state.home(record) / "race" / f"cycle-{cycle}.json").read_text())
        outcome = outcomes[record.account]
        # UNCHECKED: it held all the weight of the cycle before (the others' first claims came late under load),
        # so nobody else could check it; the chain grants such a claim as claimed (docs/race.md)
        assert outcome is not None and outcome.status in (OutcomeStatus.ACCEPTED, OutcomeStatus.UNCHECKED), outcome
        assert outcome.weight == len(state["nonces"]) > 0
        tried.append(state["tried"])
        found.append(len(state["nonces"]))
    expected = [sum(found) * t / sum(tried) for t in tried]
    chi2 = sum((f - e) ** 2 / e for f, e in zip(found, expected, strict=True))
    print(f"cycle {cycle}: honest tried {tried}, found {found}, chi2 {chi2:.2f}; cheater claimed {claim.claimed}")
    assert chi2 < CHI2_P001_DF2, "honest weights are not in proportion to the nonces each node tried"

    shown = CliRunner().invoke(race_cli, ["status", "--node", net.state.nodes[0].rpc_url, "--json"])
    assert shown.exit_code == 0, shown.output
    listed = {n["address"]: n for n in json.loads(shown.stdout)["nodes"]}
    last = listed[node4.account]["last_outcome"]
    assert last["status"] == "rejected" and len(last["committee"]) >= 1, "race status shows who checked the cheater"
    text = CliRunner().invoke(race_cli, ["status", "--node", net.state.nodes[0].rpc_url])
    assert text.exit_code == 0 and "rejected" in text.output and "escalate" in text.output, text.output

    effective = tally_height(client, cycle) + 2
    wait_for("the new powers to reach CometBFT", lambda: client.height() >= effective, timeout=60)
    validators = client.call("validators", height=str(effective))["validators"]
    powers = {base64.b64decode(v["pub_key"]["value"]): int(v["voting_power"]) for v in validators}
    assert powers.get(node4.pub_key, 0) == 0, "the cheater has no validator power"
    client.close()

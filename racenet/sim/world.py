"""The simulated network: the real App behind the in-process consensus driver, its genesis, and the off-chain
facts agents act on (which answers are right, what serving and checking cost).

Race weights are given at genesis (one entry per key, so a sybil is a machine's weight split over keys) and kept:
nobody commits in the Race, and a tally in which every new weight would be 0 keeps the weights (race module). The
Race's own proof checks are tested elsewhere; here its weights are the input whose shares the strategies play with.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from racenet.abci.driver import Driver, Validator
from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules.bank import Balance, BankGenesis
from racenet.chain.modules.beacon import BeaconGenesis, BeaconKey
from racenet.chain.modules.beacon import Params as BeaconParams
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry, ServerEntry
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.modules.tokenomics import SUBSIDY_CAP, TokenomicsGenesis, allocations
from racenet.chain.modules.tokenomics import Params as TokenomicsParams
from racenet.chain.modules.verification import VerificationGenesis
from racenet.chain.scalars import Amount
from racenet.chain.tx import build_tx
from racenet.chain.types import FinalizeBlockResult
from racenet.crypto.keys import PrivateKey
from racenet.crypto.threshold import scalar_from_hash
from racenet.node.beacon_agent import BeaconAgent, register_key_msg

CHAIN_ID = "racenet-sim"
GENESIS_TIME = 1_750_000_000
MODEL = "sim-model"
BALANCE = 10**15
"""Every account's genesis nicoin (a million icon): nobody runs dry within a run, and the grants of the largest
population (`--sybil-keys 8`: 17 accounts) stay within the founders' allocation they come out of."""
TX_FEE = 20_000
"""The fee every simulated transaction pays (nicoin): above the bank's required fee for any message sent here."""
BEACON = BeaconParams(
    shares=12,
    max_participants=12,
    deal_blocks=1,
    complaint_blocks=2,
    dispute_blocks=2,
    commit_blocks=1,
    reveal_blocks=2,
)
"""Short beacon windows, so the group is ready within a few blocks."""


def sim_key(label: str) -> PrivateKey:
    """A deterministic key for `label`."""
    return PrivateKey(hashlib.sha256(f"racenet-sim key {label}".encode()).digest())


def beacon_secret(address: bytes) -> int:
    """A node's deterministic beacon secret."""
    return scalar_from_hash(b"racenet-sim-beacon", address)


@dataclass(frozen=True)
class Node:
    """A key that serves, checks and holds Race weight; `owner` names the agent (one machine) it belongs to."""

    owner: str
    key: PrivateKey
    consensus: PrivateKey
    weight: int

    @property
    def address(self) -> bytes:
        return self.key.public_key.address


@dataclass(frozen=True)
class Economy:
    """Prices and off-chain costs: a request of `tokens` tokens costs `tokens × unit_price` nicoin; serving or
    checking it costs `work_cost_percent` of that off chain (the check re-runs the answer). The chain's economic
    parameters are its defaults but for the subsidy cap."""

    unit_price: int = 10**7
    work_cost_percent: int = 50
    subsidy_cap: int = SUBSIDY_CAP
    """tokenomics' `max_subsidy_per_fee` (9: the paper's uncapped phases)."""


def genesis(nodes: list[Node], accounts: list[PrivateKey], economy: Economy) -> Genesis:
    """Race weights, servers, balances and beacon keys for `nodes`; balances for `accounts` (out of the founders'
    allocation, as a devnet grants them); the tokenomics allocations; chain defaults else."""
    addresses = [n.address for n in nodes] + [a.public_key.address for a in accounts]
    beacon_keys = []
    for n in nodes:
        msg = register_key_msg(beacon_secret(n.address), CHAIN_ID, n.address)
        beacon_keys.append(BeaconKey(n.address, msg.key, msg.proof))
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(n.consensus.public_key.raw, n.weight) for n in nodes],
        app_state=AppState(
            bank=BankGenesis(
                balances=(
                    *(Balance(a, Amount(BALANCE)) for a in addresses),
                    *allocations(BALANCE * len(addresses)),
                )
            ),
            race=RaceGenesis(nodes=tuple(RaceNode(n.address, n.consensus.public_key.raw, n.weight) for n in nodes)),
            beacon=BeaconGenesis(params=BEACON, keys=tuple(beacon_keys)),
            inference=InferenceGenesis(
                params=InferenceParams(max_tokens=512, expiry_blocks=8),
                models=(ModelEntry(MODEL, 1),),
                servers=tuple(
                    ServerEntry(n.address, (MODEL,), f"https://{n.owner}-{i}.example.com") for i, n in enumerate(nodes)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(economy.unit_price)),
            verification=VerificationGenesis(),
            tokenomics=TokenomicsGenesis(params=TokenomicsParams(max_subsidy_per_fee=economy.subsidy_cap)),
        ),
    )


@dataclass
class World:
    """The running chain: blocks of signed transactions, each signer's sequence tracked from the chain."""

    app: App
    driver: Driver
    directory: tempfile.TemporaryDirectory[str]
    pending: list[bytes] = field(default_factory=list)
    queued: dict[bytes, int] = field(default_factory=dict)

    @classmethod
    def start(cls, nodes: list[Node], accounts: list[PrivateKey], economy: Economy) -> World:
        """A fresh chain in a temporary directory, its beacon group ready."""
        directory = tempfile.TemporaryDirectory(prefix="racenet-sim-")
        app = App(Path(directory.name) / "app.db")
        validators = [
            Validator(n.consensus, BeaconAgent(beacon_secret(n.address), n.consensus.public_key.raw)) for n in nodes
        ]
        driver = Driver(app, validators)
        driver.init_chain(genesis(nodes, accounts, economy))
        world = cls(app, driver, directory)
        while not app.beacon.keeper.latest.get(app.read_context()):
            world.block()
        return world

    @property
    def height(self) -> int:
        return self.app.height

    def send(self, signer: PrivateKey, msg: Msg) -> None:
        """Queue a signed transaction of one message for the next block."""
        address = signer.public_key.address
        base = self.app.auth.keeper.account(self.app.read_context(), address).sequence
        offset = self.queued.get(address, 0)
        self.queued[address] = offset + 1
        self.pending.append(build_tx(signer, CHAIN_ID, base + offset, TX_FEE, [msg]))

    def block(self) -> FinalizeBlockResult:
        """Decide and commit a block of the queued transactions (the proposer's beacon transaction first)."""
        txs, self.pending, self.queued = self.pending, [], {}
        block = self.driver.decide(txs, GENESIS_TIME + self.app.height + 1)
        return self.driver.execute(block, check=False)

    def balance(self, address: bytes) -> int:
        return int(self.app.bank.keeper.balance(self.app.read_context(), address))

    def close(self) -> None:
        self.app.close()
        self.directory.cleanup()

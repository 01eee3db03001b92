"""Helpers for driving an in-process chain in tests: keys, genesis, blocks with invariants."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from racenet.abci.driver import Driver, Validator
from racenet.chain.app import App
from racenet.chain.app_state import AppState
from racenet.chain.genesis import Genesis
from racenet.chain.module import Msg
from racenet.chain.modules.bank import Balance, BankGenesis
from racenet.chain.modules.bank import Params as BankParams
from racenet.chain.modules.beacon import BEACON_TX_PREFIX, BeaconGenesis, BeaconKey
from racenet.chain.modules.beacon import Params as BeaconParams
from racenet.chain.tx import build_tx
from racenet.chain.types import BlockRequest, FinalizeBlockResult
from racenet.crypto.keys import PrivateKey
from racenet.crypto.threshold import scalar_from_hash
from racenet.node.beacon_agent import BeaconAgent, register_key_msg

CHAIN_ID = "racenet-test"
GENESIS_TIME = 1_750_000_000
FEE = BankParams().required_fee(65_536, [0] * 64)
"""A fee that covers any transaction of the default size limits, so tests need not size their fees."""
INITIAL_BALANCE = 10**12


def key(n: int) -> PrivateKey:
    """A deterministic test key, so app hashes are comparable across App instances."""
    return PrivateKey(n.to_bytes(32, "big"))


def balances(keys: list[PrivateKey], amount: int = INITIAL_BALANCE) -> tuple[Balance, ...]:
    """A genesis balance of `amount` nicoin for every key."""
    return tuple(Balance(k.public_key.address, amount) for k in keys)


TEST_BEACON = BeaconParams(
    shares=12,
    max_participants=12,
    deal_blocks=1,
    complaint_blocks=2,
    dispute_blocks=2,
    commit_blocks=1,
    reveal_blocks=2,
)
"""Small beacon windows and few shares, so the fast suite's short cycles fit and blocks stay quick."""
KNOWN_CONSENSUS_KEYS = {key(n).public_key.raw: key(n) for n in range(1, 256)}
"""Test consensus keys by public key: the harness signs vote extensions for the genesis nodes that use one."""


def beacon_secret(address: bytes) -> int:
    """A node's deterministic test beacon secret."""
    return scalar_from_hash(b"racenet-test-beacon", address)


def with_beacon(genesis: Genesis, params: BeaconParams = TEST_BEACON) -> Genesis:
    """`genesis` with a beacon key for every genesis Race node (unless it names its own beacon state)."""
    state = genesis.app_state
    if state.beacon.keys or not state.race.nodes:
        return genesis
    keys = []
    for node in state.race.nodes:
        msg = register_key_msg(beacon_secret(node.address), genesis.chain_id, node.address)
        keys.append(BeaconKey(node.address, msg.key, msg.proof))
    beacon = BeaconGenesis(params=params, keys=tuple(keys))
    return dataclasses.replace(genesis, app_state=dataclasses.replace(state, beacon=beacon))


def beacon_validators(genesis: Genesis) -> list[Validator]:
    """A simulated validator for every genesis Race node whose consensus key is a test key."""
    validators = []
    for node in genesis.app_state.race.nodes:
        consensus = KNOWN_CONSENSUS_KEYS.get(node.consensus_pub_key)
        if consensus is not None:
            validators.append(Validator(consensus, BeaconAgent(beacon_secret(node.address), node.consensus_pub_key)))
    return validators


def without_beacon(block: BlockRequest, result: FinalizeBlockResult) -> FinalizeBlockResult:
    """The block's results without the proposer's beacon transaction, so results line up with the txs sent."""
    if block.txs and block.txs[0].startswith(BEACON_TX_PREFIX):
        return dataclasses.replace(result, tx_results=result.tx_results[1:])
    return result


def genesis_for(keys: list[PrivateKey], amount: int = INITIAL_BALANCE) -> Genesis:
    """A genesis that gives every key `amount` nicoin."""
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        app_state=AppState(bank=BankGenesis(balances=balances(keys, amount))),
    )


@dataclass
class Chain:
    """An App behind a Driver that checks every module invariant after every block."""

    app: App
    driver: Driver
    sequences: dict[bytes, int] = field(default_factory=dict)

    @classmethod
    def start(cls, path: Path, genesis: Genesis) -> Chain:
        """Init a chain from `genesis` in a fresh database under `path`."""
        path.mkdir(parents=True, exist_ok=True)
        app = App(path / "app.db")
        genesis = with_beacon(genesis)
        driver = Driver(app, beacon_validators(genesis))
        driver.init_chain(genesis)
        return cls(app, driver)

    def tx(self, signer: PrivateKey, *msgs: Msg, fee: int = FEE) -> bytes:
        """A signed tx with the signer's next sequence (tracked locally)."""
        address = signer.public_key.address
        seq = self.sequences.get(address, 0)
        self.sequences[address] = seq + 1
        return build_tx(signer, CHAIN_ID, seq, fee, list(msgs))

    def block(self, *txs: bytes) -> FinalizeBlockResult:
        """Run one block and assert every invariant on the committed state."""
        proposal = self.driver.propose(list(txs), GENESIS_TIME + self.app.height + 1)
        result = self.driver.execute(proposal)
        self.app.check_invariants()
        return without_beacon(proposal, result)

    def until_beacon(self) -> None:
        """Run empty blocks until the beacon has recorded its first round (the genesis group is ready)."""
        ctx = self.app.read_context
        while not self.app.beacon.keeper.latest.get(ctx()):
            self.block()

    def decided_block(self, *txs: bytes) -> FinalizeBlockResult:
        """Finalize and commit a block as decided by consensus (the proposer's beacon transaction first), skipping
        proposal checks."""
        block = self.driver.decide(txs, GENESIS_TIME + self.app.height + 1)
        result = self.driver.execute(block, check=False)
        self.app.check_invariants()
        return without_beacon(block, result)

    def balance(self, k: PrivateKey | bytes) -> int:
        """Committed balance of a key or address."""
        address = k.public_key.address if isinstance(k, PrivateKey) else k
        return self.app.bank.keeper.balance(self.app.read_context(), address)

    def state(self) -> list[tuple[bytes, bytes]]:
        """Every committed key and value, to compare states exactly."""
        return list(self.app.store.iterate(b""))


def random_workload(seed: int, blocks: int, keys: list[PrivateKey]) -> list[list[bytes]]:
    """Deterministic blocks of transfers among `keys`, with some bad ones mixed in."""
    import random

    from racenet.chain.modules.bank import MsgSend

    rng = random.Random(seed)
    sequences = dict.fromkeys(range(len(keys)), 0)
    out: list[list[bytes]] = []
    for _ in range(blocks):
        txs = []
        for _ in range(rng.randrange(0, 6)):
            i, j = rng.randrange(len(keys)), rng.randrange(len(keys))
            amount = rng.choice([1, 17, 10**6, 10**13])  # the last one overdraws
            seq = sequences[i] + (1 if rng.random() < 0.1 else 0)  # occasionally a gap
            txs.append(build_tx(keys[i], CHAIN_ID, seq, FEE, [MsgSend(keys[j].public_key.address, amount)]))
            if seq == sequences[i] and amount < 10**13:
                sequences[i] += 1
        out.append(txs)
    return out


def app_hashes(path: Path, seed: int, blocks: int) -> list[str]:
    """Run the seeded workload on a fresh chain and return the app hash after each block."""
    keys = [key(n) for n in range(1, 6)]
    chain = Chain.start(path, genesis_for(keys))
    hashes = []
    for txs in random_workload(seed, blocks, keys):
        hashes.append(chain.decided_block(*txs).app_hash.hex())
    chain.app.close()
    return hashes

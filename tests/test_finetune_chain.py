"""The finetune module: escrow per training token, the provider drawn by the routing rule, the adapter hash
on record, payment at completion, refunds on cancel and expiry. Every block checks every invariant (bank's
supply, finetune's escrows)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from racenet.chain.app_state import AppState
from racenet.chain.errors import Code
from racenet.chain.genesis import Genesis, GenesisValidator
from racenet.chain.module import Msg
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.finetune import (
    FinetuneGenesis,
    Job,
    JobStatus,
    MsgCancelJob,
    MsgCompleteJob,
    MsgCreateJob,
    Params,
    fine_tuned_model,
)
from racenet.chain.modules.inference import InferenceGenesis, ModelEntry, MsgAuthorizeKey, ServerEntry, api_key_id
from racenet.chain.modules.inference import Params as InferenceParams
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import RaceGenesis, RaceNode
from racenet.chain.scalars import Amount
from racenet.chain.tx import build_tx
from racenet.crypto.keys import PrivateKey
from tests.chain import CHAIN_ID, FEE, GENESIS_TIME, INITIAL_BALANCE, Chain, balances, key

MODEL = "SmolLM2-135M-Instruct"
NODES = [key(1), key(2), key(3)]
WEIGHTS = [10, 20, 30]
DEV, STRANGER = key(50), key(52)
UNIT_PRICE, UNITS, MULTIPLIER = 1_000, 2, 3
PRICE = UNIT_PRICE * UNITS * MULTIPLIER
TOKENS, EPOCHS = 400, 4
TRAINING = hashlib.sha256(b"training file").digest()
ADAPTER = hashlib.sha256(b"adapter").digest()
SECRET = bytes(range(32))


def genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time=GENESIS_TIME,
        validators=[GenesisValidator(key(100 + i).public_key.raw, w) for i, w in enumerate(WEIGHTS)],
        app_state=AppState(
            bank=BankGenesis(balances=balances([*NODES, DEV, STRANGER])),
            race=RaceGenesis(
                nodes=tuple(
                    RaceNode(k.public_key.address, key(100 + i).public_key.raw, w)
                    for i, (k, w) in enumerate(zip(NODES, WEIGHTS, strict=True))
                )
            ),
            inference=InferenceGenesis(
                params=InferenceParams(max_tokens=512, expiry_blocks=5),
                models=(ModelEntry(MODEL, UNITS),),
                servers=tuple(
                    ServerEntry(k.public_key.address, (MODEL,), f"https://node{i}.example.com")
                    for i, k in enumerate(NODES)
                ),
            ),
            pricing=PricingGenesis(unit_price=Amount(UNIT_PRICE)),
            finetune=FinetuneGenesis(params=Params(price_multiplier=MULTIPLIER, expiry_blocks=10)),
        ),
    )


class FinetuneChain(Chain):
    def run(self, signer: PrivateKey, msg: Msg) -> tuple[int, bytes, str]:
        """One message in its own block, then one more block (which records the beacon round that draws)."""
        address = signer.public_key.address
        accounts = self.app.auth.keeper
        sequence = accounts.account(self.app.read_context(), address).sequence
        r = self.decided_block(build_tx(signer, CHAIN_ID, sequence, FEE, [msg])).tx_results[0]
        self.decided_block()
        return r.code, r.data, r.log

    def job(self, id_: bytes) -> Job:
        job = self.app.finetune.keeper.jobs.get(self.app.read_context(), id_)
        assert job is not None
        return job

    def node(self, address: bytes) -> PrivateKey:
        return next(k for k in NODES if k.public_key.address == address)


@pytest.fixture
def chain(tmp_path: Path) -> FinetuneChain:
    c = FinetuneChain.start(tmp_path, genesis())
    assert isinstance(c, FinetuneChain)
    c.until_beacon()
    return c


def create(gateway: PrivateKey = NODES[0], key_id: bytes = b"", suffix: str = "pw") -> MsgCreateJob:
    return MsgCreateJob(
        developer=DEV.public_key.address,
        api_key_id=key_id,
        model=MODEL,
        training_hash=TRAINING,
        training_tokens=TOKENS,
        n_epochs=EPOCHS,
        suffix=suffix,
    )


def authorize(chain: FinetuneChain, gateway: PrivateKey, limit: int = 10**12) -> bytes:
    key_id = api_key_id(SECRET)
    msg = MsgAuthorizeKey(key_id=key_id, spend_limit=limit, expiry_height=0, gateways=(gateway.public_key.address,))
    assert chain.run(DEV, msg)[0] == 0
    return key_id


def test_a_job_escrows_per_training_token_pays_the_drawn_provider_and_records_the_adapter(
    chain: FinetuneChain,
) -> None:
    gateway = NODES[0]
    key_id = authorize(chain, gateway)
    before = chain.balance(DEV)
    code, id_, log = chain.run(gateway, create(key_id=key_id))
    assert code == 0, log
    job = chain.job(id_)
    assert job.escrow == PRICE * TOKENS * EPOCHS and chain.balance(DEV) == before - job.escrow
    assert job.status == JobStatus.RUNNING and job.provider in {k.public_key.address for k in NODES[1:]}
    provider = chain.node(job.provider)
    provider_before = chain.balance(provider)
    trained = TOKENS * EPOCHS - 100
    assert chain.run(provider, MsgCompleteJob(id_, ADAPTER, trained))[0] == 0
    done = chain.job(id_)
    assert (done.status, done.adapter_hash, done.cost) == (JobStatus.SUCCEEDED, ADAPTER, PRICE * trained)
    assert chain.balance(provider) == provider_before + PRICE * trained - FEE
    assert chain.balance(DEV) == before - PRICE * trained
    assert fine_tuned_model(done, id_) == f"ft:{MODEL}:pw:{id_.hex()}"


def test_only_the_provider_completes_and_not_twice(chain: FinetuneChain) -> None:
    code, id_, _ = chain.run(DEV, create())
    assert code == 0
    provider = chain.node(chain.job(id_).provider)
    assert chain.run(STRANGER, MsgCompleteJob(id_, ADAPTER, 1))[0] == Code.UNAUTHORIZED
    assert chain.run(provider, MsgCompleteJob(id_, ADAPTER, TOKENS * EPOCHS + 1))[0] == Code.INVALID_MESSAGE
    assert chain.run(provider, MsgCompleteJob(id_, ADAPTER, 10))[0] == 0
    assert chain.run(provider, MsgCompleteJob(id_, ADAPTER, 10))[0] == Code.ALREADY_DONE
    assert chain.run(DEV, MsgCancelJob(id_))[0] == Code.ALREADY_DONE


@pytest.mark.parametrize("who", ["developer", "provider"])
def test_a_cancel_refunds_the_whole_escrow(chain: FinetuneChain, who: str) -> None:
    before = chain.balance(DEV)
    code, id_, _ = chain.run(DEV, create())
    assert code == 0
    signer = DEV if who == "developer" else chain.node(chain.job(id_).provider)
    assert chain.run(STRANGER, MsgCancelJob(id_))[0] == Code.UNAUTHORIZED
    assert chain.run(signer, MsgCancelJob(id_))[0] == 0
    expected = JobStatus.CANCELLED if who == "developer" else JobStatus.FAILED
    assert chain.job(id_).status == expected
    fees = 2 * FEE if who == "developer" else FEE
    assert chain.balance(DEV) == before - fees


def test_an_unfinished_job_is_refunded_at_expiry(chain: FinetuneChain) -> None:
    before = chain.balance(DEV)
    code, id_, _ = chain.run(DEV, create())
    assert code == 0
    while chain.app.height < chain.job(id_).expiry_height:
        chain.decided_block()
    assert chain.job(id_).status == JobStatus.FAILED and chain.balance(DEV) == before - FEE


def test_refusals_leave_no_escrow(chain: FinetuneChain) -> None:
    key_id = authorize(chain, NODES[0], limit=PRICE)
    assert chain.run(NODES[1], create(key_id=key_id))[0] == Code.UNAUTHORIZED  # not a gateway of the key
    assert chain.run(NODES[0], create(key_id=key_id))[0] == Code.INSUFFICIENT_FUNDS  # over the key's limit
    assert chain.run(STRANGER, create())[0] == Code.UNAUTHORIZED  # someone else's money
    unknown = MsgCreateJob(DEV.public_key.address, b"", "no-such-model", TRAINING, TOKENS, EPOCHS, "")
    assert chain.run(DEV, unknown)[0] == Code.NOT_FOUND
    assert chain.run(DEV, create(suffix="bad suffix!"))[0] == Code.INVALID_MESSAGE
    assert chain.balance(DEV) <= INITIAL_BALANCE and not chain.app.bank.keeper.module_escrows(
        chain.app.read_context(), "finetune"
    )


def test_genesis_round_trips(chain: FinetuneChain) -> None:
    assert chain.run(DEV, create())[0] == 0
    exported = chain.app.finetune.export_genesis(chain.app.read_context())
    assert exported == FinetuneGenesis(Params(MULTIPLIER, 10), 2)

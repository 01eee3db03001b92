"""finetune: paid LoRA fine-tuning jobs — escrow per training token, a provider drawn by the routing rule, the
adapter's hash on record, payment at completion, refunds on cancel and expiry (whitepaper §8).

A job is opened by a transfer agent for an API key that names it as gateway (as `inference/Start`), or by the
developer itself. It escrows `training_tokens × n_epochs × price`, where the price per training token is
`price_multiplier` × the base model's inference price per token. The provider is drawn like an inference executor:
weighted by Race weight among the nodes serving the base model, from the beacon round after the job's block and
the job id, never the gateway; it is drawn at the end of the block that records that round. The provider reports
the adapter's SHA-256 and the tokens it trained on (`CompleteJob`): it is paid `trained_tokens × price` (at most the
escrow) and the developer gets the rest back. A cancel (developer, gateway or provider) or the expiry refunds the
whole escrow. Amounts are integers; every nicoin leaves the escrow to exactly one account.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.collections import HASH, U64, EscrowIds, Item, KeySet, Map, Record, UintItem, pair
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import (
    Context,
    HandlerTable,
    Invariant,
    InvariantBroken,
    Module,
    ModuleKeeper,
    QueryTable,
    TxContext,
    isolated,
)
from racenet.chain.modules.finetune.types import (
    CLOSED,
    JOB,
    PARAMS,
    FinetuneGenesis,
    Job,
    JobInfo,
    JobStatus,
    MsgCancelJob,
    MsgCompleteJob,
    MsgCreateJob,
    Params,
)
from racenet.chain.modules.inference.routing import choose_executor
from racenet.chain.modules.inference.types import ApiKey
from racenet.chain.scalars import Amount
from racenet.crypto.address import encode_address

NAME = "finetune"
JOB_DOMAIN = b"racenet/finetune-job/v1\x00"


class BankKeeper(Protocol):
    """What finetune needs of bank: its escrows."""

    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...
    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...


class BeaconKeeper(Protocol):
    """What finetune needs of beacon: the round that draws a job's provider."""

    def has_group(self, ctx: Context) -> bool: ...
    def round_after(self, ctx: Context, height: int) -> int: ...
    def output(self, ctx: Context, round_: int) -> bytes: ...


class InferenceKeeper(Protocol):
    """What finetune reads of inference: prices, servers and API keys (it writes none of them)."""

    def price_per_token(self, ctx: Context, model: str) -> Amount: ...
    def candidates(self, ctx: Context, model: str) -> list[tuple[bytes, int]]: ...

    @property
    def api_keys(self) -> Map[bytes, ApiKey]: ...


def job_id(number: int) -> bytes:
    """The id of the `number`-th job: a hash, so ids are fixed-size and unguessable before the job exists."""
    return hashlib.sha256(JOB_DOMAIN + number.to_bytes(8, "big")).digest()


def fine_tuned_model(job: Job, job_id_: bytes) -> str:
    """OpenAI's form `ft:<base>:<suffix or org>:<job id hex>`; the org is the developer's address prefix."""
    owner = job.suffix or encode_address(job.developer)[:16]
    return f"ft:{job.model}:{owner}:{job_id_.hex()}"


def parse_fine_tuned(model: str) -> tuple[str, bytes] | None:
    """(base model, job id) of a name `fine_tuned_model` gave, or None if `model` is not one."""
    parts = model.split(":")
    if len(parts) < 4 or parts[0] != "ft":
        return None
    try:
        id_ = bytes.fromhex(parts[-1])
    except ValueError:
        return None
    return (":".join(parts[1:-2]), id_) if len(id_) == 32 else None


class Keeper(ModuleKeeper):
    """The only reader and writer of finetune state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    next_job = UintItem(b"next_job")
    jobs = Map(b"job/", HASH, Record(Job))
    expiries = KeySet(b"expiry/", pair(U64, HASH))
    unrouted = KeySet(b"unrouted/", pair(U64, HASH))
    escrows = EscrowIds(b"job/", HASH)

    def __init__(self, bank: BankKeeper, beacon: BeaconKeeper, inference: InferenceKeeper) -> None:
        self.bank = bank
        self.beacon = beacon
        self.inference = inference

    def _payer(self, ctx: TxContext, msg: MsgCreateJob, escrow: int) -> None:
        """The gateway may open the job for the API key's developer, or the developer opens its own."""
        if not msg.api_key_id:
            if ctx.tx.signer != msg.developer:
                raise ChainError(Code.UNAUTHORIZED, "without an API key only the developer may open its job")
            return
        key = self.inference.api_keys.get(ctx, msg.api_key_id)
        if key is None or key.revoked or key.developer != msg.developer:
            raise ChainError(Code.UNAUTHORIZED, "unknown or revoked API key, or not the developer's")
        if key.expiry_height and ctx.block.height > key.expiry_height:
            raise ChainError(Code.UNAUTHORIZED, "the API key expired")
        if ctx.tx.signer not in key.gateways:
            raise ChainError(Code.UNAUTHORIZED, "the signer is not a gateway of the API key")
        if key.remaining() < escrow:
            raise ChainError(
                Code.INSUFFICIENT_FUNDS, f"the API key may spend {key.remaining()}, the job needs {escrow}"
            )

    def handle_create_job(self, ctx: TxContext, msg: MsgCreateJob) -> bytes:
        """finetune/CreateJob: check who pays, escrow the whole job, queue its provider's draw; return the job id."""
        params = self.params.get(ctx)
        price = self.inference.price_per_token(ctx, msg.model) * params.price_multiplier
        escrow = price * msg.training_tokens * msg.n_epochs
        if not self.beacon.has_group(ctx):
            raise ChainError(Code.NOT_FOUND, "the random beacon has no group key yet: jobs are routed once it has")
        if not choose_executor(b"", b"", 0, self.inference.candidates(ctx, msg.model), (ctx.tx.signer,)):
            raise ChainError(
                Code.NOT_FOUND, f"no node with voting weight (other than the gateway) serves {msg.model!r}"
            )
        self._payer(ctx, msg, escrow)
        number = max(int(self.next_job.get(ctx)), 1)
        self.next_job.set(ctx, number + 1)
        new_id = job_id(number)
        self.bank.lock(ctx, msg.developer, NAME, self.escrows.id(new_id), escrow)
        route_round = self.beacon.round_after(ctx, ctx.block.height)
        expiry = ctx.block.height + params.expiry_blocks
        job = Job(
            developer=msg.developer,
            transfer_agent=ctx.tx.signer,
            model=msg.model,
            suffix=msg.suffix,
            training_hash=msg.training_hash,
            training_tokens=msg.training_tokens,
            n_epochs=msg.n_epochs,
            price_per_token=price,
            escrow=escrow,
            route_round=route_round,
            provider=b"",
            status=JobStatus.QUEUED,
            created_height=ctx.block.height,
            expiry_height=expiry,
            adapter_hash=b"",
            trained_tokens=0,
            cost=Amount(0),
        )
        self.jobs.set(ctx, new_id, job)
        self.expiries.add(ctx, (expiry, new_id))
        self.unrouted.add(ctx, (route_round, new_id))
        ctx.emit("finetune_create", job_id=new_id.hex(), escrow=str(escrow), route_round=str(route_round))
        return new_id

    def route(self, ctx: Context) -> None:
        """Draw the provider of every job whose beacon round is now recorded, each in its own isolated step."""
        for route_round, id_ in self.unrouted.keys(ctx):
            seed = self.beacon.output(ctx, route_round)
            if not seed:
                break
            with isolated(ctx, NAME, f"routing of job {id_.hex()}") as item:
                self.unrouted.remove(item, (route_round, id_))
                job = self.jobs.get(item, id_)
                if job is None or job.status in CLOSED:
                    continue
                candidates = self.inference.candidates(item, job.model)
                provider = choose_executor(seed, id_, 0, candidates, (job.transfer_agent,))
                if provider is None:
                    item.emit("finetune_unroutable", job_id=id_.hex())  # it expires, refunded
                    continue
                self.jobs.set(item, id_, dataclasses.replace(job, provider=provider, status=JobStatus.RUNNING))
                item.emit("finetune_route", job_id=id_.hex(), provider=encode_address(provider))

    def _open(self, ctx: Context, id_: bytes) -> Job:
        job = self.jobs.get(ctx, id_)
        if job is None:
            raise ChainError(Code.NOT_FOUND, f"no fine-tuning job {id_.hex()}")
        if job.status in CLOSED:
            raise ChainError(Code.ALREADY_DONE, f"the job is already {job.status}")
        return job

    def _close(self, ctx: Context, id_: bytes, job: Job) -> None:
        self.jobs.set(ctx, id_, job)
        self.expiries.remove(ctx, (job.expiry_height, id_))

    def handle_complete_job(self, ctx: TxContext, msg: MsgCompleteJob) -> None:
        """finetune/CompleteJob: record the adapter hash, pay the provider for the tokens trained, refund the rest."""
        job = self._open(ctx, msg.job_id)
        if not job.provider or ctx.tx.signer != job.provider:
            raise ChainError(Code.UNAUTHORIZED, "only the job's drawn provider can complete it")
        if msg.trained_tokens > job.training_tokens * job.n_epochs:
            raise ChainError(Code.INVALID_MESSAGE, "trained_tokens exceeds training_tokens × n_epochs")
        cost = job.price_per_token * msg.trained_tokens
        escrow_id = self.escrows.id(msg.job_id)
        self.bank.release(ctx, NAME, escrow_id, job.provider, cost)
        self.bank.release(ctx, NAME, escrow_id, job.developer, job.escrow - cost)
        done = dataclasses.replace(
            job,
            status=JobStatus.SUCCEEDED,
            adapter_hash=msg.adapter_hash,
            trained_tokens=msg.trained_tokens,
            cost=cost,
        )
        self._close(ctx, msg.job_id, done)
        ctx.emit("finetune_complete", job_id=msg.job_id.hex(), adapter=msg.adapter_hash.hex(), cost=str(cost))

    def handle_cancel_job(self, ctx: TxContext, msg: MsgCancelJob) -> None:
        """finetune/CancelJob: refund the whole escrow; `cancelled` by the developer or gateway, `failed` by the
        provider."""
        job = self._open(ctx, msg.job_id)
        if ctx.tx.signer in (job.developer, job.transfer_agent):
            status = JobStatus.CANCELLED
        elif job.provider and ctx.tx.signer == job.provider:
            status = JobStatus.FAILED
        else:
            raise ChainError(Code.UNAUTHORIZED, "only the developer, its gateway or the provider can cancel a job")
        self.bank.release(ctx, NAME, self.escrows.id(msg.job_id), job.developer, job.escrow)
        self._close(ctx, msg.job_id, dataclasses.replace(job, status=status))
        ctx.emit("finetune_cancel", job_id=msg.job_id.hex(), status=str(status), refund=str(job.escrow))

    def expire(self, ctx: Context) -> None:
        """Refund every job whose time ran out at this height."""
        for _, id_ in self.expiries.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"expiry of job {id_.hex()}") as item:
                job = self._open(item, id_)
                self.bank.release(item, NAME, self.escrows.id(id_), job.developer, job.escrow)
                self._close(item, id_, dataclasses.replace(job, status=JobStatus.FAILED))
                item.emit("finetune_expire", job_id=id_.hex(), refund=str(job.escrow))

    def check_escrows(self, ctx: Context) -> None:
        """Every escrow of this module belongs to an open job and holds its escrow; every open job has one."""
        held = dict(self.bank.module_escrows(ctx, NAME))
        for id_, job in self.jobs.items(ctx):
            expected = 0 if job.status in CLOSED else int(job.escrow)
            if held.pop(self.escrows.id(id_), 0) != expected:
                raise InvariantBroken(f"job {id_.hex()} escrow differs from {expected}")
        if any(held.values()):
            raise InvariantBroken("a finetune escrow belongs to no job")

    def query_params(self, ctx: Context, _: None) -> Params:
        """The module's params."""
        return self.params.get(ctx)

    def query_job(self, ctx: Context, id_: bytes) -> JobInfo | None:
        """A job by id."""
        job = self.jobs.get(ctx, id_)
        return None if job is None else JobInfo(id_, job)


class FinetuneModule(Module[Keeper, FinetuneGenesis]):
    """Module wiring: the job messages, routing and expiry at the block's end, queries and the escrow invariant."""

    name = NAME
    genesis_type = FinetuneGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgCreateJob: Keeper.handle_create_job,
        MsgCompleteJob: Keeper.handle_complete_job,
        MsgCancelJob: Keeper.handle_cancel_job,
    }
    queries: ClassVar[QueryTable] = {PARAMS: Keeper.query_params, JOB: Keeper.query_job}

    def init_genesis(self, ctx: Context, state: FinetuneGenesis) -> None:
        """Params and the next job number."""
        state.validate()
        self.keeper.params.set(ctx, state.params)
        self.keeper.next_job.set(ctx, state.next_job)

    def export_genesis(self, ctx: Context) -> FinetuneGenesis:
        """Everything init_genesis loads."""
        return FinetuneGenesis(self.keeper.params.get(ctx), max(int(self.keeper.next_job.get(ctx)), 1))

    def end_block(self, ctx: Context) -> None:
        """Draw the providers whose round arrived, then refund expired jobs."""
        self.keeper.route(ctx)
        self.keeper.expire(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """Escrows match open jobs."""
        return {"finetune escrows": self.keeper.check_escrows}

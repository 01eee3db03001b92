"""inference: paid LLM requests — model prices, escrow at start, payment at finish, refunds at expiry.

Escrows (held by bank for module `inference`): `req/<request id>` per open request and
`reward/<address>`, an executor's pending reward, which the rewards module releases later.

A request's escrow is (prompt + max_tokens) × price; the finish charges
(prompt + completion) × price to the executor's pending reward and refunds the rest; a request
not finished within `expiry_blocks` is refunded whole. Each expiring request is refunded in its
own isolated step, so one that cannot be refunded never stops the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Protocol

from racenet.chain.collections import (
    ADDRESS,
    HASH,
    PUBKEY,
    STRING,
    U64,
    EscrowIds,
    Item,
    KeySet,
    Map,
    Record,
    UintMap,
    pair,
)
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
from racenet.chain.modules.inference.routing import choose_executor
from racenet.chain.modules.inference.types import (
    APIKEY,
    MODELS,
    PARAMS,
    PENDING,
    REQUEST,
    SERVERS,
    ApiKey,
    ApiKeyEntry,
    InferenceGenesis,
    ModelEntry,
    ModelInfo,
    Models,
    MsgAuthorizeKey,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgRevokeKey,
    MsgServeModels,
    MsgStartRequest,
    Params,
    PendingReward,
    Receipt,
    ReceiptEntry,
    ReceiptStatus,
    Request,
    RequestEntry,
    RequestInfo,
    Served,
    ServerEntry,
    ServerInfo,
    Servers,
    auth_sign_bytes,
)
from racenet.chain.modules.race.schedule import Schedule
from racenet.chain.scalars import Amount
from racenet.crypto.address import address_from_pubkey, encode_address
from racenet.crypto.keys import PublicKey

NAME = "inference"


class BankKeeper(Protocol):
    """What inference needs of bank: its escrows."""

    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...
    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...
    def move_escrow(self, ctx: Context, module: str, from_id: bytes, to_id: bytes, amount: int) -> None: ...


class RaceKeeper(Protocol):
    """What inference needs of race: registration, weights, the schedule and race seeds."""

    def consensus_key(self, ctx: Context, address: bytes) -> bytes: ...
    def weight(self, ctx: Context, address: bytes) -> int: ...
    def schedule(self, ctx: Context) -> Schedule: ...
    def seed(self, ctx: Context, cycle: int) -> bytes: ...


class Keeper(ModuleKeeper):
    """The only reader and writer of inference state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    models = UintMap(b"model/", STRING)
    serving = Map(b"serve/", ADDRESS, Record(Served))
    api_keys = Map(b"apikey/", PUBKEY, Record(ApiKey))
    requests = Map(b"request/", HASH, Record(Request))
    expiries = KeySet(b"expiry/", pair(U64, HASH))
    receipts = Map(b"receipt/", HASH, Record(Receipt))
    request_escrows = EscrowIds(b"req/", HASH)
    reward_escrows = EscrowIds(b"reward/", ADDRESS)

    def __init__(self, bank: BankKeeper, race: RaceKeeper) -> None:
        self.bank = bank
        self.race = race

    def register_model(self, ctx: Context, model: str, units_per_token: int) -> None:
        """Register a model with its units of compute per token."""
        if not model or units_per_token < 1:
            raise ValueError("a model needs a name and at least 1 unit of compute per token")
        self.models.set(ctx, model, units_per_token)

    def price_per_token(self, ctx: Context, model: str) -> Amount:
        """nicoin per token of a model: the unit-of-compute price × its units per token."""
        units = self.models.get(ctx, model)
        if not units:
            raise ChainError(Code.NOT_FOUND, f"model {model!r} is not registered")
        return self.params.get(ctx).unit_price * units

    def serve(self, ctx: Context, node: bytes, models: tuple[str, ...], endpoint: str) -> None:
        """Record the models a Race node serves and its endpoint."""
        if not self.race.consensus_key(ctx, node):
            raise ChainError(Code.UNAUTHORIZED, "only a registered Race node can serve models")
        for model in models:
            self.price_per_token(ctx, model)
        self.serving.set(ctx, node, Served(tuple(sorted(set(models))), endpoint))

    def candidates(self, ctx: Context, model: str) -> list[tuple[bytes, int]]:
        """Nodes serving `model` with their voting weights (the executor draw's input)."""
        return [(a, self.race.weight(ctx, a)) for a, served in self.serving.items(ctx) if model in served.models]

    def routing_seed(self, ctx: Context, cycle: int) -> bytes:
        """The seed requests started in `cycle` are routed with (current or previous cycle only)."""
        current = self.race.schedule(ctx).cycle(ctx.block.height)
        seed = self.race.seed(ctx, cycle) if cycle in (current, current - 1) else b""
        if not seed:
            raise ChainError(Code.INVALID_MESSAGE, f"cycle {cycle} cannot route requests (current cycle {current})")
        return seed

    def executor_for(
        self, ctx: Context, request_id: bytes, model: str, cycle: int, attempt: int, tried: tuple[bytes, ...] = ()
    ) -> bytes:
        """The executor the routing rule picks, or NOT_FOUND if no node serves the model."""
        chosen = choose_executor(self.routing_seed(ctx, cycle), request_id, attempt, self.candidates(ctx, model), tried)
        if chosen is None:
            raise ChainError(Code.NOT_FOUND, f"no node with voting weight serves {model!r}")
        return chosen

    def pending_reward(self, ctx: Context, executor: bytes) -> int:
        """nicoin earned by an executor and not yet released."""
        return self.bank.escrow_balance(ctx, NAME, self.reward_escrows.id(executor))

    def _is_session_key(self, auth_key: bytes, developer: bytes) -> bool:
        """Whether a request is authorized by an API key rather than the developer's own account key."""
        return address_from_pubkey(auth_key) != developer

    def _check_auth(self, ctx: Context, msg: MsgStartRequest) -> None:
        key = self.api_keys.get(ctx, msg.auth_key)
        if self._is_session_key(msg.auth_key, msg.developer) and (key is None or key.developer != msg.developer):
            raise ChainError(Code.UNAUTHORIZED, "the request is not signed by the developer or its API key")
        if not PublicKey(msg.auth_key).verify(auth_sign_bytes(msg.auth(ctx.block.chain_id)), msg.auth_signature):
            raise ChainError(Code.BAD_SIGNATURE, "the request's signature does not verify")

    def _spend_key(self, ctx: Context, auth_key: bytes, developer: bytes, amount: Amount) -> None:
        key = self.api_keys.get(ctx, auth_key)
        if key is None or not self._is_session_key(auth_key, developer):
            return
        if key.remaining < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"API key may escrow {key.remaining} more nicoin, needs {amount}")
        self.api_keys.set(ctx, auth_key, ApiKey(developer, key.remaining - amount))

    def _refund_key(self, ctx: Context, request: Request, amount: Amount) -> None:
        key = self.api_keys.get(ctx, request.auth_key)
        if key is not None and self._is_session_key(request.auth_key, request.developer):
            self.api_keys.set(ctx, request.auth_key, ApiKey(key.developer, key.remaining + amount))

    def _open(self, ctx: Context, request_id: bytes) -> Request:
        request = self.requests.get(ctx, request_id)
        if request is None:
            raise ChainError(Code.NOT_FOUND, "no open request with this id")
        return request

    def _close(
        self,
        ctx: Context,
        request_id: bytes,
        request: Request,
        *,
        completion_tokens: int,
        response_hash: bytes,
        cost: Amount,
        status: ReceiptStatus,
    ) -> None:
        """Replace an open request by its receipt."""
        self.requests.remove(ctx, request_id)
        self.expiries.remove(ctx, (request.expiry_height, request_id))
        receipt = Receipt(
            developer=request.developer,
            executor=request.executor,
            model=request.model,
            prompt_tokens=request.prompt_tokens,
            completion_tokens=completion_tokens,
            prompt_hash=request.prompt_hash,
            response_hash=response_hash,
            cost=cost,
            height=ctx.block.height,
            status=status,
        )
        self.receipts.set(ctx, request_id, receipt)

    def handle_serve_models(self, ctx: TxContext, msg: MsgServeModels) -> None:
        """inference/ServeModels: a Race node declares its models and endpoint."""
        self.serve(ctx, ctx.tx.signer, msg.models, msg.endpoint)

    def handle_authorize_key(self, ctx: TxContext, msg: MsgAuthorizeKey) -> None:
        """inference/AuthorizeKey: authorize (or re-limit) an API key for the signer's account."""
        existing = self.api_keys.get(ctx, msg.key)
        if existing is not None and existing.developer != ctx.tx.signer:
            raise ChainError(Code.UNAUTHORIZED, "this key is authorized for another account")
        self.api_keys.set(ctx, msg.key, ApiKey(ctx.tx.signer, Amount(msg.spend_limit)))

    def handle_revoke_key(self, ctx: TxContext, msg: MsgRevokeKey) -> None:
        """inference/RevokeKey: remove one of the signer's API keys."""
        existing = self.api_keys.get(ctx, msg.key)
        if existing is None or existing.developer != ctx.tx.signer:
            raise ChainError(Code.NOT_FOUND, "no such API key on this account")
        self.api_keys.remove(ctx, msg.key)

    def handle_start_request(self, ctx: TxContext, msg: MsgStartRequest) -> None:
        """inference/Start: check the authorization and the executor, escrow the maximum cost."""
        params = self.params.get(ctx)
        if msg.max_tokens > params.max_tokens:
            raise ChainError(Code.INVALID_MESSAGE, f"max_tokens {msg.max_tokens} is over the limit {params.max_tokens}")
        if self.requests.has(ctx, msg.request_id) or self.receipts.has(ctx, msg.request_id):
            raise ChainError(Code.DUPLICATE_REQUEST, "this request id was already used (replayed request)")
        price = self.price_per_token(ctx, msg.model)
        self._check_auth(ctx, msg)
        expected = self.executor_for(ctx, msg.request_id, msg.model, msg.cycle, 0)
        if msg.executor != expected:
            raise ChainError(Code.WRONG_EXECUTOR, f"the routing rule picks {encode_address(expected)}")
        escrow = (msg.prompt_tokens + msg.max_tokens) * price
        self._spend_key(ctx, msg.auth_key, msg.developer, escrow)
        self.bank.lock(ctx, msg.developer, NAME, self.request_escrows.id(msg.request_id), escrow)
        expiry = Amount(ctx.block.height + params.expiry_blocks)
        request = Request(
            developer=msg.developer,
            transfer_agent=ctx.tx.signer,
            model=msg.model,
            prompt_tokens=msg.prompt_tokens,
            max_tokens=msg.max_tokens,
            prompt_hash=msg.prompt_hash,
            price_per_token=price,
            escrow=escrow,
            auth_key=msg.auth_key,
            cycle=msg.cycle,
            executor=msg.executor,
            attempt=0,
            tried=(),
            expiry_height=expiry,
        )
        self.requests.set(ctx, msg.request_id, request)
        self.expiries.add(ctx, (expiry, msg.request_id))
        ctx.emit(
            "inference_start",
            request_id=msg.request_id.hex(),
            executor=encode_address(msg.executor),
            escrow=str(escrow),
        )

    def handle_reassign_request(self, ctx: TxContext, msg: MsgReassignRequest) -> bytes:
        """inference/Reassign: move a request to the next executor by the routing rule; return it."""
        request = self._open(ctx, msg.request_id)
        if ctx.tx.signer != request.transfer_agent:
            raise ChainError(Code.UNAUTHORIZED, "only the request's transfer agent can reassign it")
        attempt = request.attempt + 1
        if attempt >= self.params.get(ctx).max_attempts:
            raise ChainError(Code.INVALID_MESSAGE, "no attempts left; the request will expire and be refunded")
        tried = (*request.tried, request.executor)
        executor = self.executor_for(ctx, msg.request_id, request.model, request.cycle, attempt, tried)
        self.requests.set(
            ctx, msg.request_id, dataclasses.replace(request, executor=executor, attempt=attempt, tried=tried)
        )
        ctx.emit("inference_reassign", request_id=msg.request_id.hex(), executor=encode_address(executor))
        return executor

    def handle_finish_request(self, ctx: TxContext, msg: MsgFinishRequest) -> None:
        """inference/Finish: charge the actual cost to the executor's pending reward and refund the rest."""
        request = self._open(ctx, msg.request_id)
        if ctx.tx.signer != request.executor:
            raise ChainError(Code.UNAUTHORIZED, "only the request's executor can finish it")
        if msg.completion_tokens > request.max_tokens:
            raise ChainError(Code.INVALID_MESSAGE, f"completion_tokens exceeds max_tokens {request.max_tokens}")
        cost = (request.prompt_tokens + msg.completion_tokens) * request.price_per_token
        escrow_id = self.request_escrows.id(msg.request_id)
        self.bank.move_escrow(ctx, NAME, escrow_id, self.reward_escrows.id(request.executor), cost)
        self.bank.release(ctx, NAME, escrow_id, request.developer, request.escrow - cost)
        self._refund_key(ctx, request, request.escrow - cost)
        self._close(
            ctx,
            msg.request_id,
            request,
            completion_tokens=msg.completion_tokens,
            response_hash=msg.response_hash,
            cost=cost,
            status=ReceiptStatus.FINISHED,
        )
        ctx.emit("inference_finish", request_id=msg.request_id.hex(), cost=str(cost))

    def expire(self, ctx: Context) -> None:
        """Refund every request whose time ran out at this height, each in its own isolated step."""
        for _, request_id in self.expiries.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"expiry of request {request_id.hex()}") as item:
                self._expire_one(item, request_id)

    def _expire_one(self, ctx: Context, request_id: bytes) -> None:
        request = self._open(ctx, request_id)
        self.bank.release(ctx, NAME, self.request_escrows.id(request_id), request.developer, request.escrow)
        self._refund_key(ctx, request, request.escrow)
        self._close(
            ctx,
            request_id,
            request,
            completion_tokens=0,
            response_hash=b"",
            cost=Amount(0),
            status=ReceiptStatus.EXPIRED,
        )
        ctx.emit("inference_expire", request_id=request_id.hex(), refund=str(request.escrow))

    def check_escrows(self, ctx: Context) -> None:
        """Every request escrow belongs to an open request and holds its escrow; every open request has one."""
        open_requests = dict(self.requests.items(ctx))
        for escrow_id, amount in self.bank.module_escrows(ctx, NAME):
            request_id = self.request_escrows.parse(escrow_id)
            if request_id is None:
                if self.reward_escrows.parse(escrow_id) is None:
                    raise InvariantBroken(f"inference escrow {escrow_id!r} is neither a request nor a reward")
                continue
            request = open_requests.pop(request_id, None)
            if request is None or request.escrow != amount:
                raise InvariantBroken(f"escrow of request {request_id.hex()} ({amount}) has no matching open request")
        for request_id, request in open_requests.items():
            if request.escrow:
                raise InvariantBroken(f"open request {request_id.hex()} has no escrow of {request.escrow}")
        indexed = {request_id for _, request_id in self.expiries.keys(ctx)}
        if indexed != set(dict(self.requests.items(ctx))):
            raise InvariantBroken("the expiry index and the open requests differ")

    def query_params(self, ctx: Context, _: None) -> Params:
        """The inference parameters."""
        return self.params.get(ctx)

    def query_models(self, ctx: Context, _: None) -> Models:
        """Registered models with their prices."""
        return Models(tuple(ModelInfo(m, u, self.price_per_token(ctx, m)) for m, u in self.models.items(ctx)))

    def query_servers(self, ctx: Context, model: str) -> Servers:
        """The nodes serving a model, their weights and endpoints."""
        servers = [ServerInfo(a, w, self._endpoint(ctx, a)) for a, w in self.candidates(ctx, model)]
        return Servers(tuple(servers))

    def _endpoint(self, ctx: Context, node: bytes) -> str:
        served = self.serving.get(ctx, node)
        return "" if served is None else served.endpoint

    def query_request(self, ctx: Context, request_id: bytes) -> RequestInfo | None:
        """A request's open record or receipt (None if the id was never used)."""
        request, receipt = self.requests.get(ctx, request_id), self.receipts.get(ctx, request_id)
        return None if request is None and receipt is None else RequestInfo(request, receipt)

    def query_pending(self, ctx: Context, address: bytes) -> PendingReward:
        """An executor's pending reward."""
        return PendingReward(address, self.pending_reward(ctx, address))

    def query_apikey(self, ctx: Context, key: bytes) -> ApiKey | None:
        """An API key's account and remaining spend (None if unknown or revoked)."""
        return self.api_keys.get(ctx, key)


class InferenceModule(Module[Keeper, InferenceGenesis]):
    """Module wiring: messages, genesis, expiry hook, queries and the escrow invariant."""

    name = NAME
    genesis_type = InferenceGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgServeModels: Keeper.handle_serve_models,
        MsgAuthorizeKey: Keeper.handle_authorize_key,
        MsgRevokeKey: Keeper.handle_revoke_key,
        MsgStartRequest: Keeper.handle_start_request,
        MsgReassignRequest: Keeper.handle_reassign_request,
        MsgFinishRequest: Keeper.handle_finish_request,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        MODELS: Keeper.query_models,
        SERVERS: Keeper.query_servers,
        REQUEST: Keeper.query_request,
        PENDING: Keeper.query_pending,
        APIKEY: Keeper.query_apikey,
    }

    def init_genesis(self, ctx: Context, state: InferenceGenesis) -> None:
        """Params, models, serving nodes (which must be registered Race nodes), keys, requests and receipts."""
        k = self.keeper
        k.params.set(ctx, state.params)
        for model in state.models:
            k.register_model(ctx, model.id, model.units_per_token)
        for server in state.servers:
            k.serve(ctx, server.address, server.models, server.endpoint)
        for entry in state.api_keys:
            k.api_keys.set(ctx, entry.key, ApiKey(entry.developer, Amount(entry.remaining)))
        for open_request in state.requests:
            k.requests.set(ctx, open_request.id, open_request.request)
            k.expiries.add(ctx, (open_request.request.expiry_height, open_request.id))
        for closed in state.receipts:
            k.receipts.set(ctx, closed.id, closed.receipt)

    def export_genesis(self, ctx: Context) -> InferenceGenesis:
        """Everything init_genesis loads."""
        k = self.keeper
        return InferenceGenesis(
            params=k.params.get(ctx),
            models=tuple(ModelEntry(m, u) for m, u in k.models.items(ctx)),
            servers=tuple(ServerEntry(a, s.models, s.endpoint) for a, s in k.serving.items(ctx)),
            api_keys=tuple(ApiKeyEntry(key, a.developer, a.remaining) for key, a in k.api_keys.items(ctx)),
            requests=tuple(RequestEntry(i, r) for i, r in k.requests.items(ctx)),
            receipts=tuple(ReceiptEntry(i, r) for i, r in k.receipts.items(ctx)),
        )

    def end_block(self, ctx: Context) -> None:
        """Refund expired requests."""
        self.keeper.expire(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """escrows: every request escrow is backed by its open request, and the other way round."""
        return {"escrows": self.keeper.check_escrows}

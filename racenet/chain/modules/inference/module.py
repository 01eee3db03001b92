"""inference: paid LLM requests — model prices, escrow at start, payment at finish, refunds at expiry.

Escrows (held by bank for module `inference`): `req/<request id>` per open request and
`reward/<address>`, an executor's pending reward, which the rewards module releases later.

A request is paid by the developer's signature over everything the charge depends on
(`RequestAuth`) or by an API key whose gateways include the transfer agent. Its escrow is
(prompt + max_tokens) × price; the chain draws the executor (never the transfer agent) from a
beacon round nobody could know when the request was signed or included (`route_round`, recorded
normally one block after the Start; docs/beacon.md), so until then the request is unrouted; the
finish charges (prompt + completion) × price to the executor's pending reward and refunds the
rest; a request not finished within `expiry_blocks` is refunded whole. Each expiring request is
refunded, and each old receipt pruned, in its own isolated step, so one item never stops the
block. Spend limits are at most `MAX_SPEND_LIMIT` and a key's `spent` never goes below 0 nor
above what was escrowed, so no sequence of messages overflows a refund (security review C1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Protocol
from urllib.parse import urlsplit

from racenet.chain.authority import require_authority
from racenet.chain.collections import (
    ADDRESS,
    HASH,
    STRING,
    U64,
    EscrowIds,
    Item,
    KeySet,
    Map,
    Record,
    UintMap,
    pair,
    triple,
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
    APIKEYS,
    KEY_REQUESTS,
    MODELS,
    PARAMS,
    PENDING,
    REQUEST,
    SERVERS,
    ApiKey,
    ApiKeyInfo,
    ApiKeys,
    InferenceGenesis,
    KeyRequest,
    KeyRequestEntry,
    KeyRequests,
    ModelEntry,
    ModelInfo,
    Models,
    MsgAuthorizeKey,
    MsgFinishRequest,
    MsgReassignRequest,
    MsgRegisterModel,
    MsgRevokeKey,
    MsgServeModels,
    MsgStartRequest,
    MsgUpdateParams,
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
    check_model,
    is_private_host,
    key_request_id,
)
from racenet.chain.scalars import Amount
from racenet.crypto.address import address_from_pubkey, encode_address
from racenet.crypto.keys import PublicKey

NAME = "inference"
MAX_KEY_ID_SKIPS = 64
"""How many taken ids an API-key request skips before it is refused (each taken one cost its taker a Start)."""


class BankKeeper(Protocol):
    """What inference needs of bank: its escrows."""

    def escrow_balance(self, ctx: Context, module: str, escrow_id: bytes) -> int: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...
    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...
    def move_escrow(self, ctx: Context, module: str, from_id: bytes, to_id: bytes, amount: int) -> None: ...
    def burn_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None: ...


class RaceKeeper(Protocol):
    """What inference needs of race: registration and weights."""

    def consensus_key(self, ctx: Context, address: bytes) -> bytes: ...
    def weight(self, ctx: Context, address: bytes) -> int: ...


class BeaconKeeper(Protocol):
    """What inference needs of the beacon: a round nobody knows yet, and outputs once recorded."""

    def has_group(self, ctx: Context) -> bool: ...
    def round_after(self, ctx: Context, height: int) -> int: ...
    def output(self, ctx: Context, round_: int) -> bytes: ...


class PriceSource(Protocol):
    """What inference needs of pricing: the price per token of a model's units of compute."""

    def token_price(self, ctx: Context, units_per_token: int) -> Amount: ...


class VerificationHooks(Protocol):
    """What inference tells verification: requests an executor failed (reassigned away from it, or expired on it)
    and finished ones (tasks to check): its share of work counts both, in the cycle they happen."""

    def on_fail(self, ctx: Context, executor: bytes) -> None: ...
    def on_finish(self, ctx: Context, request_id: bytes, executor: bytes, developer: bytes, cost: int) -> None: ...


class Keeper(ModuleKeeper):
    """The only reader and writer of inference state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    models = UintMap(b"model/", STRING)
    serving = Map(b"serve/", ADDRESS, Record(Served))
    api_keys = Map(b"apikey/", HASH, Record(ApiKey))
    account_keys = KeySet(b"account_key/", pair(ADDRESS, HASH))
    key_requests = KeySet(b"key_request/", triple(HASH, U64, HASH))
    requests = Map(b"request/", HASH, Record(Request))
    expiries = KeySet(b"expiry/", pair(U64, HASH))
    receipts = Map(b"receipt/", HASH, Record(Receipt))
    prunes = KeySet(b"prune/", pair(U64, HASH))
    unrouted = KeySet(b"unrouted/", pair(U64, HASH))
    request_escrows = EscrowIds(b"req/", HASH)
    reward_escrows = EscrowIds(b"reward/", ADDRESS)

    def __init__(self, bank: BankKeeper, race: RaceKeeper, beacon: BeaconKeeper) -> None:
        self.bank = bank
        self.race = race
        self.beacon = beacon
        self.hooks: VerificationHooks | None = None
        self.prices: PriceSource | None = None

    def use_hooks(self, hooks: VerificationHooks) -> None:
        """Wire verification, which holds every reward until its cycle settles."""
        self.hooks = hooks

    def use_prices(self, prices: PriceSource) -> None:
        """Wire pricing, which owns the unit-of-compute price (it in turn lists the models)."""
        self.prices = prices

    def registered_models(self, ctx: Context) -> list[tuple[str, int]]:
        """Every registered model with its units of compute per token, by name."""
        return [(m, int(u)) for m, u in self.models.items(ctx)]

    def register_model(self, ctx: Context, model: str, units_per_token: int) -> None:
        """Register a model with its units of compute per token (at most MAX_UNITS_PER_TOKEN): from then on nodes
        may serve it and requests to it are routed. A request already open keeps the price it escrowed."""
        check_model(model, units_per_token)
        self.models.set(ctx, model, units_per_token)
        ctx.emit("model_registered", model=model, units_per_token=str(units_per_token))

    def price_per_token(self, ctx: Context, model: str) -> Amount:
        """nicoin per token of a model: the unit-of-compute price × its units per token."""
        units = self.models.get(ctx, model)
        if not units:
            raise ChainError(Code.NOT_FOUND, f"model {model!r} is not registered")
        if self.prices is None:
            raise ChainError(Code.INTERNAL, "inference has no price source wired")
        return self.prices.token_price(ctx, units)

    def serve(self, ctx: Context, node: bytes, models: tuple[str, ...], endpoint: str) -> None:
        """Record the models a Race node serves and its endpoint."""
        if not self.race.consensus_key(ctx, node):
            raise ChainError(Code.UNAUTHORIZED, "only a registered Race node can serve models")
        for model in models:
            self.price_per_token(ctx, model)
        host = urlsplit(endpoint).hostname or ""
        if is_private_host(host) and not self.params.get(ctx).allow_private_endpoints:
            raise ChainError(Code.INVALID_MESSAGE, f"endpoint host {host!r} is private; executors must be public")
        self.serving.set(ctx, node, Served(tuple(sorted(set(models))), endpoint))

    def candidates(self, ctx: Context, model: str) -> list[tuple[bytes, int]]:
        """Nodes serving `model` with their voting weights (the executor draw's input)."""
        return [(a, self.race.weight(ctx, a)) for a, served in self.serving.items(ctx) if model in served.models]

    def executor_for(
        self, ctx: Context, request_id: bytes, model: str, route_round: int, attempt: int, exclude: tuple[bytes, ...]
    ) -> bytes:
        """The executor the routing rule picks, or NOT_FOUND if no other node serves the model."""
        seed = self.beacon.output(ctx, route_round)
        chosen = choose_executor(seed, request_id, attempt, self.candidates(ctx, model), exclude)
        if chosen is None:
            raise ChainError(Code.NOT_FOUND, f"no node with voting weight (other than the gateway) serves {model!r}")
        return chosen

    def pending_reward(self, ctx: Context, executor: bytes) -> int:
        """nicoin earned by an executor and not yet released."""
        return self.bank.escrow_balance(ctx, NAME, self.reward_escrows.id(executor))

    def move_reward(self, ctx: Context, source: bytes, destination: bytes, amount: int) -> None:
        """Move part of one node's pending reward to another's (a checker's share of a verified task)."""
        self.bank.move_escrow(ctx, NAME, self.reward_escrows.id(source), self.reward_escrows.id(destination), amount)

    def pay_reward(self, ctx: Context, node: bytes, recipient: bytes, amount: int) -> None:
        """Pay out of a node's pending reward: to the node at release, or to a developer whose task was invalid."""
        self.bank.release(ctx, NAME, self.reward_escrows.id(node), recipient, amount)

    def mark_refunded(self, ctx: Context, request_id: bytes) -> None:
        """Record that a finished request's cost went back to its developer (verification found the answer invalid),
        so nothing else pays for it again (a dummy request's reimbursement)."""
        receipt = self.receipts.get(ctx, request_id)
        if receipt is not None:
            self.receipts.set(ctx, request_id, dataclasses.replace(receipt, status=ReceiptStatus.REFUNDED))

    def burn_reward(self, ctx: Context, node: bytes, amount: int) -> None:
        """Destroy part of a node's pending reward (forfeited, or withheld for a shortfall)."""
        self.bank.burn_escrow(ctx, NAME, self.reward_escrows.id(node), amount)

    def fund_reward(self, ctx: Context, payer: bytes, node: bytes, amount: int) -> None:
        """Add to a node's pending reward from an account (the fees collected, shared at a cycle's settlement)."""
        self.bank.lock(ctx, payer, NAME, self.reward_escrows.id(node), amount)

    def _hooks(self) -> VerificationHooks:
        if self.hooks is None:
            raise ChainError(Code.INTERNAL, "inference has no verification hooks wired")
        return self.hooks

    def _check_signature(self, ctx: TxContext, msg: MsgStartRequest) -> None:
        """A signed request: the developer's own key signed it, for this chain and this transfer agent, unexpired."""
        params = self.params.get(ctx)
        height = ctx.block.height
        if not height <= msg.expiry_height <= height + params.max_auth_blocks:
            raise ChainError(
                Code.INVALID_MESSAGE,
                f"the signed request expires at {msg.expiry_height}; it must be between {height} "
                f"and {height + params.max_auth_blocks}",
            )
        if address_from_pubkey(msg.signer_key) != msg.developer:
            raise ChainError(Code.UNAUTHORIZED, "the request is not signed by the developer's key")
        signed = auth_sign_bytes(msg.auth(ctx.block.chain_id, ctx.tx.signer))
        if not PublicKey(msg.signer_key).verify(signed, msg.signature):
            raise ChainError(Code.BAD_SIGNATURE, "the request's signature does not verify (for this transfer agent)")
        if self.requests.has(ctx, msg.request_id) or self.receipts.has(ctx, msg.request_id):
            raise ChainError(Code.DUPLICATE_REQUEST, "this request id was already used (replayed request)")

    def _charge_key(self, ctx: TxContext, msg: MsgStartRequest, escrow: Amount) -> tuple[bytes, int]:
        """An API-key request: the key is live, this transfer agent is one of its gateways, the limit covers
        the escrow; count it against the key and return the request id the chain gives it, and its number."""
        key = self.api_keys.get(ctx, msg.api_key_id)
        if key is None or key.revoked or key.developer != msg.developer:
            raise ChainError(Code.UNAUTHORIZED, "unknown or revoked API key")
        if key.expiry_height and ctx.block.height >= key.expiry_height:
            raise ChainError(Code.UNAUTHORIZED, f"the API key expired at height {key.expiry_height}")
        if ctx.tx.signer not in key.gateways:
            raise ChainError(Code.UNAUTHORIZED, "this node is not a gateway of the API key")
        if key.remaining() < escrow:
            left = key.remaining()
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"API key may escrow {left} more nicoin, needs {escrow}")
        number, request_id = self._free_key_request(ctx, msg.api_key_id, key.requests)
        self.key_requests.add(ctx, (msg.api_key_id, Amount(number), request_id))
        self.api_keys.set(ctx, msg.api_key_id, dataclasses.replace(key, spent=key.spent + escrow, requests=number + 1))
        return request_id, number

    def _free_key_request(self, ctx: Context, key_id: bytes, first: int) -> tuple[int, bytes]:
        """The key's next request number whose id nobody took (a signed request may claim a predictable id)."""
        for number in range(first, first + MAX_KEY_ID_SKIPS):
            request_id = key_request_id(key_id, number)
            if not (self.requests.has(ctx, request_id) or self.receipts.has(ctx, request_id)):
                return number, request_id
        raise ChainError(Code.DUPLICATE_REQUEST, f"the API key's next {MAX_KEY_ID_SKIPS} request ids are taken")

    def _refund_key(self, ctx: Context, request: Request, amount: Amount) -> None:
        """Give an API key back what a request did not spend (never below 0: the limit stays the ceiling)."""
        key = self.api_keys.get(ctx, request.api_key_id) if request.api_key_id else None
        if key is not None and key.developer == request.developer:
            spent = Amount(max(int(key.spent) - int(amount), 0))
            self.api_keys.set(ctx, request.api_key_id, dataclasses.replace(key, spent=spent))

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
        self.unrouted.remove(ctx, (request.route_round, request_id))
        retention = self.params.get(ctx).receipt_retention_blocks
        prune = Amount(max(ctx.block.height + retention, request.auth_expiry + 1))
        receipt = Receipt(
            developer=request.developer,
            executor=request.executor,
            route_round=request.route_round,
            model=request.model,
            prompt_tokens=request.prompt_tokens,
            completion_tokens=completion_tokens,
            prompt_hash=request.prompt_hash,
            response_hash=response_hash,
            cost=cost,
            height=ctx.block.height,
            status=status,
            api_key_id=request.api_key_id,
            key_number=request.key_number,
            prune_height=prune,
        )
        self.receipts.set(ctx, request_id, receipt)
        self.prunes.add(ctx, (prune, request_id))

    def handle_serve_models(self, ctx: TxContext, msg: MsgServeModels) -> None:
        """inference/ServeModels: a Race node declares its models and endpoint."""
        self.serve(ctx, ctx.tx.signer, msg.models, msg.endpoint)

    def handle_authorize_key(self, ctx: TxContext, msg: MsgAuthorizeKey) -> None:
        """inference/AuthorizeKey: authorize an API key for the signer's account, or change its limit, expiry
        and gateways (what it spent so far still counts)."""
        existing = self.api_keys.get(ctx, msg.key_id)
        if existing is not None and existing.developer != ctx.tx.signer:
            raise ChainError(Code.UNAUTHORIZED, "this key is authorized for another account")
        if existing is not None and existing.revoked:
            raise ChainError(Code.ALREADY_DONE, "this key was revoked; create a new one")
        if msg.expiry_height and msg.expiry_height <= ctx.block.height:
            raise ChainError(Code.INVALID_MESSAGE, f"expiry height {msg.expiry_height} has passed")
        key = ApiKey(
            developer=ctx.tx.signer,
            spend_limit=Amount(msg.spend_limit),
            spent=existing.spent if existing else Amount(0),
            expiry_height=msg.expiry_height,
            gateways=tuple(sorted(msg.gateways)),
            requests=existing.requests if existing else 0,
            revoked=False,
        )
        self.api_keys.set(ctx, msg.key_id, key)
        self.account_keys.add(ctx, (ctx.tx.signer, msg.key_id))

    def handle_revoke_key(self, ctx: TxContext, msg: MsgRevokeKey) -> None:
        """inference/RevokeKey: stop one of the signer's API keys for good."""
        existing = self.api_keys.get(ctx, msg.key_id)
        if existing is None or existing.developer != ctx.tx.signer:
            raise ChainError(Code.NOT_FOUND, "no such API key on this account")
        if existing.revoked:
            raise ChainError(Code.ALREADY_DONE, "this key is already revoked")
        self.api_keys.set(ctx, msg.key_id, dataclasses.replace(existing, revoked=True))

    def handle_start_request(self, ctx: TxContext, msg: MsgStartRequest) -> bytes:
        """inference/Start: check who pays, escrow the most it can cost, draw the executor; return the request id."""
        params = self.params.get(ctx)
        if msg.max_tokens > params.max_tokens or msg.prompt_tokens > params.max_prompt_tokens:
            raise ChainError(
                Code.INVALID_MESSAGE,
                f"prompt and completion are limited to {params.max_prompt_tokens} and {params.max_tokens} tokens",
            )
        price = self.price_per_token(ctx, msg.model)
        escrow = (Amount(msg.prompt_tokens) + msg.max_tokens) * price
        if not self.beacon.has_group(ctx):
            raise ChainError(Code.NOT_FOUND, "the random beacon has no group key yet: requests are routed once it has")
        if not choose_executor(b"", b"", 0, self.candidates(ctx, msg.model), (ctx.tx.signer,)):
            raise ChainError(
                Code.NOT_FOUND, f"no node with voting weight (other than the gateway) serves {msg.model!r}"
            )
        if msg.by_api_key:
            (request_id, key_number), auth_expiry = self._charge_key(ctx, msg, escrow), ctx.block.height
        else:
            if price > msg.max_price_per_token:
                raise ChainError(
                    Code.INVALID_MESSAGE,
                    f"{msg.model!r} costs {price} nicoin per token, above the {msg.max_price_per_token} the developer "
                    "signed",
                )
            self._check_signature(ctx, msg)
            request_id, key_number, auth_expiry = msg.request_id, 0, msg.expiry_height
        route_round = self.beacon.round_after(ctx, ctx.block.height)
        self.bank.lock(ctx, msg.developer, NAME, self.request_escrows.id(request_id), escrow)
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
            api_key_id=msg.api_key_id,
            key_number=key_number,
            auth_expiry=auth_expiry,
            route_round=route_round,
            executor=b"",
            attempt=0,
            tried=(),
            routed_height=0,
            expiry_height=expiry,
        )
        self.requests.set(ctx, request_id, request)
        self.expiries.add(ctx, (expiry, request_id))
        self.unrouted.add(ctx, (route_round, request_id))
        ctx.emit("inference_start", request_id=request_id.hex(), route_round=str(route_round), escrow=str(escrow))
        return request_id

    def route(self, ctx: Context) -> None:
        """Draw the executor of every request whose beacon round is now recorded, each in its own isolated step."""
        for route_round, request_id in self.unrouted.keys(ctx):
            if not self.beacon.output(ctx, route_round):
                break
            with isolated(ctx, NAME, f"routing of request {request_id.hex()}") as item:
                self._route_one(item, route_round, request_id)

    def _route_one(self, ctx: Context, route_round: int, request_id: bytes) -> None:
        self.unrouted.remove(ctx, (route_round, request_id))
        request = self._open(ctx, request_id)
        try:
            executor = self.executor_for(ctx, request_id, request.model, route_round, 0, (request.transfer_agent,))
        except ChainError as e:
            ctx.emit("inference_unroutable", request_id=request_id.hex(), reason=e.message)  # it expires, refunded
            return
        self.requests.set(
            ctx, request_id, dataclasses.replace(request, executor=executor, routed_height=ctx.block.height)
        )
        ctx.emit("inference_route", request_id=request_id.hex(), executor=encode_address(executor))

    def handle_reassign_request(self, ctx: TxContext, msg: MsgReassignRequest) -> bytes:
        """inference/Reassign: move a request to the next executor by the routing rule; return it.

        Only `reassign_delay_blocks` after the last routing, so the executor that answered has time to
        settle before a transfer agent could hand its work to another."""
        request = self._open(ctx, msg.request_id)
        params = self.params.get(ctx)
        if ctx.tx.signer != request.transfer_agent:
            raise ChainError(Code.UNAUTHORIZED, "only the request's transfer agent can reassign it")
        if not request.executor:
            raise ChainError(
                Code.TOO_EARLY, f"the request is routed once beacon round {request.route_round} is recorded"
            )
        ready = request.routed_height + params.reassign_delay_blocks
        if ctx.block.height < ready:
            raise ChainError(Code.TOO_EARLY, f"the request can be reassigned from height {ready}")
        attempt = request.attempt + 1
        if attempt >= params.max_attempts:
            raise ChainError(Code.INVALID_MESSAGE, "no attempts left; the request will expire and be refunded")
        tried = (*request.tried, request.executor)
        exclude = (*tried, request.transfer_agent)
        executor = self.executor_for(ctx, msg.request_id, request.model, request.route_round, attempt, exclude)
        moved = dataclasses.replace(
            request, executor=executor, attempt=attempt, tried=tried, routed_height=ctx.block.height
        )
        self.requests.set(ctx, msg.request_id, moved)
        self._hooks().on_fail(ctx, request.executor)
        ctx.emit("inference_reassign", request_id=msg.request_id.hex(), executor=encode_address(executor))
        return executor

    def handle_finish_request(self, ctx: TxContext, msg: MsgFinishRequest) -> None:
        """inference/Finish: charge the actual cost to the finishing executor's pending reward, refund the rest.

        An earlier executor of a reassigned request may finish it too (it may have answered while the
        transfer agent moved the request): the first Finish is paid, so a reassign cannot take its work."""
        request = self._open(ctx, msg.request_id)
        if not request.executor or (ctx.tx.signer != request.executor and ctx.tx.signer not in request.tried):
            raise ChainError(Code.UNAUTHORIZED, "only an executor the request was routed to can finish it")
        request = dataclasses.replace(request, executor=ctx.tx.signer)
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
        self._hooks().on_finish(ctx, msg.request_id, request.executor, request.developer, cost)
        ctx.emit("inference_finish", request_id=msg.request_id.hex(), cost=str(cost))

    def expire(self, ctx: Context) -> None:
        """Refund every request whose time ran out at this height, each in its own isolated step."""
        for _, request_id in self.expiries.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"expiry of request {request_id.hex()}") as item:
                self._expire_one(item, request_id)

    def prune(self, ctx: Context) -> None:
        """Drop the receipts (and API-key list entries) whose retention ends at this height (L9)."""
        for _, request_id in self.prunes.keys(ctx, (ctx.block.height,)):
            with isolated(ctx, NAME, f"pruning of receipt {request_id.hex()}") as item:
                self._prune_one(item, request_id)

    def _prune_one(self, ctx: Context, request_id: bytes) -> None:
        receipt = self.receipts.get(ctx, request_id)
        self.prunes.remove(ctx, (ctx.block.height, request_id))
        if receipt is None:
            return
        self.receipts.remove(ctx, request_id)
        if receipt.api_key_id:
            self.key_requests.remove(ctx, (receipt.api_key_id, Amount(receipt.key_number), request_id))

    def _expire_one(self, ctx: Context, request_id: bytes) -> None:
        request = self._open(ctx, request_id)
        if request.executor:
            self._hooks().on_fail(ctx, request.executor)
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

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """inference/UpdateParams: governance replaces the params."""
        require_authority(ctx, "change inference params")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    def handle_register_model(self, ctx: TxContext, msg: MsgRegisterModel) -> None:
        """inference/RegisterModel: governance registers a model (or changes its units of compute per token)."""
        require_authority(ctx, "register a model")
        self.register_model(ctx, msg.model, msg.units_per_token)

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

    def query_apikey(self, ctx: Context, key_id: bytes) -> ApiKey | None:
        """An API key's record by its id (None if it was never authorized)."""
        return self.api_keys.get(ctx, key_id)

    def query_apikeys(self, ctx: Context, account: bytes) -> ApiKeys:
        """Every API key an account has authorized, revoked ones included."""
        ids = [key_id for _, key_id in self.account_keys.keys(ctx, (account,))]
        return ApiKeys(tuple(ApiKeyInfo(i, k) for i in ids if (k := self.api_keys.get(ctx, i)) is not None))

    def query_key_requests(self, ctx: Context, key_id: bytes) -> KeyRequests:
        """The requests charged to an API key whose records are kept, oldest first."""
        found = [
            KeyRequest(r, self.requests.get(ctx, r), self.receipts.get(ctx, r))
            for _, _, r in self.key_requests.keys(ctx, (key_id,))
        ]
        return KeyRequests(tuple(found))


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
        MsgUpdateParams: Keeper.handle_update_params,
        MsgRegisterModel: Keeper.handle_register_model,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        MODELS: Keeper.query_models,
        SERVERS: Keeper.query_servers,
        REQUEST: Keeper.query_request,
        PENDING: Keeper.query_pending,
        APIKEY: Keeper.query_apikey,
        APIKEYS: Keeper.query_apikeys,
        KEY_REQUESTS: Keeper.query_key_requests,
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
            k.api_keys.set(ctx, entry.id, entry.key)
            k.account_keys.add(ctx, (entry.key.developer, entry.id))
        for listed in state.key_requests:
            k.key_requests.add(ctx, (listed.key_id, Amount(listed.number), listed.request_id))
        for open_request in state.requests:
            k.requests.set(ctx, open_request.id, open_request.request)
            k.expiries.add(ctx, (open_request.request.expiry_height, open_request.id))
            if not open_request.request.executor:
                k.unrouted.add(ctx, (open_request.request.route_round, open_request.id))
        for closed in state.receipts:
            k.receipts.set(ctx, closed.id, closed.receipt)
            k.prunes.add(ctx, (closed.receipt.prune_height, closed.id))

    def export_genesis(self, ctx: Context) -> InferenceGenesis:
        """Everything init_genesis loads."""
        k = self.keeper
        return InferenceGenesis(
            params=k.params.get(ctx),
            models=tuple(ModelEntry(m, u) for m, u in k.models.items(ctx)),
            servers=tuple(ServerEntry(a, s.models, s.endpoint) for a, s in k.serving.items(ctx)),
            api_keys=tuple(ApiKeyInfo(i, key) for i, key in k.api_keys.items(ctx)),
            key_requests=tuple(KeyRequestEntry(i, n, r) for i, n, r in k.key_requests.keys(ctx)),
            requests=tuple(RequestEntry(i, r) for i, r in k.requests.items(ctx)),
            receipts=tuple(ReceiptEntry(i, r) for i, r in k.receipts.items(ctx)),
        )

    def end_block(self, ctx: Context) -> None:
        """Route requests whose beacon round arrived, refund expired ones, then prune old receipts."""
        self.keeper.route(ctx)
        self.keeper.expire(ctx)
        self.keeper.prune(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """escrows: every request escrow is backed by its open request, and the other way round."""
        return {"escrows": self.keeper.check_escrows}

"""inference: paid LLM requests — model prices, escrow at start, payment at finish, refunds at expiry.

State keys under `inference/`: `params`, `model/<id>` (units of compute per token),
`serve/<addr>` (models a node serves), `apikey/<key>`, `request/<id>` (open requests),
`expiry/<height>/<id>`, `receipt/<id>`.
Escrows (held by bank, module `inference`): `req/<id>` per open request and `reward/<addr>`,
an executor's pending reward, which the rewards module releases later.

A request's escrow is (prompt + max_tokens) × price; the finish charges
(prompt + completion) × price to the executor's pending reward and refunds the rest; a request
not finished within `expiry_blocks` is refunded whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from racenet.chain.codec import decode
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import Context, Module, ModuleKeeper, Msg, decode_uint, load_params
from racenet.chain.modules.bank import Keeper as BankKeeper
from racenet.chain.modules.inference.routing import choose_executor
from racenet.chain.modules.inference.types import (
    ApiKey,
    AuthorizeKey,
    Finish,
    Params,
    Reassign,
    Receipt,
    Request,
    RevokeKey,
    ServeModels,
    Start,
    auth_sign_bytes,
)
from racenet.chain.modules.race.module import Keeper as RaceKeeper
from racenet.crypto.address import address_from_pubkey, decode_address, encode_address
from racenet.crypto.keys import PublicKey

NAME = "inference"
T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """The models a node serves and where transfer agents reach it."""

    models: tuple[str, ...]
    endpoint: str


class Keeper(ModuleKeeper):
    """The only reader and writer of inference keys."""

    name = NAME

    def __init__(self, bank: BankKeeper, race: RaceKeeper) -> None:
        self.bank = bank
        self.race = race

    def params(self, ctx: Context) -> Params:
        """Current inference parameters."""
        return self.load(ctx, b"params", Params) or Params()

    def set_params(self, ctx: Context, params: Params) -> None:
        """Replace the inference parameters."""
        self.save(ctx, b"params", params)

    def units_per_token(self, ctx: Context, model: str) -> int:
        """A registered model's units of compute per token (0: not registered)."""
        return self.load_uint(ctx, b"model/" + model.encode())

    def register_model(self, ctx: Context, model: str, units_per_token: int) -> None:
        """Register a model with its units of compute per token."""
        if not model or units_per_token < 1:
            raise ValueError("a model needs a name and at least 1 unit of compute per token")
        self.save_uint(ctx, b"model/" + model.encode(), units_per_token)

    def models(self, ctx: Context) -> list[tuple[str, int]]:
        """Registered models and their units per token."""
        n = len(b"model/")
        return [(k[n:].decode(), decode_uint(v)) for k, v in self.store(ctx).iterate(b"model/")]

    def price_per_token(self, ctx: Context, model: str) -> int:
        """nicoin per token of a model: the unit-of-compute price × its units per token."""
        units = self.units_per_token(ctx, model)
        if not units:
            raise ChainError(Code.NOT_FOUND, f"model {model!r} is not registered")
        return self.params(ctx).unit_price * units

    def serve(self, ctx: Context, node: bytes, models: tuple[str, ...], endpoint: str) -> None:
        """Record the models a Race node serves and its endpoint."""
        if not self.race.consensus_key(ctx, node):
            raise ChainError(Code.UNAUTHORIZED, "only a registered Race node can serve models")
        for model in models:
            self.price_per_token(ctx, model)
        self.save(ctx, b"serve/" + node, Served(tuple(sorted(set(models))), endpoint))

    def endpoint(self, ctx: Context, node: bytes) -> str:
        """Where a serving node accepts forwarded requests (empty if it serves nothing)."""
        served = self.load(ctx, b"serve/" + node, Served)
        return "" if served is None else served.endpoint

    def candidates(self, ctx: Context, model: str) -> list[tuple[bytes, int]]:
        """Nodes serving `model` with their voting weights (the executor draw's input)."""
        n = len(b"serve/")
        serving = [k[n:] for k, v in self.store(ctx).iterate(b"serve/") if model in decode(Served, v).models]
        return [(a, self.race.weight(ctx, a)) for a in serving]

    def routing_seed(self, ctx: Context, cycle: int) -> bytes:
        """The seed requests started in `cycle` are routed with (current or previous cycle only)."""
        current = self.race.schedule(ctx).cycle(ctx.height)
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

    def api_key(self, ctx: Context, key: bytes) -> ApiKey | None:
        """An API key's authorization."""
        return self.load(ctx, b"apikey/" + key, ApiKey)

    def authorize_key(self, ctx: Context, developer: bytes, key: bytes, spend_limit: int) -> None:
        """Authorize (or re-limit) an API key for the developer's account."""
        existing = self.api_key(ctx, key)
        if existing is not None and existing.developer != developer:
            raise ChainError(Code.UNAUTHORIZED, "this key is authorized for another account")
        self.save(ctx, b"apikey/" + key, ApiKey(developer, spend_limit))

    def revoke_key(self, ctx: Context, developer: bytes, key: bytes) -> None:
        """Remove an API key of the developer's."""
        existing = self.api_key(ctx, key)
        if existing is None or existing.developer != developer:
            raise ChainError(Code.NOT_FOUND, "no such API key on this account")
        self.store(ctx).delete(b"apikey/" + key)

    def request(self, ctx: Context, request_id: bytes) -> Request | None:
        """An open request."""
        return self.load(ctx, b"request/" + request_id, Request)

    def receipt(self, ctx: Context, request_id: bytes) -> Receipt | None:
        """A closed request's receipt."""
        return self.load(ctx, b"receipt/" + request_id, Receipt)

    def pending_reward(self, ctx: Context, executor: bytes) -> int:
        """nicoin earned by an executor and not yet released."""
        return self.bank.escrow_balance(ctx, NAME, b"reward/" + executor)

    def start(self, ctx: Context, msg: Start) -> None:
        """Open a request: check the authorization and the executor, escrow the maximum cost."""
        params = self.params(ctx)
        if msg.max_tokens > params.max_tokens:
            raise ChainError(Code.INVALID_MESSAGE, f"max_tokens {msg.max_tokens} is over the limit {params.max_tokens}")
        if self.request(ctx, msg.request_id) or self.receipt(ctx, msg.request_id):
            raise ChainError(Code.DUPLICATE_REQUEST, "this request id was already used (replayed request)")
        price = self.price_per_token(ctx, msg.model)
        self._check_auth(ctx, msg)
        expected = self.executor_for(ctx, msg.request_id, msg.model, msg.cycle, 0)
        if msg.executor != expected:
            raise ChainError(Code.INVALID_MESSAGE, f"the routing rule picks {encode_address(expected)}")
        escrow = (msg.prompt_tokens + msg.max_tokens) * price
        self._spend_key(ctx, msg.auth_key, msg.developer, escrow)
        self.bank.lock(ctx, msg.developer, NAME, b"req/" + msg.request_id, escrow)
        expiry = ctx.height + params.expiry_blocks
        record = Request(
            msg.developer,
            ctx.signer,
            msg.model,
            msg.prompt_tokens,
            msg.max_tokens,
            msg.prompt_hash,
            price,
            escrow,
            msg.auth_key,
            msg.cycle,
            msg.executor,
            0,
            (),
            expiry,
        )
        self.save(ctx, b"request/" + msg.request_id, record)
        self.store(ctx).set(b"expiry/" + expiry.to_bytes(8, "big") + b"/" + msg.request_id, b"")
        ctx.emit(
            "inference_start",
            request_id=msg.request_id.hex(),
            executor=encode_address(msg.executor),
            escrow=str(escrow),
        )

    def _check_auth(self, ctx: Context, msg: Start) -> None:
        own = address_from_pubkey(msg.auth_key) == msg.developer
        key = self.api_key(ctx, msg.auth_key)
        if not own and (key is None or key.developer != msg.developer):
            raise ChainError(Code.UNAUTHORIZED, "the request is not signed by the developer or its API key")
        if not PublicKey(msg.auth_key).verify(auth_sign_bytes(msg.auth(ctx.chain_id)), msg.auth_signature):
            raise ChainError(Code.BAD_SIGNATURE, "the request's signature does not verify")

    def _spend_key(self, ctx: Context, auth_key: bytes, developer: bytes, amount: int) -> None:
        key = self.api_key(ctx, auth_key)
        if key is None or address_from_pubkey(auth_key) == developer:
            return
        if key.remaining < amount:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"API key may escrow {key.remaining} more nicoin, needs {amount}")
        self.save(ctx, b"apikey/" + auth_key, ApiKey(developer, key.remaining - amount))

    def _refund_key(self, ctx: Context, request: Request, amount: int) -> None:
        key = self.api_key(ctx, request.auth_key)
        if key is not None and address_from_pubkey(request.auth_key) != request.developer:
            self.save(ctx, b"apikey/" + request.auth_key, ApiKey(key.developer, key.remaining + amount))

    def reassign(self, ctx: Context, msg: Reassign) -> bytes:
        """Move a request to the next executor by the routing rule; return the new executor."""
        request = self._open(ctx, msg.request_id)
        if ctx.signer != request.transfer_agent:
            raise ChainError(Code.UNAUTHORIZED, "only the request's transfer agent can reassign it")
        attempt = request.attempt + 1
        if attempt >= self.params(ctx).max_attempts:
            raise ChainError(Code.INVALID_MESSAGE, "no attempts left; the request will expire and be refunded")
        tried = (*request.tried, request.executor)
        executor = self.executor_for(ctx, msg.request_id, request.model, request.cycle, attempt, tried)
        updated = Request(**{**asdict(request), "executor": executor, "attempt": attempt, "tried": tried})
        self.save(ctx, b"request/" + msg.request_id, updated)
        ctx.emit("inference_reassign", request_id=msg.request_id.hex(), executor=encode_address(executor))
        return executor

    def finish(self, ctx: Context, msg: Finish) -> None:
        """Charge the actual cost to the executor's pending reward and refund the rest."""
        request = self._open(ctx, msg.request_id)
        if ctx.signer != request.executor:
            raise ChainError(Code.UNAUTHORIZED, "only the request's executor can finish it")
        if msg.completion_tokens > request.max_tokens:
            raise ChainError(Code.INVALID_MESSAGE, f"completion_tokens exceeds max_tokens {request.max_tokens}")
        cost = (request.prompt_tokens + msg.completion_tokens) * request.price_per_token
        escrow_id = b"req/" + msg.request_id
        self.bank.move_escrow(ctx, NAME, escrow_id, b"reward/" + request.executor, cost)
        self.bank.release(ctx, NAME, escrow_id, request.developer, request.escrow - cost)
        self._refund_key(ctx, request, request.escrow - cost)
        self._close(ctx, msg.request_id, request, msg.completion_tokens, msg.response_hash, cost, "finished")
        ctx.emit("inference_finish", request_id=msg.request_id.hex(), cost=str(cost))

    def _open(self, ctx: Context, request_id: bytes) -> Request:
        request = self.request(ctx, request_id)
        if request is None:
            raise ChainError(Code.NOT_FOUND, "no open request with this id")
        return request

    def _close(
        self,
        ctx: Context,
        request_id: bytes,
        request: Request,
        completion_tokens: int,
        response_hash: bytes,
        cost: int,
        status: str,
    ) -> None:
        """Replace an open request by its receipt."""
        store = self.store(ctx)
        store.delete(b"request/" + request_id)
        store.delete(b"expiry/" + request.expiry_height.to_bytes(8, "big") + b"/" + request_id)
        receipt = Receipt(
            request.developer,
            request.executor,
            request.model,
            request.prompt_tokens,
            completion_tokens,
            request.prompt_hash,
            response_hash,
            cost,
            ctx.height,
            status,
        )
        self.save(ctx, b"receipt/" + request_id, receipt)

    def expire(self, ctx: Context) -> None:
        """Refund every request whose time ran out at this height."""
        prefix = b"expiry/" + ctx.height.to_bytes(8, "big") + b"/"
        for key, _ in list(self.store(ctx).iterate(prefix)):
            request_id = key[len(prefix) :]
            request = self._open(ctx, request_id)
            self.bank.release(ctx, NAME, b"req/" + request_id, request.developer, request.escrow)
            self._refund_key(ctx, request, request.escrow)
            self._close(ctx, request_id, request, 0, b"", 0, "expired")
            ctx.emit("inference_expire", request_id=request_id.hex(), refund=str(request.escrow))


class InferenceModule(Module):
    """Module wiring: messages, genesis, expiry hook and queries."""

    name = NAME
    messages = (ServeModels, AuthorizeKey, RevokeKey, Start, Reassign, Finish)

    def __init__(self, bank: BankKeeper, race: RaceKeeper) -> None:
        self.keeper = Keeper(bank, race)

    def init_genesis(self, ctx: Context, state: dict[str, Any]) -> None:
        """Params, registered models and the models genesis nodes serve."""
        self.keeper.set_params(ctx, load_params(Params, state.get("params", {})))
        for entry in state.get("models", []):
            self.keeper.register_model(ctx, str(entry["id"]), int(entry["units_per_token"]))
        for entry in state.get("servers", []):
            self.keeper.serve(ctx, decode_address(entry["address"]), tuple(entry["models"]), str(entry["endpoint"]))

    def export_genesis(self, ctx: Context) -> dict[str, Any]:
        """Params, models and servers (open requests are refunded before an export is used)."""
        k = self.keeper
        n = len(b"serve/")
        served = [(key[n:], decode(Served, v)) for key, v in ctx.module_store(NAME).iterate(b"serve/")]
        servers = [{"address": encode_address(a), "models": list(s.models), "endpoint": s.endpoint} for a, s in served]
        return {
            "params": asdict(k.params(ctx)),
            "models": [{"id": m, "units_per_token": u} for m, u in k.models(ctx)],
            "servers": servers,
        }

    def handle(self, ctx: Context, msg: Msg) -> bytes:
        """Execute an inference message."""
        k = self.keeper
        if isinstance(msg, ServeModels):
            k.serve(ctx, ctx.signer, msg.models, msg.endpoint)
        elif isinstance(msg, AuthorizeKey):
            k.authorize_key(ctx, ctx.signer, msg.key, msg.spend_limit)
        elif isinstance(msg, RevokeKey):
            k.revoke_key(ctx, ctx.signer, msg.key)
        elif isinstance(msg, Start):
            k.start(ctx, msg)
        elif isinstance(msg, Reassign):
            return k.reassign(ctx, msg)
        elif isinstance(msg, Finish):
            k.finish(ctx, msg)
        return b""

    def end_block(self, ctx: Context) -> list[Any]:
        """Refund expired requests."""
        self.keeper.expire(ctx)
        return []

    def query(self, ctx: Context, path: str, data: bytes) -> Any:
        """`params`, `models`, `servers` (data: model), `request` (data: hex id), `pending` / `apikey`."""
        k = self.keeper
        if path == "params":
            return asdict(k.params(ctx))
        if path == "models":
            return [
                {"id": m, "units_per_token": u, "price_per_token": k.price_per_token(ctx, m)} for m, u in k.models(ctx)
            ]
        if path == "servers":
            return [
                {"address": encode_address(a), "weight": w, "endpoint": k.endpoint(ctx, a)}
                for a, w in k.candidates(ctx, data.decode())
            ]
        if path == "request":
            return self._request_info(ctx, bytes.fromhex(data.decode()))
        if path == "pending":
            return {"address": data.decode(), "amount": k.pending_reward(ctx, decode_address(data.decode()))}
        if path == "apikey":
            key = k.api_key(ctx, bytes.fromhex(data.decode()))
            return None if key is None else {"developer": encode_address(key.developer), "remaining": key.remaining}
        return super().query(ctx, path, data)

    def _request_info(self, ctx: Context, request_id: bytes) -> Any:
        request = self.keeper.request(ctx, request_id)
        if request is not None:
            return {"status": "open", **_jsonable(asdict(request))}
        receipt = self.keeper.receipt(ctx, request_id)
        return None if receipt is None else _jsonable(asdict(receipt))


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """Addresses as bech32, other bytes as hex, for query answers."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in ("developer", "executor", "transfer_agent"):
            out[key] = encode_address(value)
        elif isinstance(value, bytes):
            out[key] = value.hex()
        elif isinstance(value, tuple):
            out[key] = [encode_address(v) for v in value]
        else:
            out[key] = value
    return out

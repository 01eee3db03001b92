"""inference: registered models and prices, escrowed requests, executor routing, payment and refunds."""

from racenet.chain.modules.inference.module import InferenceModule, Keeper
from racenet.chain.modules.inference.routing import choose_executor
from racenet.chain.modules.inference.types import (
    AuthorizeKey,
    Finish,
    Params,
    Reassign,
    RequestAuth,
    RevokeKey,
    ServeModels,
    Start,
    auth_sign_bytes,
)

__all__ = [
    "AuthorizeKey",
    "Finish",
    "InferenceModule",
    "Keeper",
    "Params",
    "Reassign",
    "RequestAuth",
    "RevokeKey",
    "ServeModels",
    "Start",
    "auth_sign_bytes",
    "choose_executor",
]

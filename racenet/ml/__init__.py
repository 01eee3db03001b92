"""Inference backends: the `Backend` interface, in-process transformers, and OpenAI-compatible HTTP servers.

Heavy engines load on demand: import `TransformersBackend` from `racenet.ml.transformers_backend` (needs torch and
transformers) and `OpenAIHTTPBackend` from `racenet.ml.openai_http` (needs httpx only).
"""

from racenet.ml.backend import (
    Backend,
    ChatMessage,
    Completion,
    FinishEvent,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    TokenEvent,
    TokenScore,
    TopLogprob,
    Usage,
    collect,
)
from racenet.ml.errors import (
    BackendError,
    InvalidRequestError,
    MLError,
    ModelNotInstalledError,
    NotSupportedError,
    UnknownModelError,
)

__all__ = [
    "Backend",
    "BackendError",
    "ChatMessage",
    "Completion",
    "FinishEvent",
    "FinishReason",
    "GenerationEvent",
    "GenerationRequest",
    "InvalidRequestError",
    "MLError",
    "ModelNotInstalledError",
    "NotSupportedError",
    "TokenEvent",
    "TokenScore",
    "TopLogprob",
    "UnknownModelError",
    "Usage",
    "collect",
]

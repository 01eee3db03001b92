"""finetune messages, parameters, records, genesis state and queries.

Training files and adapters never reach the chain: it holds the training file's hash, its token count, the
escrow, the provider the routing rule drew, and the trained adapter's SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import HEX_ARG, NO_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount

MAX_SUFFIX = 40
MAX_EPOCHS = 50
MAX_TRAINING_TOKENS = 10_000_000


class JobStatus(StrEnum):
    """A job's state on chain: waiting for its provider's draw, training, or closed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


CLOSED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True)
class Params:
    """A training token costs `price_multiplier` × the base model's inference price per token (a backward pass
    costs about twice a forward one); a job not completed within `expiry_blocks` is refunded."""

    price_multiplier: int = 3
    expiry_blocks: int = 600

    def validate(self) -> None:
        """Positive multiplier and window."""
        if not 1 <= self.price_multiplier <= 1_000 or not 1 <= self.expiry_blocks <= 1_000_000:
            raise ValueError("price_multiplier is 1 to 1000 and expiry_blocks 1 to 1,000,000")


@dataclass(frozen=True)
class MsgCreateJob(Msg):
    """A transfer agent opens a developer's fine-tuning job (paid by an API key naming it as gateway), or a
    developer opens its own (empty `api_key_id`): escrow `training_tokens × n_epochs × price`, provider drawn."""

    TYPE: ClassVar[str] = "finetune/CreateJob"
    developer: Address
    api_key_id: bytes
    model: str
    training_hash: bytes
    training_tokens: int
    n_epochs: int
    suffix: str

    def validate(self) -> None:
        """Sizes and bounds."""
        if len(self.training_hash) != 32 or len(self.api_key_id) not in (0, 32):
            raise ChainError(Code.INVALID_MESSAGE, "training_hash is 32 bytes and api_key_id 0 or 32")
        if not 1 <= self.training_tokens <= MAX_TRAINING_TOKENS or not 1 <= self.n_epochs <= MAX_EPOCHS:
            raise ChainError(
                Code.INVALID_MESSAGE, f"1 to {MAX_TRAINING_TOKENS} training tokens and 1 to {MAX_EPOCHS} epochs"
            )
        if not 0 < len(self.model) <= 128 or len(self.suffix) > MAX_SUFFIX:
            raise ChainError(Code.INVALID_MESSAGE, f"a model name of 1-128 chars and a suffix of at most {MAX_SUFFIX}")
        if self.suffix and not all(c.isalnum() or c in "-_" for c in self.suffix):
            raise ChainError(Code.INVALID_MESSAGE, "a suffix has letters, digits, '-' and '_' only")


@dataclass(frozen=True)
class MsgCompleteJob(Msg):
    """The drawn provider reports its trained adapter's SHA-256 and the tokens it trained on: it is paid for those
    (at most the escrow), the developer gets the rest back."""

    TYPE: ClassVar[str] = "finetune/CompleteJob"
    job_id: bytes
    adapter_hash: bytes
    trained_tokens: int

    def validate(self) -> None:
        """32-byte ids and a token count."""
        if len(self.job_id) != 32 or len(self.adapter_hash) != 32 or self.trained_tokens < 0:
            raise ChainError(Code.INVALID_MESSAGE, "job_id and adapter_hash are 32 bytes; trained_tokens >= 0")


@dataclass(frozen=True)
class MsgCancelJob(Msg):
    """The developer or its transfer agent cancels a job, or the provider gives it up: the escrow is refunded."""

    TYPE: ClassVar[str] = "finetune/CancelJob"
    job_id: bytes

    def validate(self) -> None:
        """A 32-byte id."""
        if len(self.job_id) != 32:
            raise ChainError(Code.INVALID_MESSAGE, "job_id is 32 bytes")


@dataclass(frozen=True, kw_only=True)
class Job:
    """A fine-tuning job: who pays and through which gateway, what is trained, its price, escrow and outcome."""

    developer: Address
    transfer_agent: Address
    model: str
    suffix: str
    training_hash: bytes
    training_tokens: int
    n_epochs: int
    price_per_token: Amount
    escrow: Amount
    route_round: int
    provider: Address
    status: JobStatus
    created_height: int
    expiry_height: int
    adapter_hash: bytes
    trained_tokens: int
    cost: Amount


@dataclass(frozen=True)
class JobInfo:
    """A job and its id."""

    id: bytes
    job: Job


@dataclass(frozen=True)
class FinetuneGenesis(GenesisState):
    """Params and the next job number. Jobs in flight are not exported (as training's): export at a quiet height."""

    params: Params = Params()
    next_job: int = 1

    def validate(self) -> None:
        """Valid params and a positive next job number."""
        self.params.validate()
        if self.next_job < 1:
            raise ValueError("next_job must be positive")


PARAMS = query("finetune/params", NO_ARG, Params)
JOB = optional_query("finetune/job", HEX_ARG, JobInfo)

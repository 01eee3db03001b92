"""finetune: paid LoRA fine-tuning jobs on chain — escrow, provider draw, adapter hash, payment (whitepaper §8)."""

from racenet.chain.modules.finetune.module import FinetuneModule, Keeper, fine_tuned_model, job_id, parse_fine_tuned
from racenet.chain.modules.finetune.types import (
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

__all__ = [
    "JOB",
    "PARAMS",
    "FinetuneGenesis",
    "FinetuneModule",
    "Job",
    "JobInfo",
    "JobStatus",
    "Keeper",
    "MsgCancelJob",
    "MsgCompleteJob",
    "MsgCreateJob",
    "Params",
    "fine_tuned_model",
    "job_id",
    "parse_fine_tuned",
]

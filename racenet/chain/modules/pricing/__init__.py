"""pricing: the unit-of-compute price set each Race cycle by the weighted median of providers' votes (Appendix J)."""

from racenet.chain.modules.pricing.module import Keeper, PricingModule, weighted_median
from racenet.chain.modules.pricing.types import (
    MAX_UNIT_PRICE,
    MIN_UNIT_PRICE,
    MODELS,
    PRICE,
    VOTES,
    ModelPrice,
    ModelPrices,
    MsgVotePrice,
    PriceVote,
    PricingGenesis,
    UnitPrice,
    VoteInfo,
    Votes,
)

__all__ = [
    "MAX_UNIT_PRICE",
    "MIN_UNIT_PRICE",
    "MODELS",
    "PRICE",
    "VOTES",
    "Keeper",
    "ModelPrice",
    "ModelPrices",
    "MsgVotePrice",
    "PriceVote",
    "PricingGenesis",
    "PricingModule",
    "UnitPrice",
    "VoteInfo",
    "Votes",
    "weighted_median",
]

"""validators: the consensus validator set (ed25519 keys and voting power) sent to CometBFT."""

from racenet.chain.modules.validators.module import Keeper, ValidatorsModule
from racenet.chain.modules.validators.types import (
    LIST,
    MAX_TOTAL_POWER,
    ValidatorPower,
    ValidatorSet,
    ValidatorsGenesis,
)

__all__ = [
    "LIST",
    "MAX_TOTAL_POWER",
    "Keeper",
    "ValidatorPower",
    "ValidatorSet",
    "ValidatorsGenesis",
    "ValidatorsModule",
]

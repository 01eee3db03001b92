"""validators: the consensus validator set (ed25519 keys and voting power) sent to CometBFT."""

from racenet.chain.modules.validators.module import Keeper, ValidatorsModule
from racenet.chain.modules.validators.types import (
    AUTHORITY,
    LIST,
    MAX_TOTAL_POWER,
    Authority,
    MsgSetPower,
    ValidatorPower,
    ValidatorSet,
    ValidatorsGenesis,
)

__all__ = [
    "AUTHORITY",
    "LIST",
    "MAX_TOTAL_POWER",
    "Authority",
    "Keeper",
    "MsgSetPower",
    "ValidatorPower",
    "ValidatorSet",
    "ValidatorsGenesis",
    "ValidatorsModule",
]

"""validators: the consensus validator set (ed25519 keys and voting power) sent to CometBFT."""

from racenet.chain.modules.validators.module import Keeper, SetPower, ValidatorsModule

__all__ = ["Keeper", "SetPower", "ValidatorsModule"]

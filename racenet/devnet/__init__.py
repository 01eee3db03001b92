"""devnet: a local multi-validator racenet network (CometBFT + racenet App per node) on 127.0.0.1."""

from racenet.devnet.errors import DevnetError
from racenet.devnet.network import CHAIN_ID, FAUCET_KEY, FAUCET_PASSPHRASE, Devnet, NodeStatus
from racenet.devnet.state import DevnetState, NodeRecord, Ports

__all__ = [
    "CHAIN_ID",
    "FAUCET_KEY",
    "FAUCET_PASSPHRASE",
    "Devnet",
    "DevnetError",
    "DevnetState",
    "NodeRecord",
    "NodeStatus",
    "Ports",
]

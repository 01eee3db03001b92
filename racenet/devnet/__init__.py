"""devnet: a local multi-validator racenet network (CometBFT + racenet App per node) on 127.0.0.1."""

from racenet.devnet.errors import DevnetError
from racenet.devnet.network import CHAIN_ID, DEVNET_PASSPHRASE, FAUCET_KEY, Devnet, NodeStatus
from racenet.devnet.state import DevnetState, NodeRecord, Ports

__all__ = [
    "CHAIN_ID",
    "DEVNET_PASSPHRASE",
    "FAUCET_KEY",
    "Devnet",
    "DevnetError",
    "DevnetState",
    "NodeRecord",
    "NodeStatus",
    "Ports",
]

"""Registering a node: binding its account to the consensus key its Race weight powers, and its beacon key.

`racenet node register` sends this by hand; `racenet up` sends it once the node has caught up with the chain.
"""

from __future__ import annotations

from pathlib import Path

from racenet.chain.module import Msg
from racenet.chain.modules import race
from racenet.chain.modules.race import register_node_msg
from racenet.crypto.consensus_key import validator_private_key
from racenet.node.beacon_agent import load_or_create_secret, register_key_msg
from racenet.node.client import ChainClient


def registration_msgs(cometbft_home: Path, chain_id: str, address: bytes) -> list[Msg]:
    """race/RegisterNode signed by the home's consensus key and beacon/RegisterKey for its beacon key (created
    if absent); ConsensusKeyError, BeaconKeyError or OSError if the home's keys cannot be read."""
    consensus_key = validator_private_key(cometbft_home)
    secret = load_or_create_secret(cometbft_home)
    return [register_node_msg(consensus_key, chain_id, address), register_key_msg(secret, chain_id, address)]


def is_registered(client: ChainClient, address: bytes) -> bool:
    """Whether the chain lists `address` as a Race node."""
    return any(node.address == address for node in client.query(race.NODES).nodes)

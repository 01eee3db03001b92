"""ABCI-2.0-shaped requests and results exchanged between a consensus engine and the App.

The embedded engine and the CometBFT socket server both speak to the App through these
types, so the state machine never depends on a wire format.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValidatorUpdate:
    """A validator's ed25519 public key and its new voting power (0 removes it)."""

    pub_key: bytes
    power: int


@dataclass(frozen=True)
class Event:
    """A typed event with string attributes, indexed by the engine (e.g. `transfer`)."""

    type: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TxResult:
    """Outcome of one transaction: code 0 is success, anything else a racenet error code."""

    code: int = 0
    log: str = ""
    data: bytes = b""
    events: tuple[Event, ...] = ()
    codespace: str = ""


@dataclass(frozen=True)
class InitChainRequest:
    chain_id: str
    time: int
    initial_height: int
    app_state: bytes
    validators: tuple[ValidatorUpdate, ...] = ()


@dataclass(frozen=True)
class InitChainResult:
    app_hash: bytes
    validators: tuple[ValidatorUpdate, ...] = ()


@dataclass(frozen=True)
class BlockRequest:
    """A proposed or decided block: height, block time (unix seconds), proposer and txs."""

    height: int
    time: int
    txs: tuple[bytes, ...]
    proposer: bytes = b""
    hash: bytes = b""


@dataclass(frozen=True)
class FinalizeBlockResult:
    tx_results: tuple[TxResult, ...]
    app_hash: bytes
    validator_updates: tuple[ValidatorUpdate, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class InfoResult:
    last_block_height: int
    last_block_app_hash: bytes
    version: str = ""
    app_version: int = 1


@dataclass(frozen=True)
class QueryResult:
    code: int = 0
    log: str = ""
    value: bytes = b""
    height: int = 0


@dataclass(frozen=True)
class ExtendedVote:
    """One precommit's vote extension from the last commit, as the proposer's engine hands it over."""

    validator_address: bytes
    extension: bytes
    signature: bytes


@dataclass(frozen=True)
class ExtendedCommit:
    """The previous height's precommits with their vote extensions (PrepareProposal's `local_last_commit`)."""

    round: int = 0
    votes: tuple[ExtendedVote, ...] = ()


NO_COMMIT = ExtendedCommit()
"""The last commit of a proposal that has none (the first block, or an engine without vote extensions)."""

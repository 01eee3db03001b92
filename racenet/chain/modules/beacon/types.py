"""beacon messages, vote-extension contents, records, parameters, genesis state and queries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from racenet.chain.authority import AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import ADDRESS_ARG, NO_ARG, TEXT_ARG, optional_query, query
from racenet.chain.scalars import Address
from racenet.crypto.threshold import G1_BYTES, G2_BYTES, SCALAR_BYTES

BEACON_TX_PREFIX = b"racenet/beacon-tx/v1\x00"
"""The first bytes of the proposer's beacon transaction; no signed transaction starts so (its first byte is
the tx version, 1)."""
ROUND_DOMAIN = b"racenet/beacon/round/v1\x00"
COMMIT_DOMAIN = b"racenet/beacon/commit/v1\x00"
MIX_DOMAIN = b"racenet/beacon/mix/v1\x00"
KEY_DOMAIN = b"racenet/beacon/key/v1\x00"
MAX_EXTENSION_BYTES = 256 * 1024


@dataclass(frozen=True)
class Params:
    """The beacon's group size and the windows of each cycle's key generation and commit-reveal.

    Every cycle, `shares` share indices are dealt to the (at most `max_participants`) heaviest weight
    holders in proportion to weight, and the threshold is the fewest shares only more than half of the
    total weight can hold (`dkg.safe_threshold`). Windows are counted from the cycle's
    second block: dealings for `deal_blocks`, then complaints, then answers to complaints; the
    new group key signs from the block after the dispute window. Commit-reveal: commitments for
    `commit_blocks` from the cycle's second block, reveals for the `reveal_blocks` after them.
    """

    shares: int = 64
    max_participants: int = 64
    deal_blocks: int = 3
    complaint_blocks: int = 2
    dispute_blocks: int = 2
    commit_blocks: int = 3
    reveal_blocks: int = 3

    def validate(self) -> None:
        """Sizes in range and windows long enough to answer the window before."""
        if not 1 <= self.shares <= 1024 or not 1 <= self.max_participants <= self.shares:
            raise ValueError("shares must be 1..1024 and max_participants 1..shares")
        if min(self.deal_blocks, self.commit_blocks) < 1:
            raise ValueError("the deal and commit windows need at least one block")
        if min(self.complaint_blocks, self.dispute_blocks, self.reveal_blocks) < 2:
            # an extension sees the state one block late, so an answer to the last block of the window
            # before (a complaint about a dealing, an answer to a complaint, a reveal of a commit) lands
            # two blocks after it at the earliest
            raise ValueError("the complaint, dispute and reveal windows need at least two blocks")

    @property
    def dkg_blocks(self) -> int:
        """Blocks from a key generation's first dealing block to its last dispute block."""
        return self.deal_blocks + self.complaint_blocks + self.dispute_blocks

    def windows(self) -> tuple[int, ...]:
        """The windows' lengths: fixed at genesis, where they were checked against the Race cycle."""
        return (self.deal_blocks, self.complaint_blocks, self.dispute_blocks, self.commit_blocks, self.reveal_blocks)


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace the beacon's group sizes (the windows stay); accepted only from the governance authority."""

    TYPE: ClassVar[str] = "beacon/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class MsgRegisterKey(Msg):
    """Register the signer's beacon key (a G1 point shares are encrypted to), with proof of possession."""

    TYPE: ClassVar[str] = "beacon/RegisterKey"
    WORK: ClassVar[int] = 4
    key: bytes
    proof: bytes

    def validate(self) -> None:
        """A 48-byte G1 key and a 96-byte G2 proof."""
        if len(self.key) != G1_BYTES or len(self.proof) != G2_BYTES:
            raise ChainError(Code.INVALID_MESSAGE, "a beacon key is 48 bytes (G1) with a 96-byte proof (G2)")


def possession_statement(chain_id: str, address: bytes) -> bytes:
    """What a beacon key's proof of possession signs: the chain and the account registering it."""
    return KEY_DOMAIN + chain_id.encode() + b"\x00" + address


@dataclass(frozen=True)
class Partial:
    """A partial signature by one share index."""

    index: int
    signature: bytes


@dataclass(frozen=True)
class Dealing:
    """A dealer's Feldman commitments (G2), its ephemeral key (G1) and one encrypted share per index."""

    epoch: int
    commitments: tuple[bytes, ...]
    ephemeral: bytes
    shares: tuple[bytes, ...]


@dataclass(frozen=True)
class RevealedShare:
    """A share a dealer opens in public to answer a complaint."""

    index: int
    share: bytes


@dataclass(frozen=True)
class Answer:
    """A dealer's answer to one complaint: the complainer's shares in the clear."""

    epoch: int
    complainer: Address
    shares: tuple[RevealedShare, ...]


@dataclass(frozen=True)
class Complaint:
    """A holder's claim that a dealer's share to it does not match the dealer's commitments."""

    epoch: int
    dealer: Address


@dataclass(frozen=True)
class Extension:
    """What a validator's agent adds to its precommit: partial signatures of the pending round and its
    key-generation and commit-reveal messages (each tuple holds what the current window asks for)."""

    round: int = 0
    partials: tuple[Partial, ...] = ()
    dealings: tuple[Dealing, ...] = ()
    complaints: tuple[Complaint, ...] = ()
    answers: tuple[Answer, ...] = ()
    commits: tuple[bytes, ...] = ()
    reveals: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class SignedExtension:
    """A vote extension as CometBFT delivered it: the validator's consensus key, the bytes and their signature."""

    validator: bytes
    extension: bytes
    signature: bytes


@dataclass(frozen=True)
class BeaconBlock:
    """The proposer's beacon transaction: the previous height's vote extensions, the round they complete
    (signature empty if none) and the positions of extensions whose partial signatures are forged."""

    ext_height: int
    commit_round: int
    round: int
    signature: bytes
    extensions: tuple[SignedExtension, ...]
    forged: tuple[int, ...] = ()


@dataclass(frozen=True)
class Holder:
    """A key-generation participant: its account, beacon key and share indices first..first+count-1."""

    address: Address
    key: bytes
    first: int
    count: int

    @property
    def indices(self) -> range:
        """The share indices it holds."""
        return range(self.first, self.first + self.count)


@dataclass(frozen=True)
class Epoch:
    """One cycle's key generation: its holders, threshold and (once qualified) dealers and activation."""

    epoch: int
    threshold: int
    holders: tuple[Holder, ...]


@dataclass(frozen=True)
class Group:
    """A group key: the summed commitments of the qualified dealers (C_0 is the group key) and the first
    extension height it signs at."""

    epoch: int
    threshold: int
    holders: tuple[Holder, ...]
    dealers: tuple[Address, ...]
    commitments: tuple[bytes, ...]
    active_from: int

    @property
    def public_key(self) -> bytes:
        """The group public key (96 bytes, G2)."""
        return self.commitments[0]


@dataclass(frozen=True)
class Round:
    """A completed round: its group signature and output, the group that signed it and the block recording it."""

    round: int
    epoch: int
    previous: bytes
    mix: bytes
    signature: bytes
    output: bytes
    height: int


@dataclass(frozen=True)
class Penalty:
    """A recorded fault (spent by the rewards issue): the cycle, the account and what it did."""

    cycle: int
    address: Address
    reason: str


@dataclass(frozen=True)
class BeaconKey:
    """A registered beacon key (genesis and export)."""

    address: Address
    key: bytes
    proof: bytes


@dataclass(frozen=True)
class BeaconGenesis(GenesisState):
    """Params and the beacon keys of the genesis nodes (their first key generation starts at block 1)."""

    params: Params = Params()
    keys: tuple[BeaconKey, ...] = ()

    def validate(self) -> None:
        """Valid params and each account's key once."""
        self.params.validate()
        if len({k.address for k in self.keys}) != len(self.keys):
            raise ValueError("keys: an account has two beacon keys")
        if any(len(k.key) != G1_BYTES or len(k.proof) != G2_BYTES for k in self.keys):
            raise ValueError("keys: a beacon key is 48 bytes with a 96-byte proof")


@dataclass(frozen=True, kw_only=True)
class Status:
    """The beacon now: the latest round, the pending one, the active group and the key generation under way."""

    height: int
    latest: Round | None
    pending_round: int
    group: Group | None
    dkg: Epoch | None
    dkg_phase: str


@dataclass(frozen=True)
class Rounds:
    """Consecutive completed rounds."""

    rounds: tuple[Round, ...]


@dataclass(frozen=True)
class Groups:
    """Every group key the chain has had, oldest first."""

    groups: tuple[Group, ...]


@dataclass(frozen=True)
class Penalties:
    """Recorded faults, by cycle and account."""

    penalties: tuple[Penalty, ...]


def round_message(round_: int, previous: bytes, mix: bytes) -> bytes:
    """The bytes a round's group signature signs: the round number, the previous output and the commit-reveal mix."""
    return ROUND_DOMAIN + round_.to_bytes(8, "big") + previous + mix


def round_output(signature: bytes) -> bytes:
    """A round's random output: the hash of its (unique) group signature."""
    return hashlib.sha256(signature).digest()


def commitment(address: bytes, cycle: int, value: bytes) -> bytes:
    """What a weight holder commits to before revealing `value` in a cycle."""
    return hashlib.sha256(COMMIT_DOMAIN + address + cycle.to_bytes(8, "big") + value).digest()


def well_formed_reveal(value: bytes) -> bool:
    """A revealed value is 32 bytes."""
    return len(value) == SCALAR_BYTES


STATUS = query("beacon/status", NO_ARG, Status)
ROUND = optional_query("beacon/round", TEXT_ARG, Round)
ROUNDS = query("beacon/rounds", TEXT_ARG, Rounds)
GROUPS = query("beacon/groups", NO_ARG, Groups)
PENALTIES = query("beacon/penalties", NO_ARG, Penalties)
KEY = optional_query("beacon/key", ADDRESS_ARG, BeaconKey)
PARAMS = query("beacon/params", NO_ARG, Params)

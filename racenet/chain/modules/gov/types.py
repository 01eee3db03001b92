"""gov messages, params, records, genesis state and queries (whitepaper Appendices J, K).

A proposal carries messages (`AnyMsg`, as in a transaction) that only the governance authority may send:
a module's `MsgUpdateParams`, `inference/RegisterModel`, `gov/TrainingGrant`; a text proposal carries none.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from racenet.chain.authority import MAX_WINDOW_BLOCKS, AuthorityMsg, check_params
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import GenesisState, Msg
from racenet.chain.query import NO_ARG, TEXT_ARG, optional_query, query
from racenet.chain.scalars import Address, Amount
from racenet.chain.tx import AnyMsg

PPM = 1_000_000
MAX_TITLE = 140
MAX_SUMMARY_BYTES = 10_000
MAX_PROPOSAL_MSGS = 8


class VoteOption(StrEnum):
    """A vote: NoWithVeto also says the proposal is spam (enough of it burns the deposits)."""

    YES = "yes"
    NO = "no"
    ABSTAIN = "abstain"
    NO_WITH_VETO = "no_with_veto"


class ProposalStatus(StrEnum):
    """Where a proposal is: collecting deposits, voting, or ended (passed and executed, rejected, vetoed as spam,
    or passed but its execution failed)."""

    DEPOSIT = "deposit"
    VOTING = "voting"
    PASSED = "passed"
    REJECTED = "rejected"
    VETOED = "vetoed"
    FAILED = "failed"


MAX_MIN_DEPOSIT = 10**15
"""1,000,000 icon (0.1% of the supply): a higher minimum deposit could shut governance for good."""
MIN_SHARE_PPM = 100_000
"""The least quorum and veto share (10%): below it a few voters decide or burn every deposit."""
INITIAL_DEPOSIT_DIVISOR = 10
"""A proposal is submitted with at least min_deposit / 10: spam pays up front."""


@dataclass(frozen=True)
class Params:
    """Governance rules. Weights are Race weights read at tally time; shares are in parts per million.

    A proposal whose deposits reach `min_deposit` (nicoin) within `deposit_blocks` of its submission votes for
    `voting_blocks`; else it is dropped and its deposits refunded. At the voting period's last block: if the
    weight that voted is below `quorum_ppm` of all Race weight, it is rejected; else if NoWithVeto is above
    `veto_ppm` of the weight that voted, it is vetoed and its deposits burn; else it passes if Yes is above
    `threshold_ppm` of the weight that voted other than Abstain. Deposits are refunded unless vetoed.
    """

    min_deposit: Amount = Amount(10 * 10**9)
    deposit_blocks: int = 10_000
    voting_blocks: int = 10_000
    quorum_ppm: int = 334_000
    threshold_ppm: int = 500_000
    veto_ppm: int = 334_000

    def validate(self) -> None:
        """Bounds no passed proposal can step out of to silence governance or hand it to a few: a deposit anyone
        can reach, a voting period others can vote in, a quorum that absentees cannot block, a veto a small voter
        cannot pull, and a majority threshold."""
        if not 1 <= self.min_deposit <= MAX_MIN_DEPOSIT:
            raise ValueError(f"min_deposit must be 1 to {MAX_MIN_DEPOSIT} nicoin")
        if not 1 <= self.deposit_blocks <= MAX_WINDOW_BLOCKS or not 2 <= self.voting_blocks <= MAX_WINDOW_BLOCKS:
            raise ValueError(f"deposit_blocks must be 1 and voting_blocks 2 to {MAX_WINDOW_BLOCKS}")
        if not MIN_SHARE_PPM <= self.quorum_ppm <= PPM // 2 or not MIN_SHARE_PPM <= self.veto_ppm <= PPM:
            raise ValueError(f"quorum_ppm must be {MIN_SHARE_PPM} to {PPM // 2} and veto_ppm {MIN_SHARE_PPM} to {PPM}")
        if not PPM // 2 <= self.threshold_ppm < PPM:
            raise ValueError(f"threshold_ppm must be {PPM // 2} to {PPM - 1}: a minority never passes a proposal")


@dataclass(frozen=True)
class MsgSubmitProposal(Msg):
    """Submit a proposal with an initial deposit (nicoin, may be 0); its messages run as the governance
    authority if it passes (none: a text proposal)."""

    TYPE: ClassVar[str] = "gov/SubmitProposal"
    title: str
    summary: str
    messages: tuple[AnyMsg, ...]
    deposit: int

    def validate(self) -> None:
        """A title, a bounded summary and at most MAX_PROPOSAL_MSGS messages (checked against the registry by the
        keeper)."""
        if not 0 < len(self.title) <= MAX_TITLE or not self.title.isprintable():
            raise ChainError(Code.INVALID_MESSAGE, f"a title is 1 to {MAX_TITLE} printable characters")
        if len(self.summary.encode()) > MAX_SUMMARY_BYTES:
            raise ChainError(Code.INVALID_MESSAGE, f"a summary is at most {MAX_SUMMARY_BYTES} bytes")
        if len(self.messages) > MAX_PROPOSAL_MSGS:
            raise ChainError(Code.INVALID_MESSAGE, f"a proposal carries at most {MAX_PROPOSAL_MSGS} messages")


@dataclass(frozen=True)
class MsgDeposit(Msg):
    """Add nicoin to a proposal's deposit (while it collects deposits or votes)."""

    TYPE: ClassVar[str] = "gov/Deposit"
    proposal_id: int
    amount: int

    def validate(self) -> None:
        """A positive amount."""
        if self.amount < 1:
            raise ChainError(Code.INVALID_MESSAGE, "a deposit must be positive")


@dataclass(frozen=True)
class MsgVote(Msg):
    """Vote on a proposal in its voting period, with the signer's Race weight; it replaces the signer's vote."""

    TYPE: ClassVar[str] = "gov/Vote"
    proposal_id: int
    option: VoteOption


@dataclass(frozen=True)
class MsgTrainingGrant(AuthorityMsg):
    """Pay `amount` nicoin from the training fund to `recipient` (whitepaper Appendix K); only the governance
    authority may send it, so only a passed proposal can."""

    TYPE: ClassVar[str] = "gov/TrainingGrant"
    recipient: bytes
    amount: int

    def validate(self) -> None:
        """A 20-byte recipient and a positive amount."""
        if len(self.recipient) != 20:
            raise ChainError(Code.INVALID_MESSAGE, "the recipient must be a 20-byte address")
        if self.amount < 1:
            raise ChainError(Code.INVALID_MESSAGE, "a grant must be positive")


@dataclass(frozen=True)
class MsgUpdateParams(AuthorityMsg):
    """Replace gov's params; accepted only from the governance authority (a passed proposal)."""

    TYPE: ClassVar[str] = "gov/UpdateParams"
    params: Params

    def validate(self) -> None:
        """The new params are valid."""
        check_params(self.params)


@dataclass(frozen=True)
class Tally:
    """Race weight behind each option, and all Race weight (the quorum's base)."""

    yes: int = 0
    no: int = 0
    abstain: int = 0
    no_with_veto: int = 0
    total_weight: int = 0


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A proposal: its content, status, periods (block heights, inclusive), deposit and, once ended, its tally
    and outcome (why it was rejected or failed)."""

    id: int
    proposer: Address
    title: str
    summary: str
    messages: tuple[AnyMsg, ...]
    status: ProposalStatus
    submit_height: int
    deposit_end: int
    voting_start: int = 0
    voting_end: int = 0
    total_deposit: Amount = Amount(0)
    tally: Tally = Tally()
    outcome: str = ""

    @property
    def kind(self) -> str:
        """`text`, or the types of the messages it carries."""
        return ", ".join(m.type for m in self.messages) or "text"


@dataclass(frozen=True)
class Deposit:
    """nicoin one account put into a proposal's deposit."""

    proposal_id: int
    depositor: Address
    amount: int


@dataclass(frozen=True)
class Vote:
    """An account's vote on a proposal."""

    proposal_id: int
    voter: Address
    option: VoteOption


@dataclass(frozen=True)
class VoteInfo:
    """A vote and its voter's Race weight now (what it counts for if the tally ran now)."""

    voter: Address
    option: VoteOption
    weight: int


@dataclass(frozen=True)
class ProposalInfo:
    """A proposal, its deposits and its tally: final once ended, so far (by current weights) while voting."""

    proposal: Proposal
    deposits: tuple[Deposit, ...]
    tally: Tally


@dataclass(frozen=True)
class Proposals:
    """The proposals that reached or are collecting their deposit among the latest 100 ids, oldest first."""

    proposals: tuple[Proposal, ...]


@dataclass(frozen=True)
class Votes:
    """A proposal's votes with current weights and the tally they give now (empty once it ended)."""

    votes: tuple[VoteInfo, ...]
    tally: Tally


@dataclass(frozen=True)
class GovGenesis(GenesisState):
    """Params, the next proposal id, and the proposals with their deposits (held in bank escrows) and votes."""

    params: Params = Params()
    next_id: int = 1
    proposals: tuple[Proposal, ...] = ()
    deposits: tuple[Deposit, ...] = ()
    votes: tuple[Vote, ...] = ()

    def validate(self) -> None:
        """Valid params, ids below next_id, deposits and votes of listed proposals."""
        try:
            self.params.validate()
        except ValueError as e:
            raise ValueError(f"params: {e}") from e
        ids = {p.id for p in self.proposals}
        if len(ids) != len(self.proposals) or any(not 0 < i < self.next_id for i in ids):
            raise ValueError("proposal ids are distinct and between 1 and next_id - 1")
        if any(d.proposal_id not in ids for d in self.deposits) or any(v.proposal_id not in ids for v in self.votes):
            raise ValueError("deposits and votes belong to listed proposals")


PARAMS = query("gov/params", NO_ARG, Params)
PROPOSAL = optional_query("gov/proposal", TEXT_ARG, ProposalInfo)
PROPOSALS = query("gov/proposals", NO_ARG, Proposals)
VOTES = query("gov/votes", TEXT_ARG, Votes)

"""gov: proposals decided by Race weight (whitepaper Appendices J, K), after Cosmos SDK's `x/gov`.

Anyone submits a proposal with a deposit (locked in a bank escrow). Once the deposits reach `min_deposit` it
votes for `voting_blocks`; every holder of Race weight may vote Yes, No, Abstain or NoWithVeto, and change its
vote until the period ends. At the end block of the period's last block the votes are weighed by the Race
weights of that moment (`Params` says how quorum, veto and threshold decide). A passed proposal's messages run
in a branch of their own as the governance authority: all of them or none take effect, and a failure leaves
status FAILED and a `proposal_failed` event, never an exception out of the hook (each proposal's end also runs
in `isolated`, so not even a bug in gov stops the block). Deposits return to their
depositors when a proposal ends, unless it was vetoed as spam (they burn); a proposal that never reached
`min_deposit` is dropped and refunded.

Who could abuse it: weight comes only from verified compute, so splitting it over many keys gives the same
say; an account without weight cannot vote; a coalition with at most `threshold_ppm` of the weight that voted
cannot pass anything, and governance cannot lower the threshold below a majority.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol

from racenet.chain.authority import AuthorityMsg, as_authority, require_authority
from racenet.chain.codec import DecodeError, decode
from racenet.chain.collections import ADDRESS, TEXT, U64, EscrowIds, Item, KeySet, Map, Record, UintItem, UintMap, pair
from racenet.chain.errors import ChainError, Code
from racenet.chain.module import (
    Context,
    HandlerTable,
    Invariant,
    InvariantBroken,
    Module,
    ModuleKeeper,
    Msg,
    QueryTable,
    TxContext,
    isolated,
)
from racenet.chain.modules.gov.types import (
    INITIAL_DEPOSIT_DIVISOR,
    PARAMS,
    PPM,
    PROPOSAL,
    PROPOSALS,
    VOTES,
    Deposit,
    GovGenesis,
    MsgDeposit,
    MsgSubmitProposal,
    MsgTrainingGrant,
    MsgUpdateParams,
    MsgVote,
    Params,
    Proposal,
    ProposalInfo,
    Proposals,
    ProposalStatus,
    Tally,
    Vote,
    VoteInfo,
    VoteOption,
    Votes,
)
from racenet.chain.tx import AnyMsg
from racenet.crypto.address import encode_address

log = logging.getLogger(__name__)

NAME = "gov"
OPEN = (ProposalStatus.DEPOSIT, ProposalStatus.VOTING)


class BankKeeper(Protocol):
    """What gov needs of bank: its deposit escrows."""

    def lock(self, ctx: Context, owner: bytes, module: str, escrow_id: bytes, amount: int) -> None: ...
    def release(self, ctx: Context, module: str, escrow_id: bytes, recipient: bytes, amount: int) -> None: ...
    def burn_escrow(self, ctx: Context, module: str, escrow_id: bytes, amount: int) -> None: ...
    def module_escrows(self, ctx: Context, module: str) -> list[tuple[bytes, int]]: ...


class RaceKeeper(Protocol):
    """What gov needs of race: the voting weights."""

    def weight(self, ctx: Context, address: bytes) -> int: ...
    def all_weights(self, ctx: Context) -> list[tuple[bytes, int]]: ...


class TrainingFund(Protocol):
    """What a training-fund grant needs of tokenomics: paying from the fund (raises ChainError if it cannot)."""

    def grant(self, ctx: Context, recipient: bytes, amount: int) -> None: ...


class MsgRouter:
    """The App's message types and handlers, for decoding and running a proposal's messages."""

    def __init__(self, registry: Mapping[str, type[Msg]], routes: Mapping[str, Module[Any, Any]]) -> None:
        self.registry = registry
        self.routes = routes

    def decode(self, any_msg: AnyMsg) -> Msg:
        """A proposal's message, decoded and statelessly validated; only governance messages are accepted."""
        cls = self.registry.get(any_msg.type)
        if cls is None or not issubclass(cls, AuthorityMsg):
            raise ChainError(Code.UNKNOWN_MESSAGE, f"{any_msg.type!r} is not a message a proposal can carry")
        try:
            msg = decode(cls, any_msg.value)
        except DecodeError as e:
            raise ChainError(Code.MALFORMED_TX, f"malformed {any_msg.type}: {e}") from e
        msg.validate()
        return msg

    def deliver(self, ctx: TxContext, msg: Msg) -> None:
        """Run a message's handler."""
        self.routes[msg.TYPE].deliver(ctx, msg)


def tally_votes(votes: Iterable[tuple[VoteOption, int]], total_weight: int) -> Tally:
    """The weight behind each option (plain ints: only compared, never stored as amounts)."""
    sums = dict.fromkeys(VoteOption, 0)
    for option, weight in votes:
        sums[option] += weight
    return Tally(
        yes=sums[VoteOption.YES],
        no=sums[VoteOption.NO],
        abstain=sums[VoteOption.ABSTAIN],
        no_with_veto=sums[VoteOption.NO_WITH_VETO],
        total_weight=total_weight,
    )


def decide(tally: Tally, params: Params) -> tuple[ProposalStatus, str]:
    """A tally's result by the params: PASSED, VETOED (deposits burn) or REJECTED, with the reason."""
    voted = tally.yes + tally.no + tally.abstain + tally.no_with_veto
    if not tally.total_weight or voted * PPM < params.quorum_ppm * tally.total_weight:
        return ProposalStatus.REJECTED, f"quorum not met: {voted} of {tally.total_weight} Race weight voted"
    if tally.no_with_veto * PPM > params.veto_ppm * voted:
        return ProposalStatus.VETOED, "vetoed: NoWithVeto above the veto share; the deposits burn"
    deciding = voted - tally.abstain
    if not deciding or tally.yes * PPM <= params.threshold_ppm * deciding:
        return ProposalStatus.REJECTED, "the Yes share did not exceed the threshold"
    return ProposalStatus.PASSED, ""


PROPOSALS_SHOWN = 100
"""How many of the latest proposal ids gov/proposals answers with (a query's cost stays bounded)."""


class Keeper(ModuleKeeper):
    """The only reader and writer of gov state."""

    name = NAME
    params = Item(b"params", Record(Params), Params())
    next_id = UintItem(b"next_id")
    proposals = Map(b"proposal/", U64, Record(Proposal))
    deposits = UintMap(b"deposit/", pair(U64, ADDRESS))
    votes = Map(b"vote/", pair(U64, ADDRESS), TEXT)
    deposit_ends = KeySet(b"deposit_end/", pair(U64, U64))  # (last deposit block, proposal id)
    voting_ends = KeySet(b"voting_end/", pair(U64, U64))  # (last voting block, proposal id)
    escrows = EscrowIds(b"proposal/", U64)

    def __init__(self, bank: BankKeeper, race: RaceKeeper) -> None:
        self.bank = bank
        self.race = race
        self.router: MsgRouter | None = None
        self.fund: TrainingFund | None = None

    def use_router(self, router: MsgRouter) -> None:
        """Wire the App's messages, which passed proposals run."""
        self.router = router

    def use_training_fund(self, fund: TrainingFund) -> None:
        """Wire tokenomics' training fund, which grants pay from."""
        self.fund = fund

    def _router(self) -> MsgRouter:
        if self.router is None:
            raise ChainError(Code.INTERNAL, "gov has no message router")
        return self.router

    def proposal(self, ctx: Context, proposal_id: int) -> Proposal:
        """A proposal by id; NOT_FOUND if there is none."""
        found = self.proposals.get(ctx, proposal_id)
        if found is None:
            raise ChainError(Code.NOT_FOUND, f"no proposal {proposal_id}")
        return found

    # --- messages ---------------------------------------------------------------------------------

    def handle_submit(self, ctx: TxContext, msg: MsgSubmitProposal) -> bytes:
        """gov/SubmitProposal: check its messages, store it and take the initial deposit; the result is its id."""
        for any_msg in msg.messages:
            self._router().decode(any_msg)
        params = self.params.get(ctx)
        least = -(-int(params.min_deposit) // INITIAL_DEPOSIT_DIVISOR)
        if msg.deposit < least:
            raise ChainError(Code.INSUFFICIENT_FUNDS, f"a proposal is submitted with a deposit of at least {least}")
        proposal_id = max(int(self.next_id.get(ctx)), 1)
        self.next_id.set(ctx, proposal_id + 1)
        deposit_end = ctx.block.height + params.deposit_blocks - 1
        proposal = Proposal(
            id=proposal_id,
            proposer=ctx.tx.signer,
            title=msg.title,
            summary=msg.summary,
            messages=msg.messages,
            status=ProposalStatus.DEPOSIT,
            submit_height=ctx.block.height,
            deposit_end=deposit_end,
        )
        self.proposals.set(ctx, proposal_id, proposal)
        self.deposit_ends.add(ctx, (deposit_end, proposal_id))
        ctx.emit("proposal_submitted", id=str(proposal_id), proposer=encode_address(ctx.tx.signer), kind=proposal.kind)
        if msg.deposit:
            self.add_deposit(ctx, proposal_id, ctx.tx.signer, msg.deposit)
        return proposal_id.to_bytes(8, "big")

    def handle_deposit(self, ctx: TxContext, msg: MsgDeposit) -> None:
        """gov/Deposit: add to an open proposal's deposit."""
        self.add_deposit(ctx, msg.proposal_id, ctx.tx.signer, msg.amount)

    def add_deposit(self, ctx: Context, proposal_id: int, depositor: bytes, amount: int) -> None:
        """Lock `amount` of the depositor's nicoin for the proposal; its voting starts once it reaches min_deposit."""
        proposal = self.proposal(ctx, proposal_id)
        if proposal.status not in OPEN:
            raise ChainError(Code.ALREADY_DONE, f"proposal {proposal_id} has ended ({proposal.status})")
        self.bank.lock(ctx, depositor, NAME, self.escrows.id(proposal_id), amount)
        self.deposits.set(ctx, (proposal_id, depositor), self.deposits.get(ctx, (proposal_id, depositor)) + amount)
        proposal = dataclasses.replace(proposal, total_deposit=proposal.total_deposit + amount)
        ctx.emit("proposal_deposit", id=str(proposal_id), depositor=encode_address(depositor), amount=str(amount))
        params = self.params.get(ctx)
        if proposal.status == ProposalStatus.DEPOSIT and proposal.total_deposit >= params.min_deposit:
            self.deposit_ends.remove(ctx, (proposal.deposit_end, proposal_id))
            end = ctx.block.height + params.voting_blocks - 1
            proposal = dataclasses.replace(
                proposal, status=ProposalStatus.VOTING, voting_start=ctx.block.height, voting_end=end
            )
            self.voting_ends.add(ctx, (end, proposal_id))
            ctx.emit("proposal_voting", id=str(proposal_id), voting_end=str(end))
        self.proposals.set(ctx, proposal_id, proposal)

    def handle_vote(self, ctx: TxContext, msg: MsgVote) -> None:
        """gov/Vote: a holder of Race weight votes (or changes its vote) on a proposal in its voting period."""
        proposal = self.proposal(ctx, msg.proposal_id)
        if proposal.status != ProposalStatus.VOTING:
            code = Code.TOO_EARLY if proposal.status == ProposalStatus.DEPOSIT else Code.ALREADY_DONE
            raise ChainError(code, f"proposal {msg.proposal_id} is not in its voting period ({proposal.status})")
        if self.race.weight(ctx, ctx.tx.signer) <= 0:
            raise ChainError(Code.UNAUTHORIZED, "only a holder of Race weight may vote")
        self.votes.set(ctx, (msg.proposal_id, ctx.tx.signer), msg.option.value)
        ctx.emit("proposal_vote", id=str(msg.proposal_id), voter=encode_address(ctx.tx.signer), option=msg.option)

    def handle_training_grant(self, ctx: TxContext, msg: MsgTrainingGrant) -> None:
        """gov/TrainingGrant: governance pays a grant from the training fund."""
        require_authority(ctx, "grant from the training fund")
        if self.fund is None:
            raise ChainError(Code.NOT_FOUND, "this chain has no training fund")
        self.fund.grant(ctx, msg.recipient, msg.amount)

    def handle_update_params(self, ctx: TxContext, msg: MsgUpdateParams) -> None:
        """gov/UpdateParams: governance replaces its own params (periods of running proposals stay)."""
        require_authority(ctx, "change gov params")
        self.params.set(ctx, msg.params)
        ctx.emit("params_updated", module=NAME)

    # --- end block --------------------------------------------------------------------------------

    def end_periods(self, ctx: Context) -> None:
        """Drop proposals whose deposit period ended short, and tally those whose voting period ends here."""
        height = ctx.block.height
        for _, proposal_id in self.deposit_ends.keys(ctx, (height,)):
            with isolated(ctx, NAME, f"deposit period of proposal {proposal_id}") as item:
                self.drop(item, proposal_id)
        for _, proposal_id in self.voting_ends.keys(ctx, (height,)):
            with isolated(ctx, NAME, f"tally of proposal {proposal_id}") as item:
                self.finish(item, proposal_id)

    def drop(self, ctx: Context, proposal_id: int) -> None:
        """A proposal that did not reach min_deposit in time: refund its deposits and forget it."""
        proposal = self.proposal(ctx, proposal_id)
        self.deposit_ends.remove(ctx, (proposal.deposit_end, proposal_id))
        self._settle_deposits(ctx, proposal_id, burn=False)
        self.proposals.remove(ctx, proposal_id)
        ctx.emit("proposal_dropped", id=str(proposal_id), reason="the deposit did not reach min_deposit in time")

    def current_tally(self, ctx: Context, proposal_id: int) -> Tally:
        """The votes weighed by the Race weights now, with the total weight."""
        votes = [
            (VoteOption(o), self.race.weight(ctx, voter)) for (_, voter), o in self.votes.items(ctx, (proposal_id,))
        ]
        return tally_votes(votes, sum(w for _, w in self.race.all_weights(ctx)))

    def finish(self, ctx: Context, proposal_id: int) -> None:
        """Tally a proposal, run it if it passed, settle its deposits and record the result."""
        proposal = self.proposal(ctx, proposal_id)
        tally = self.current_tally(ctx, proposal_id)
        status, outcome = decide(tally, self.params.get(ctx))
        if status == ProposalStatus.PASSED:
            error = self.execute(ctx, proposal)
            if error:
                status, outcome = ProposalStatus.FAILED, f"execution failed: {error}"
                ctx.emit("proposal_failed", id=str(proposal_id), error=error)
        self.voting_ends.remove(ctx, (proposal.voting_end, proposal_id))
        self.votes.clear(ctx, (proposal_id,))
        self._settle_deposits(ctx, proposal_id, burn=status == ProposalStatus.VETOED)
        self.proposals.set(ctx, proposal_id, dataclasses.replace(proposal, status=status, tally=tally, outcome=outcome))
        ctx.emit("proposal_ended", id=str(proposal_id), status=status, outcome=outcome)

    def execute(self, ctx: Context, proposal: Proposal) -> str:
        """Run a passed proposal's messages as the governance authority in a branch of their own: all of them
        take effect or none; '' or why they failed (never an exception)."""
        try:
            with as_authority(ctx) as authority:
                router = self._router()
                for any_msg in proposal.messages:
                    router.deliver(authority, router.decode(any_msg))
        except ChainError as e:
            return e.message
        except Exception as e:  # a bug in a handler: the proposal fails, the block goes on
            log.exception("executing proposal %d failed at height %d", proposal.id, ctx.block.height)
            return f"{type(e).__name__}: {e}"
        return ""

    def _settle_deposits(self, ctx: Context, proposal_id: int, *, burn: bool) -> None:
        """Refund each deposit to its depositor, or burn them all; the deposit records go."""
        escrow = self.escrows.id(proposal_id)
        for (_, depositor), amount in self.deposits.items(ctx, (proposal_id,)):
            if burn:
                self.bank.burn_escrow(ctx, NAME, escrow, amount)
            else:
                self.bank.release(ctx, NAME, escrow, depositor, amount)
        self.deposits.clear(ctx, (proposal_id,))

    # --- invariants and queries -------------------------------------------------------------------

    def check_deposits(self, ctx: Context) -> None:
        """Each open proposal's escrow holds its deposits, which add up to its total; no other gov escrow exists;
        the period indexes list exactly the open proposals."""
        escrows = {self.escrows.parse(i): int(a) for i, a in self.bank.module_escrows(ctx, NAME)}
        open_ids: dict[int, Proposal] = {}
        for proposal_id, proposal in self.proposals.items(ctx):
            deposits = sum(int(a) for _, a in self.deposits.items(ctx, (proposal_id,)))
            if proposal.status in OPEN:
                open_ids[int(proposal_id)] = proposal
                if not escrows.get(int(proposal_id), 0) == deposits == proposal.total_deposit:
                    raise InvariantBroken(f"proposal {proposal_id}: escrow, deposits and total deposit differ")
            elif deposits:
                raise InvariantBroken(f"ended proposal {proposal_id} still has deposits")
        if any(i not in open_ids for i in escrows):
            raise InvariantBroken("a gov escrow belongs to no open proposal")
        indexed = {(int(e), int(i)) for e, i in self.deposit_ends.keys(ctx)} | {
            (int(e), int(i)) for e, i in self.voting_ends.keys(ctx)
        }
        expected = {
            (p.deposit_end if p.status == ProposalStatus.DEPOSIT else p.voting_end, i) for i, p in open_ids.items()
        }
        if indexed != expected:
            raise InvariantBroken("the period indexes do not list exactly the open proposals")

    def query_params(self, ctx: Context, _: None) -> Params:
        """The gov parameters."""
        return self.params.get(ctx)

    def query_proposal(self, ctx: Context, text: str) -> ProposalInfo | None:
        """A proposal with its deposits and its tally (final, or so far while it votes)."""
        proposal = self.proposals.get(ctx, _proposal_id(text))
        if proposal is None:
            return None
        deposits = tuple(Deposit(i, a, n) for (i, a), n in self.deposits.items(ctx, (proposal.id,)))
        tally = self.current_tally(ctx, proposal.id) if proposal.status in OPEN else proposal.tally
        return ProposalInfo(proposal, deposits, tally)

    def query_proposals(self, ctx: Context, _: None) -> Proposals:
        """The stored proposals among the latest `PROPOSALS_SHOWN` ids, oldest first (older ones: gov/proposal)."""
        last = int(self.next_id.get(ctx))
        found = (self.proposals.get(ctx, i) for i in range(max(1, last - PROPOSALS_SHOWN), last))
        return Proposals(tuple(p for p in found if p is not None))

    def query_votes(self, ctx: Context, text: str) -> Votes:
        """A proposal's votes with their voters' weights now and the tally they give."""
        proposal_id = _proposal_id(text)
        votes = [
            VoteInfo(voter, VoteOption(o), self.race.weight(ctx, voter))
            for (_, voter), o in self.votes.items(ctx, (proposal_id,))
        ]
        return Votes(tuple(votes), self.current_tally(ctx, proposal_id))


def _proposal_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"a proposal id is a positive integer, got {text!r}")
    return int(text)


class GovModule(Module[Keeper, GovGenesis]):
    """Module wiring: proposal, deposit and vote messages, governance's own messages, the period hook, queries
    and the deposits invariant."""

    name = NAME
    genesis_type = GovGenesis
    handlers: ClassVar[HandlerTable] = {
        MsgSubmitProposal: Keeper.handle_submit,
        MsgDeposit: Keeper.handle_deposit,
        MsgVote: Keeper.handle_vote,
        MsgTrainingGrant: Keeper.handle_training_grant,
        MsgUpdateParams: Keeper.handle_update_params,
    }
    queries: ClassVar[QueryTable] = {
        PARAMS: Keeper.query_params,
        PROPOSAL: Keeper.query_proposal,
        PROPOSALS: Keeper.query_proposals,
        VOTES: Keeper.query_votes,
    }

    def init_genesis(self, ctx: Context, state: GovGenesis) -> None:
        """Params, the next id, proposals with their period indexes, deposits (bank holds their escrows) and
        votes."""
        k = self.keeper
        k.params.set(ctx, state.params)
        k.next_id.set(ctx, state.next_id)
        for p in state.proposals:
            k.proposals.set(ctx, p.id, p)
            if p.status == ProposalStatus.DEPOSIT:
                k.deposit_ends.add(ctx, (p.deposit_end, p.id))
            elif p.status == ProposalStatus.VOTING:
                k.voting_ends.add(ctx, (p.voting_end, p.id))
        for d in state.deposits:
            k.deposits.set(ctx, (d.proposal_id, d.depositor), d.amount)
        for v in state.votes:
            k.votes.set(ctx, (v.proposal_id, v.voter), v.option.value)

    def export_genesis(self, ctx: Context) -> GovGenesis:
        """Everything init_genesis loads."""
        k = self.keeper
        return GovGenesis(
            params=k.params.get(ctx),
            next_id=max(int(k.next_id.get(ctx)), 1),
            proposals=tuple(p for _, p in k.proposals.items(ctx)),
            deposits=tuple(Deposit(i, a, n) for (i, a), n in k.deposits.items(ctx)),
            votes=tuple(Vote(i, a, VoteOption(o)) for (i, a), o in k.votes.items(ctx)),
        )

    def end_block(self, ctx: Context) -> None:
        """End deposit and voting periods that end at this block."""
        self.keeper.end_periods(ctx)

    def invariants(self) -> Mapping[str, Invariant]:
        """deposits: escrows, deposit records and totals agree; the period indexes list the open proposals."""
        return {"deposits": self.keeper.check_deposits}

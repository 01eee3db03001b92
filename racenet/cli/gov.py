"""`racenet gov submit | deposit | vote | show`: proposals decided by Race weight (whitepaper Appendices J, K)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import click
from rich.table import Table

import racenet.chain.app  # noqa: F401  (imports every module, so every governance message type is known)
from racenet.chain.authority import AuthorityMsg
from racenet.chain.codec import decode, encode
from racenet.chain.errors import ChainError
from racenet.chain.jsonform import from_json, to_json
from racenet.chain.module import Msg
from racenet.chain.modules import gov
from racenet.chain.modules.bank.denom import format_amount, parse_amount
from racenet.chain.modules.inference import MsgRegisterModel
from racenet.chain.query import NO_ARG, QuerySpec, query
from racenet.chain.tx import AnyMsg
from racenet.cli.chain import resolve_address
from racenet.cli.common import (
    address_text,
    chain_client,
    echo_json,
    fail,
    home_option,
    json_option,
    load_key,
    node_option,
    table_console,
    wide_option,
)
from racenet.crypto.address import encode_address
from racenet.node.client import ChainClient
from racenet.node.sender import TxSender


@click.group("gov")
def gov_command() -> None:
    """Governance: proposals with a deposit, voted by Race weight (parameter changes, models, grants, text)."""


def params_updates() -> dict[str, type[Msg]]:
    """Each module's MsgUpdateParams by module name."""
    return {cls.TYPE.split("/")[0]: cls for cls in AuthorityMsg.__subclasses__() if cls.TYPE.endswith("/UpdateParams")}


def _proposal_options(command: Any) -> Any:
    """Options every `submit` kind shares: who submits, title, summary and initial deposit."""
    for option in (
        click.option("--deposit", help="Initial deposit, e.g. 10icon  [default: the chain's minimum deposit]"),
        click.option("--summary", default="", help="What the proposal does and why."),
        click.option("--title", help="A one-line title  [default: one describing the proposal]"),
        click.option("--from", "key_name", required=True, help="Keyring key that submits and pays the deposit."),
        json_option,
        node_option,
        home_option,
    ):
        command = option(command)
    return command


def _amount(text: str) -> int:
    try:
        return parse_amount(text)
    except ValueError as e:
        fail(str(e))


def _checked(msg: Msg) -> Msg:
    """`msg` if its stateless checks pass; a one-line error naming the problem otherwise."""
    try:
        msg.validate()
    except ChainError as e:
        fail(e.message)
    return msg


def _send(
    home: Path, node: str, key_name: str, as_json: bool, build: typing.Callable[[ChainClient], Msg], done: str
) -> None:
    """Sign and send the message `build` makes (it may query the chain first); print `done` or JSON."""
    key = load_key(home, key_name)
    with chain_client(node) as client:
        msg = build(client)
        outcome = TxSender(client, key).send([msg])
    result: dict[str, Any] = {"hash": outcome.hash, "height": outcome.height}
    if isinstance(msg, gov.MsgSubmitProposal):
        result["proposal_id"] = int.from_bytes(outcome.data[:8], "big")
        done = f"{done} as proposal {result['proposal_id']}"
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{done} in block {outcome.height}: {outcome.hash}")


def _submit(
    home: Path,
    node: str,
    as_json: bool,
    key_name: str,
    title: str,
    summary: str,
    deposit: str | None,
    content: typing.Callable[[ChainClient], tuple[Msg, ...]],
) -> None:
    """Submit a proposal carrying the messages `content` makes, with the given or the minimum deposit."""
    nicoin = None if deposit is None else _amount(deposit)

    def build(client: ChainClient) -> Msg:
        msgs = content(client)
        amount = client.query(gov.PARAMS).min_deposit if nicoin is None else nicoin
        any_msgs = tuple(AnyMsg(m.TYPE, encode(m)) for m in msgs)
        return _checked(gov.MsgSubmitProposal(title, summary, any_msgs, amount))

    _send(home, node, key_name, as_json, build, "submitted")


@gov_command.group()
def submit() -> None:
    """Submit a proposal: text, a parameter change, a model or a training-fund grant."""


@submit.command("text")
@_proposal_options
def submit_text(
    home: Path, node: str, as_json: bool, key_name: str, title: str | None, summary: str, deposit: str | None
) -> None:
    """A text proposal: nothing runs if it passes; the vote is the record."""
    if not title:
        fail("a text proposal needs --title")
    _submit(home, node, as_json, key_name, title, summary, deposit, lambda _: ())


@submit.command("params")
@_proposal_options
@click.argument("module")
@click.argument("changes")
def submit_params(
    home: Path,
    node: str,
    as_json: bool,
    key_name: str,
    title: str | None,
    summary: str,
    deposit: str | None,
    module: str,
    changes: str,
) -> None:
    """Change MODULE's params: CHANGES is a JSON object (inline or a file) of the fields to change, e.g.
    '{"min_fee": 2000}'; the other fields keep their current values."""
    updates = params_updates()
    cls = updates.get(module)
    if cls is None:
        fail(f"module {module!r} has no params governance can change; one of: {', '.join(sorted(updates))}")
    path = Path(changes)
    try:
        doc = json.loads(path.read_text() if path.is_file() else changes)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"CHANGES is neither a readable JSON file nor inline JSON: {e}")
    if not isinstance(doc, dict):
        fail("CHANGES must be a JSON object of params fields")
    params_type = typing.get_type_hints(cls)["params"]
    spec: QuerySpec[None, Any] = query(f"{module}/params", NO_ARG, params_type)

    def content(client: ChainClient) -> tuple[Msg, ...]:
        try:
            params = from_json(params_type, {**to_json(client.query(spec)), **doc})
        except ValueError as e:
            fail(f"{module} params: {e}")
        return (_checked(cls(params=params)),)  # type: ignore[call-arg]

    _submit(home, node, as_json, key_name, title or f"Change {module} params", summary, deposit, content)


@submit.command("model")
@_proposal_options
@click.argument("name")
@click.argument("units_per_token", type=int)
def submit_model(
    home: Path,
    node: str,
    as_json: bool,
    key_name: str,
    title: str | None,
    summary: str,
    deposit: str | None,
    name: str,
    units_per_token: int,
) -> None:
    """Register model NAME at UNITS_PER_TOKEN units of compute per token (or change its units)."""
    msg = _checked(MsgRegisterModel(name, units_per_token))
    title = title or f"Register {name} at {units_per_token} units of compute per token"
    _submit(home, node, as_json, key_name, title, summary, deposit, lambda _: (msg,))


@submit.command("grant")
@_proposal_options
@click.argument("recipient")
@click.argument("amount")
def submit_grant(
    home: Path,
    node: str,
    as_json: bool,
    key_name: str,
    title: str | None,
    summary: str,
    deposit: str | None,
    recipient: str,
    amount: str,
) -> None:
    """Grant AMOUNT (e.g. 1000icon) from the training fund to RECIPIENT (address or key name)."""
    nicoin = _amount(amount)
    msg = _checked(gov.MsgTrainingGrant(resolve_address(home, recipient), nicoin))
    title = title or f"Training grant of {format_amount(nicoin)} to {recipient}"
    _submit(home, node, as_json, key_name, title, summary, deposit, lambda _: (msg,))


@gov_command.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key that deposits.")
@click.argument("proposal_id", type=click.IntRange(min=1))
@click.argument("amount")
def deposit(home: Path, node: str, as_json: bool, key_name: str, proposal_id: int, amount: str) -> None:
    """Add AMOUNT to proposal PROPOSAL_ID's deposit, like 5icon; refunded when it ends unless vetoed as spam."""
    msg = _checked(gov.MsgDeposit(proposal_id, _amount(amount)))
    _send(home, node, key_name, as_json, lambda _: msg, f"deposited {amount} on proposal {proposal_id}")


@gov_command.command()
@home_option
@node_option
@json_option
@click.option("--from", "key_name", required=True, help="Keyring key of the Race weight holder who votes.")
@click.argument("proposal_id", type=click.IntRange(min=1))
@click.argument("option", type=click.Choice([o.value for o in gov.VoteOption]))
def vote(home: Path, node: str, as_json: bool, key_name: str, proposal_id: int, option: str) -> None:
    """Vote OPTION on proposal PROPOSAL_ID with your Race weight (read at the tally); a new vote replaces the last."""
    msg = gov.MsgVote(proposal_id, gov.VoteOption(option))
    _send(home, node, key_name, as_json, lambda _: msg, f"voted {option} on proposal {proposal_id}")


def _describe(any_msg: AnyMsg) -> str:
    """A proposal's message as text: its type and fields."""
    cls = next((c for c in AuthorityMsg.__subclasses__() if any_msg.type == c.TYPE), None)
    if cls is None:
        return any_msg.type
    try:
        return f"{any_msg.type} {json.dumps(to_json(decode(cls, any_msg.value)), sort_keys=True)}"
    except ValueError:
        return f"{any_msg.type} (undecodable)"


def _tally_line(tally: gov.Tally) -> str:
    return (
        f"yes {tally.yes}, no {tally.no}, abstain {tally.abstain}, no with veto {tally.no_with_veto} "
        f"(of {tally.total_weight} Race weight)"
    )


@gov_command.command()
@node_option
@json_option
@wide_option
@click.argument("proposal_id", type=click.IntRange(min=1), required=False)
def show(node: str, as_json: bool, wide: bool, proposal_id: int | None) -> None:
    """The params and every proposal, or one proposal (PROPOSAL_ID) with its deposits, votes and tally."""
    with chain_client(node) as client:
        if proposal_id is None:
            params, proposals = client.query(gov.PARAMS), client.query(gov.PROPOSALS)
            if as_json:
                echo_json({"params": to_json(params), "proposals": to_json(proposals)})
                return
            _print_list(params, proposals, wide)
            return
        info = client.query(gov.PROPOSAL, str(proposal_id))
        if info is None:
            fail(f"no proposal {proposal_id} (a proposal that never reached its deposit is dropped)")
        votes = client.query(gov.VOTES, str(proposal_id))
    if as_json:
        echo_json({"proposal": to_json(info), "votes": to_json(votes)})
        return
    p = info.proposal
    click.echo(f"proposal {p.id}: {p.title} [{p.status}]")
    click.echo(f"proposer {encode_address(p.proposer)}, submitted at height {p.submit_height}")
    if p.summary:
        click.echo(p.summary)
    for any_msg in p.messages or ():
        click.echo(f"  runs {_describe(any_msg)}")
    click.echo(f"deposit {format_amount(p.total_deposit)}; deposit period ends at height {p.deposit_end}")
    if p.voting_end:
        click.echo(f"voting from height {p.voting_start} to {p.voting_end}")
    label = "tally so far" if p.status in (gov.ProposalStatus.DEPOSIT, gov.ProposalStatus.VOTING) else "final tally"
    click.echo(f"{label}: {_tally_line(info.tally)}")
    if p.outcome:
        click.echo(f"outcome: {p.outcome}")
    if votes.votes:
        table = Table(title="votes")
        for column in ("voter", "option", "weight now"):
            table.add_column(column)
        for v in votes.votes:
            table.add_row(address_text(wide)(v.voter), v.option.value, str(v.weight))
        table_console(wide).print(table)


def _print_list(params: gov.Params, proposals: gov.Proposals, wide: bool) -> None:
    click.echo(
        f"min deposit {format_amount(params.min_deposit)}, deposit period {params.deposit_blocks} blocks, voting "
        f"period {params.voting_blocks} blocks; quorum {params.quorum_ppm / 10_000:g}%, threshold "
        f"{params.threshold_ppm / 10_000:g}%, veto {params.veto_ppm / 10_000:g}% (of Race weight)"
    )
    if not proposals.proposals:
        click.echo("no proposals")
        return
    table = Table(title="proposals")
    for column in ("id", "title", "kind", "status", "deposit", "voting ends"):
        table.add_column(column, no_wrap=column in ("id", "kind", "deposit"))
    for p in proposals.proposals:
        end = str(p.voting_end) if p.voting_end else "-"
        table.add_row(str(p.id), p.title, p.kind, p.status.value, format_amount(p.total_deposit), end)
    table_console(wide).print(table)

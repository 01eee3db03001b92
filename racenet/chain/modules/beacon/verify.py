"""Offline verification of beacon rounds: anyone holding a group's public key checks any past round.

A round is valid when its signature is the (unique) BLS signature of `round_message(round, previous,
mix)` under its group's key and its output is the signature's hash; a run of rounds also chains, each
one's `previous` being the output before it. No chain state is needed beyond the records themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from racenet.chain.modules.beacon.types import Group, Round, round_message, round_output
from racenet.crypto.threshold import InvalidPoint, g2, verify


def verify_round(record: Round, group: Group) -> str:
    """Why a round is not valid under `group` ('' if it is)."""
    if record.epoch != group.epoch:
        return f"round {record.round} was signed by group {record.epoch}, not {group.epoch}"
    if record.output != round_output(record.signature):
        return f"round {record.round}: the output is not the hash of the signature"
    try:
        key = g2(group.public_key)
    except InvalidPoint as e:
        return f"group {group.epoch}: {e}"
    if not verify(key, round_message(record.round, record.previous, record.mix), record.signature):
        return f"round {record.round}: the signature does not verify under group {group.epoch}'s key"
    return ""


def verify_chain(rounds: Sequence[Round], groups: Sequence[Group]) -> list[str]:
    """Every problem of a run of rounds: each against its group, and consecutive rounds chained."""
    by_epoch = {g.epoch: g for g in groups}
    problems = []
    previous: Round | None = None
    for record in sorted(rounds, key=lambda r: r.round):
        group = by_epoch.get(record.epoch)
        fault = verify_round(record, group) if group else f"round {record.round}: no key of group {record.epoch}"
        if fault:
            problems.append(fault)
        if previous is not None and previous.round + 1 == record.round and record.previous != previous.output:
            problems.append(f"round {record.round} does not chain on round {previous.round}'s output")
        previous = record
    return problems

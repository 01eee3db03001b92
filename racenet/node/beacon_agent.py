"""A validator's beacon agent: what it puts in its precommit vote extensions (off chain; it holds the secret).

Everything it sends is derived from its beacon secret and chain data, so a restart loses nothing: the
dealing polynomial and the commit–reveal value hash from the secret and the epoch or cycle, and its
shares are decrypted again from the dealings on chain. Each height it adds, for the block that will
include the extension: partial signatures of the round to sign, and whatever the key generation and
commit–reveal windows ask of it and the chain has not recorded yet.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from racenet.chain.codec import encode
from racenet.chain.module import Context
from racenet.chain.modules.beacon import BeaconBlock, Extension, Keeper, MsgRegisterKey, possession_statement
from racenet.chain.modules.beacon.dkg import holder_of
from racenet.chain.modules.beacon.types import (
    Answer,
    Complaint,
    Dealing,
    Epoch,
    Group,
    Partial,
    RevealedShare,
    commitment,
)
from racenet.crypto.threshold import (
    ORDER,
    Polynomial,
    decrypt_share,
    encrypt_share,
    g2,
    prove_possession,
    public_key,
    scalar_from_hash,
    share_matches,
    sign_shares,
)

if TYPE_CHECKING:
    from racenet.chain.app import App

KEY_FILE = "beacon_key.json"


class BeaconKeyError(ValueError):
    """The beacon key file is missing or unreadable; the message says which."""


def load_or_create_secret(home: Path) -> int:
    """The node's beacon secret from `<home>/config/beacon_key.json`, created (mode 0600) if absent."""
    path = home / "config" / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.randbelow(ORDER - 1) + 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"secret": secret.to_bytes(32, "big").hex()}, f)
        return secret
    try:
        secret = int.from_bytes(bytes.fromhex(json.loads(path.read_text())["secret"]), "big")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BeaconKeyError(f"cannot read the beacon key in {path}: {e}") from e
    if not 0 < secret < ORDER:
        raise BeaconKeyError(f"{path} holds no valid beacon secret")
    return secret


def register_key_msg(secret: int, chain_id: str, address: bytes) -> MsgRegisterKey:
    """The message that registers a beacon key for an account, with its proof of possession."""
    return MsgRegisterKey(public_key(secret), prove_possession(secret, possession_statement(chain_id, address)))


@dataclass
class BeaconAgent:
    """Builds one validator's vote extensions from its beacon secret and its consensus key."""

    secret: int
    consensus_key: bytes
    _shares: dict[int, dict[int, int]] = field(default_factory=dict)
    _dealings: dict[int, Dealing] = field(default_factory=dict)
    _checked: dict[tuple[int, bytes], bool] = field(default_factory=dict)

    def extension(self, app: App, height: int, block: BeaconBlock | None) -> bytes:
        """The vote extension for the block at `height` (included in block height + 1)."""
        ctx = app.read_context()
        keeper = app.beacon.keeper
        me = app.race.keeper.node_of(ctx, self.consensus_key)
        if not me:
            return b""
        return encode(self.contents(ctx, keeper, me, height, block))

    def contents(self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None) -> Extension:
        """What this agent says at `height`: partials, then its key-generation and commit-reveal messages."""
        round_, partials = self.partials(ctx, keeper, me, height, block)
        epoch, phase = keeper.dkg_phase(ctx, height + 1)
        setup = keeper.epochs.get(ctx, epoch)
        dealings: tuple[Dealing, ...] = ()
        complaints: tuple[Complaint, ...] = ()
        answers: tuple[Answer, ...] = ()
        if setup is not None and holder_of(setup, me) is not None:
            if phase == "deal" and not keeper.dealings.has(ctx, (epoch, me)):
                dealings = (self.dealing(ctx, setup),)
            elif phase == "complain":
                complaints = self.complaints(ctx, keeper, me, setup)
            elif phase == "dispute":
                answers = self.answers(ctx, keeper, me, setup)
        cycle, window = keeper.reveal_phase(ctx, height + 1)
        value = self.reveal_value(ctx, cycle)
        commits: tuple[bytes, ...] = ()
        reveals: tuple[bytes, ...] = ()
        if window == "commit" and not keeper.commits.has(ctx, (cycle, me)):
            commits = (commitment(me, cycle, value),)
        elif window == "reveal" and keeper.commits.has(ctx, (cycle, me)) and not keeper.reveals.has(ctx, (cycle, me)):
            reveals = (value,)
        return Extension(round_, partials, dealings, complaints, answers, commits, reveals)

    def partials(
        self, ctx: Context, keeper: Keeper, me: bytes, height: int, block: BeaconBlock | None
    ) -> tuple[int, tuple[Partial, ...]]:
        """The round to sign at `height` and this agent's partial signature of it by each of its share indices."""
        to_sign = keeper.round_to_sign(ctx, height, block)
        group = keeper.group_at(ctx, height)
        if to_sign is None or group is None or holder_of(group, me) is None:
            return 0, ()
        round_, message = to_sign
        shares = self.shares(ctx, keeper, me, group)
        signed = sign_shares(shares, message)
        return round_, tuple(Partial(index, signed[index]) for index in sorted(signed))

    def shares(self, ctx: Context, keeper: Keeper, me: bytes, group: Group) -> dict[int, int]:
        """This agent's secret share per index of a group: the qualified dealers' shares summed."""
        if group.epoch not in self._shares:
            holder = holder_of(group, me)
            assert holder is not None
            total = dict.fromkeys(holder.indices, 0)
            for dealer in group.dealers:
                opened = self._opened(ctx, keeper, group.epoch, dealer, me)
                dealing = keeper.dealings.get(ctx, (group.epoch, dealer))
                for index in holder.indices:
                    share = opened.get(index)
                    if share is None:
                        assert dealing is not None
                        share = decrypt_share(self.secret, dealing.ephemeral, index, dealing.shares[index - 1])
                    total[index] = (total[index] + share) % ORDER
            self._shares = {group.epoch: total}
        return self._shares[group.epoch]

    def _opened(self, ctx: Context, keeper: Keeper, epoch: int, dealer: bytes, me: bytes) -> dict[int, int]:
        answer = keeper.answers.get(ctx, (epoch, dealer, me))
        return {} if answer is None else {s.index: int.from_bytes(s.share, "big") for s in answer.shares}

    def polynomial(self, ctx: Context, setup: Epoch) -> Polynomial:
        """This agent's dealing polynomial for an epoch (re-derivable from the secret)."""
        seed = self.secret.to_bytes(32, "big") + ctx.block.chain_id.encode() + setup.epoch.to_bytes(8, "big")
        return Polynomial.derive(b"racenet/beacon/dealing" + seed, setup.threshold - 1)

    def dealing(self, ctx: Context, setup: Epoch) -> Dealing:
        """This agent's dealing of an epoch: commitments and every holder's shares, encrypted to its key."""
        if setup.epoch not in self._dealings:
            poly = self.polynomial(ctx, setup)
            ephemeral = scalar_from_hash(self.secret.to_bytes(32, "big"), b"ephemeral", setup.epoch.to_bytes(8, "big"))
            shares = tuple(encrypt_share(ephemeral, h.key, i, poly.at(i)) for h in setup.holders for i in h.indices)
            dealing = Dealing(setup.epoch, poly.commitments(), public_key(ephemeral), shares)
            self._dealings = {setup.epoch: dealing}
        return self._dealings[setup.epoch]

    def complaints(self, ctx: Context, keeper: Keeper, me: bytes, setup: Epoch) -> tuple[Complaint, ...]:
        """Complaints against every dealer whose share to this agent does not match its commitments."""
        holder = holder_of(setup, me)
        assert holder is not None
        out = []
        for (_, dealer), dealing in keeper.dealings.items(ctx, (setup.epoch,)):
            if dealer == me or keeper.complaints.has(ctx, (setup.epoch, dealer, me)):
                continue
            key = (setup.epoch, dealer)
            if key not in self._checked:
                points = [g2(c) for c in dealing.commitments]
                self._checked[key] = all(
                    share_matches(points, i, decrypt_share(self.secret, dealing.ephemeral, i, dealing.shares[i - 1]))
                    for i in holder.indices
                )
            if not self._checked[key]:
                out.append(Complaint(setup.epoch, dealer))
        return tuple(out)

    def answers(self, ctx: Context, keeper: Keeper, me: bytes, setup: Epoch) -> tuple[Answer, ...]:
        """Answers to every unanswered complaint against this agent: the complainer's shares in the clear."""
        poly = self.polynomial(ctx, setup)
        out = []
        for _, _, complainer in keeper.complaints.keys(ctx, (setup.epoch, me)):
            holder = holder_of(setup, complainer)
            if holder is None or keeper.answers.has(ctx, (setup.epoch, me, complainer)):
                continue
            opened = tuple(RevealedShare(i, poly.at(i).to_bytes(32, "big")) for i in holder.indices)
            out.append(Answer(setup.epoch, complainer, opened))
        return tuple(out)

    def reveal_value(self, ctx: Context, cycle: int) -> bytes:
        """This agent's commit–reveal value of a cycle (secret until revealed)."""
        seed = self.secret.to_bytes(32, "big") + ctx.block.chain_id.encode() + cycle.to_bytes(8, "big")
        return scalar_from_hash(b"racenet/beacon/reveal", seed).to_bytes(32, "big")

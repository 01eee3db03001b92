"""The explorer's pages: each reads the chain through a client and returns its title and HTML content."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from racenet.chain.modules import bank, beacon, gov, inference, pricing, race, tokenomics, training, verification
from racenet.chain.modules.tokenomics.schedule import PAPER_CAP, PHASES, basis_points, effective_rate
from racenet.crypto.address import decode_address, encode_address
from racenet.explorer import data, plots
from racenet.explorer.html import Html, address, amount, fields, join, link, table, tag
from racenet.node.client import ChainClient

Content = tuple[str, Html]
"""A page's title and body."""
HOME_BLOCKS = 10
"""How many of the latest blocks the overview lists (and the live endpoint sends)."""


@dataclass
class Explorer:
    """What every page reads: the chain, the weights seen so far, and this node's training directory."""

    client: ChainClient
    history: data.WeightHistory
    training_dir: Path | None = None

    def height(self) -> int:
        """The latest committed height."""
        return self.client.height()

    def nodes(self) -> tuple[race.NodeInfo, ...]:
        """The Race nodes, remembering their weights for the weights plot."""
        nodes = self.client.query(race.NODES).nodes
        self.history.sample(nodes)
        return nodes


def short(text: str, keep: int = 12) -> str:
    """A long hash or address shortened for a table cell."""
    return text if len(text) <= 2 * keep else f"{text[:keep]}…{text[-6:]}"


def block_rows(blocks: list[data.BlockView]) -> Iterator[tuple[object, ...]]:
    """Rows of a block list: height (linked), time and transaction count."""
    for b in blocks:
        yield link(f"/blocks/{b.height}", b.height), b.time, len(b.txs)


def overview(ex: Explorer) -> Content:
    """Height, the latest blocks (updated live), the Race cycle and the tokenomics phase at a glance."""
    status = ex.client.status()
    height = int(status["sync_info"]["latest_block_height"])
    cycle = ex.client.query(race.CYCLE)
    econ = ex.client.query(tokenomics.STATUS)
    summary = fields(
        [
            ("chain", status["node_info"]["network"]),
            ("latest block time", status["sync_info"]["latest_block_time"]),
            ("app hash", status["sync_info"]["latest_app_hash"]),
            ("race", join([link("/race", f"cycle {cycle.cycle}"), f", phase {cycle.phase}"])),
            ("tokenomics", join([link("/tokenomics", _phase_text(econ)), f", minted {amount(econ.minted)}"])),
        ]
    )
    blocks = data.recent_blocks(ex.client, height, HOME_BLOCKS)
    latest = table(["height", "time", "txs"], block_rows(blocks), id_="latest-blocks")
    return "overview", join([summary, tag("h2", "latest blocks"), latest, link("/blocks", "all blocks →")])


def _phase_text(status: tokenomics.Status) -> str:
    """The subsidy phase in words."""
    if status.phase > tokenomics.PHASES:
        return f"all {tokenomics.PHASES} phases done"
    return f"phase {status.phase} of {tokenomics.PHASES}, subsidy {status.subsidy_bps / 100:.2f}%"


def blocks(ex: Explorer, top: int) -> Content:
    """Fifty blocks from `top` (0: the latest) down, with a link to older ones."""
    top = top or ex.height()
    shown = data.recent_blocks(ex.client, top)
    older = link(f"/blocks?top={top - data.MAX_BLOCKS}", "older →") if top > data.MAX_BLOCKS else ""
    return "blocks", join([table(["height", "time", "txs"], block_rows(shown)), older])


def tx_rows(txs: tuple[data.TxView, ...]) -> Iterator[tuple[object, ...]]:
    """Rows of a transaction list: hash (linked), signer, messages, memo, fee and result."""
    for t in txs:
        result = "" if t.code is None else ("ok" if t.code == 0 else f"failed ({t.code}): {t.log}")
        signer = link(f"/rewards/{t.signer}", short(t.signer)) if t.signer else "-"
        types = ", ".join(m.type for m in t.msgs)
        yield link(f"/txs/{t.hash}", short(t.hash)), signer, types, t.memo, amount(t.fee), result


TX_HEADERS = ["hash", "signer", "messages", "memo", "fee", "result"]


def block_page(ex: Explorer, height: int) -> Content:
    """One block: its hash and time, and its transactions with their messages."""
    b = data.block(ex.client, height, with_results=True)
    head = fields([("height", b.height), ("hash", b.hash), ("time", b.time), ("transactions", len(b.txs))])
    nav = join(
        [
            link(f"/blocks/{b.height - 1}", "← previous") if b.height > 1 else "",
            " ",
            link(f"/blocks/{b.height + 1}", "next →"),
        ]
    )
    return f"block {b.height}", join([head, nav, tag("h2", "transactions"), table(TX_HEADERS, tx_rows(b.txs))])


def tx_page(ex: Explorer, hash_hex: str) -> Content:
    """One transaction with every message's fields."""
    t = data.transaction(ex.client, hash_hex)
    result = "ok" if t.code == 0 else f"failed ({t.code}): {t.log}"
    head = fields(
        [
            ("hash", t.hash),
            ("block", link(f"/blocks/{t.height}", t.height)),
            ("signer", link(f"/rewards/{t.signer}", t.signer) if t.signer else "-"),
            ("memo", t.memo),
            ("fee", amount(t.fee)),
            ("result", result),
        ]
    )
    msgs = [join([tag("h3", m.type), tag("pre", data.pretty(m.fields))]) for m in t.msgs]
    return f"transaction {short(t.hash)}", join([head, tag("h2", "messages"), *msgs])


def race_page(ex: Explorer) -> Content:
    """The current cycle's phases and claims (participants, committees, votes, standing), every node's weight
    and power with its last verdict, misvotes, and the weights over the cycles seen."""
    cycle = ex.client.query(race.CYCLE)
    nodes = ex.nodes()
    claims = ex.client.query(race.CLAIMS).claims
    misvotes = ex.client.query(race.MISVOTES).misvotes
    starts = sorted(cycle.phase_starts.items(), key=lambda start: start[1])
    phases = fields([(str(p), h) for p, h in starts] + [("tally", cycle.tally_height)])
    claim_rows = (
        (
            address(c.participant),
            c.count,
            "yes" if c.revealed else "no",
            join(join([address(m), Html("<br>")]) for m in c.committee),
            join(
                join([address(v.voter), f": {'accept' if v.accept else 'reject'} ({v.weight})", Html("<br>")])
                for v in c.votes
            ),
            "yes" if c.escalated else "no",
            c.standing,
        )
        for c in claims
    )
    node_rows = (
        (address(n.address), n.weight, n.power, "-" if n.committed is None else n.committed, *_outcome(n.last_outcome))
        for n in nodes
    )
    series = {short(a, 8): [(float(c), float(w)) for c, w in points] for a, points in ex.history.series().items()}
    plot = plots.line_plot("Race weight per tallied cycle", "cycle", "weight", series) if series else ""
    content = [
        fields([("cycle", cycle.cycle), ("phase", cycle.phase), ("preset", cycle.preset), ("height", cycle.height)]),
        tag("h2", "phases (start heights)"),
        phases,
        tag("h2", f"claims in cycle {cycle.cycle}"),
        table(["participant", "count", "revealed", "committee", "votes (weight)", "escalated", "standing"], claim_rows),
        tag("h2", "nodes"),
        table(
            ["node", "weight", "power", "committed", "last cycle", "verdict", "claimed", "weight won", "committee"],
            node_rows,
        ),
        tag("h2", "weights over cycles"),
        Html(plot) if plot else tag("p", "no tallied cycle yet", class_="muted"),
        tag("h2", "misvotes"),
        table(["cycle", "voter", "count"], ((m.cycle, address(m.voter), m.count) for m in misvotes)),
    ]
    return f"race · cycle {cycle.cycle}", join(content)


def _outcome(last: race.Outcome | None) -> tuple[object, ...]:
    """A node's last tally: cycle, verdict, claimed, weight and committee size."""
    if last is None:
        return "-", "-", "-", "-", "-"
    verdict = f"{last.status}{', escalated' if last.escalated else ''}"
    return last.cycle, verdict, last.claimed, last.weight, len(last.committee)


def beacon_page(ex: Explorer) -> Content:
    """The beacon's latest rounds, its group and key generation, and the penalties it recorded."""
    status = ex.client.query(beacon.STATUS)
    rounds = ex.client.query(beacon.ROUNDS, "").rounds
    penalties = ex.client.query(beacon.PENALTIES).penalties
    group = status.group
    summary = fields(
        [
            ("latest round", status.latest.round if status.latest else "none yet"),
            ("pending round", status.pending_round),
            (
                "group",
                f"epoch {group.epoch}, threshold {group.threshold}, {len(group.holders)} holders" if group else "none",
            ),
            ("key generation", status.dkg_phase),
        ]
    )
    round_rows = ((r.round, r.epoch, r.height, short(r.output.hex(), 16)) for r in reversed(rounds))
    content = [
        summary,
        tag("h2", "rounds"),
        table(["round", "epoch", "height", "output"], round_rows),
        tag("h2", "penalties"),
        table(["cycle", "address", "reason"], ((p.cycle, address(p.address), p.reason) for p in penalties)),
    ]
    return "beacon", join(content)


def requests_page(ex: Explorer) -> Content:
    """Inference requests started in the latest blocks, and a form to look one up by id."""
    recent = data.recent_blocks(ex.client, ex.height())
    rows = (
        (link(f"/requests/{rid}", short(rid, 16)), model, link(f"/blocks/{h}", h))
        for h, rid, model in data.recent_requests(ex.client, recent)
    )
    form = Html(
        '<form method="get" action="/explorer/requests/lookup"><label>request id (hex) '
        '<input name="id" size="70"></label> <button>show</button></form>'
    )
    return "inference requests", join(
        [form, tag("h2", f"started in the last {data.MAX_BLOCKS} blocks"), table(["request", "model", "block"], rows)]
    )


def request_page(ex: Explorer, request_hex: str) -> Content:
    """One inference request: its developer, executor and cost, and its verification task (check and outcome)."""
    request_id = bytes.fromhex(request_hex)
    info = ex.client.query(inference.REQUEST, request_id)
    task = ex.client.query(verification.TASK, request_id)
    if info is None:
        return f"request {short(request_hex)}", tag("p", "no such request on chain (or its receipt was pruned)")
    rows: list[tuple[str, object]] = [("id", request_hex)]
    if info.request is not None:
        r = info.request
        rows += [
            ("state", "open (routed, not finished)"),
            ("developer", address(r.developer)),
            ("transfer agent", address(r.transfer_agent)),
            ("model", r.model),
            ("executor", address(r.executor)),
            ("attempt", r.attempt),
            ("prompt tokens", r.prompt_tokens),
            ("escrow", amount(r.escrow)),
            ("expiry height", r.expiry_height),
        ]
    if info.receipt is not None:
        c = info.receipt
        rows += [
            ("state", str(c.status)),
            ("developer", address(c.developer)),
            ("executor", address(c.executor)),
            ("model", c.model),
            ("tokens", f"{c.prompt_tokens} prompt + {c.completion_tokens} completion"),
            ("cost", amount(c.cost)),
            ("height", link(f"/blocks/{c.height}", c.height)),
        ]
    check = tag("p", "no verification task (not finished, or already settled)", class_="muted")
    if task is not None:
        check = fields(
            [
                ("outcome", str(task.status)),
                ("cycle", task.cycle),
                ("check probability", f"{task.check_ppm / 10_000:g}%"),
                ("checker", address(task.checker) if task.checker else "not checked yet"),
                ("reported", "yes" if task.reported else "no"),
                ("dispute deadline", task.dispute_deadline or "-"),
                ("cost", amount(task.cost)),
                ("subsidy", amount(task.subsidy)),
            ]
        )
    return f"request {short(request_hex)}", join([fields(rows), tag("h2", "verification"), check])


def rewards_page(ex: Explorer) -> Content:
    """Every Race node's reputation, check probability, pending rewards, pay held for release, and balance."""
    rows = []
    for n in ex.nodes():
        rep = ex.client.query(verification.REPUTATION, n.address)
        held = sum(c.held for c in ex.client.query(verification.ACCOUNTS, n.address).cycles)
        pending = ex.client.query(inference.PENDING, n.address).amount
        balance = ex.client.query(bank.BALANCE, n.address).amount
        rows.append(
            (
                address(n.address),
                n.weight,
                rep.reputation,
                f"{rep.check_ppm / 10_000:g}%",
                amount(pending),
                amount(held),
                amount(balance),
            )
        )
    headers = ["node", "weight", "reputation", "checked", "pending rewards", "held for release", "balance (released)"]
    note = tag(
        "p",
        "Pending rewards wait for their cycle's settlement; held pay is released (or cut, or burned) "
        "check_blocks + dispute_blocks after its cycle ends, into the balance.",
        class_="muted",
    )
    return "rewards", join([table(headers, rows), note, tag("h2", "released rewards"), _releases(ex)])


def _releases(ex: Explorer) -> Html:
    """The pay released per node and cycle in the latest blocks (CometBFT's block results)."""
    found = data.releases(ex.client, ex.height())
    if found is None:
        return tag("p", "this node's RPC serves no block results (the embedded engine)", class_="muted")
    rows = (
        (
            link(f"/blocks/{r.height}", r.height),
            link(f"/rewards/{r.node}", r.node),
            r.cycle,
            amount(r.released),
            amount(r.burned),
            amount(r.training_fund),
        )
        for r in found
    )
    headers = ["block", "node", "cycle", "released", "burned", "training fund"]
    return join([tag("p", f"in the last {data.MAX_BLOCKS} blocks", class_="muted"), table(headers, rows)])


def account_page(ex: Explorer, bech32: str) -> Content:
    """One account: balance, reputation, pending rewards and the pay held per cycle."""
    raw = decode_address(bech32)
    rep = ex.client.query(verification.REPUTATION, raw)
    cycles = ex.client.query(verification.ACCOUNTS, raw).cycles
    summary = fields(
        [
            ("address", encode_address(raw)),
            ("balance", amount(ex.client.query(bank.BALANCE, raw).amount)),
            ("pending rewards", amount(ex.client.query(inference.PENDING, raw).amount)),
            ("reputation", rep.reputation),
            ("tasks checked with", f"{rep.check_ppm / 10_000:g}%"),
        ]
    )
    rows = (
        (c.cycle, amount(c.held), c.routed, c.finished, c.checks_done, "yes" if c.caught else "no", c.misjudged)
        for c in cycles
    )
    headers = ["cycle", "held", "routed", "finished", "checks done", "caught", "misjudged"]
    return f"account {short(bech32)}", join([summary, tag("h2", "pay held per cycle"), table(headers, rows)])


def tokenomics_page(ex: Explorer) -> Content:
    """The subsidy phase and rate, issuance against the paper's curve, and every phase's rate."""
    s = ex.client.query(tokenomics.STATUS)
    cap = ex.client.query(tokenomics.PARAMS).max_subsidy_per_fee
    summary = fields(
        [
            ("phase", _phase_text(s)),
            ("fees to the next phase", amount(s.fees_to_next_phase)),
            ("core incentive minted", f"{amount(s.minted)} of {amount(tokenomics.CORE_INCENTIVE)}"),
            (f"day {s.day}", f"minimum issuance {amount(s.minimum_today)}, issued by fees {amount(s.issued_today)}"),
            (f"training fund ({s.training_fund_percent}%)", amount(s.training_fund)),
            ("supply", amount(s.supply)),
            ("burned", amount(s.burned)),
        ]
    )
    rows = (
        (
            tag("strong", p) if p == s.phase else p,
            f"{basis_points(effective_rate(p, PAPER_CAP)) / 100:.2f}%",
            f"{basis_points(effective_rate(p, cap)) / 100:.2f}%",
        )
        for p in range(1, PHASES + 1)
    )
    content = [
        summary,
        tag("h2", "issuance"),
        Html(plots.issuance_plot(cap, s.minted)),
        tag("h2", "subsidy share of provider pay per phase"),
        table(["phase", "paper", f"this chain (≤ {cap} per fee)"], rows),
    ]
    return "tokenomics", join(content)


def pricing_page(ex: Explorer) -> Content:
    """The unit price, the validators' price votes and their weighted median, and each model's price."""
    price = ex.client.query(pricing.PRICE)
    votes = ex.client.query(pricing.VOTES)
    models = ex.client.query(pricing.MODELS).models
    content = [
        fields([("unit price", f"{price.price} nicoin (set in cycle {price.cycle})"), ("median vote", votes.median)]),
        tag("h2", "price votes"),
        table(
            ["validator", "price (nicoin)", "weight"], ((address(v.address), v.price, v.weight) for v in votes.votes)
        ),
        tag("h2", "models"),
        table(
            ["model", "units per token", "price per token (nicoin)"],
            ((m.id, m.units_per_token, m.price_per_token) for m in models),
        ),
    ]
    return "pricing", join(content)


def gov_page(ex: Explorer) -> Content:
    """Every governance proposal with its status and tally."""
    proposals = ex.client.query(gov.PROPOSALS).proposals
    rows = (
        (
            link(f"/gov/{p.id}", p.id),
            p.title,
            str(p.status),
            p.submit_height,
            amount(p.total_deposit),
            _tally(p.tally),
            p.outcome,
        )
        for p in proposals
    )
    return "governance", table(["id", "title", "status", "submitted", "deposit", "tally", "outcome"], rows)


def _tally(t: gov.Tally) -> str:
    """A tally in one line."""
    return f"yes {t.yes}, no {t.no}, abstain {t.abstain}, veto {t.no_with_veto} of {t.total_weight}"


def proposal_page(ex: Explorer, proposal_id: int) -> Content:
    """One proposal: title, summary, deposits and votes."""
    info = ex.client.query(gov.PROPOSAL, str(proposal_id))
    if info is None:
        return f"proposal {proposal_id}", tag("p", "no such proposal")
    p = info.proposal
    votes = ex.client.query(gov.VOTES, str(proposal_id)).votes
    head = fields(
        [
            ("title", p.title),
            ("summary", p.summary),
            ("proposer", address(p.proposer)),
            ("status", str(p.status)),
            ("voting", f"heights {p.voting_start} to {p.voting_end}"),
            ("tally", _tally(info.tally)),
            ("outcome", p.outcome or "-"),
        ]
    )
    deposits = table(["depositor", "amount"], ((address(d.depositor), amount(d.amount)) for d in info.deposits))
    vote_rows = table(["voter", "option", "weight"], ((address(v.voter), str(v.option), v.weight) for v in votes))
    return f"proposal {p.id}", join([head, tag("h2", "deposits"), deposits, tag("h2", "votes"), vote_rows])


def training_page(ex: Explorer) -> Content:
    """Every training job with its status, round and budget."""
    jobs = ex.client.query(training.JOBS).jobs
    rows = (
        (
            link(f"/training/{j.id}", j.id),
            j.architecture,
            str(j.status),
            f"{j.round} of {j.rounds}",
            amount(j.budget_left),
            address(j.creator),
        )
        for j in jobs
    )
    return "training jobs", table(["job", "architecture", "status", "round", "budget left", "creator"], rows)


def job_page(ex: Explorer, job_id: int) -> Content:
    """One training job: its participants and segments, and this node's loss curve if it trained the job."""
    job = ex.client.query(training.JOB, str(job_id))
    if job is None:
        return f"training job {job_id}", tag("p", "no such job")
    participants = ex.client.query(training.PARTICIPANTS, str(job_id)).participants
    segments = ex.client.query(training.SEGMENTS, str(job_id)).segments
    head = fields(
        [
            ("architecture", job.architecture),
            ("status", str(job.status)),
            ("round", f"{job.round} of {job.rounds}"),
            ("budget", f"{amount(job.budget_left)} left of {amount(job.budget)}"),
            ("dataset", job.dataset_location),
        ]
    )
    member_rows = (
        (address(m.address), str(m.status), m.from_round, m.reported_through, amount(m.held)) for m in participants
    )
    segment_rows = ((s.round, address(s.participant), s.segment.step, str(s.segment.status)) for s in segments)
    progress = data.losses(ex.training_dir, job_id)
    curve = [(float(p.round), p.train_loss) for p in progress]
    loss = (
        Html(plots.line_plot(f"job {job_id}: mean inner loss per round", "round", "loss (nats/byte)", {"loss": curve}))
        if curve
        else tag("p", "this node trained no round of this job", class_="muted")
    )
    content = [
        head,
        tag("h2", "loss curve (this node's rounds)"),
        loss,
        tag("h2", "participants"),
        table(["participant", "status", "from round", "reported through", "held"], member_rows),
        tag("h2", "audited segments"),
        table(["round", "participant", "step", "status"], segment_rows),
    ]
    return f"training job {job_id}", join(content)

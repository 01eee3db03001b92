"""One simulated run: a scenario's agents on a fresh real chain for a number of Race cycles, then until every
cycle with traffic has settled; and the paired comparison of each strategy with the same machine playing honestly.

Every block, before it is built, each agent looks at the committed state and queues the signed messages its
strategy sends: the gateway starts the traffic's requests, executors finish the ones routed to them, validators
prove and report the checks they owe, weight holders vote on disputes, developers report wrong answers.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace

from racenet.chain.modules.inference import MsgFinishRequest, MsgStartRequest, RequestAuth, auth_sign_bytes
from racenet.chain.modules.verification import (
    MsgCheck,
    MsgReport,
    MsgReverify,
    TaskStatus,
    duty_message,
    duty_value,
    has_duty,
)
from racenet.chain.types import Event
from racenet.crypto.address import encode_address
from racenet.crypto.keys import PrivateKey
from racenet.crypto.threshold import DUTY_DST, key_sign
from racenet.sim.agents import Agent, AgentSpec, Strategy
from racenet.sim.world import CHAIN_ID, MODEL, Economy, Node, World, beacon_secret, sim_key

ICON = 10**9


@dataclass(frozen=True)
class Traffic:
    """Requests started per block by users, the share of them that are validators' dummy tasks (their issuer
    reports every wrong answer), and the chance that a user notices and reports a wrong answer."""

    requests_per_block: int = 1
    dummy_percent: int = 10
    report_percent: int = 20
    prompt_tokens: int = 20
    completion_tokens: int = 100


@dataclass(frozen=True)
class Scenario:
    """A named population of agents, its traffic and its economy."""

    name: str
    description: str
    agents: tuple[AgentSpec, ...]
    traffic: Traffic = Traffic()
    economy: Economy = field(default_factory=Economy)

    def baseline(self) -> Scenario:
        """The same machines all playing honestly (named by slot, so equal baselines are equal scenarios)."""
        agents = tuple(AgentSpec(f"machine{i}", a.weight) for i, a in enumerate(self.agents))
        return replace(self, name="baseline", description="", agents=agents)

    def focal(self) -> list[AgentSpec]:
        """The agents that play a strategy other than honest."""
        return [a for a in self.agents if a.strategy != Strategy.HONEST]


@dataclass(frozen=True)
class Outcome:
    """An agent's result in one run: profit (icon: balance gained less off-chain costs) and what happened."""

    profit: float
    served: int
    wrong: int
    caught: int
    misjudged: int


@dataclass
class Pending:
    """A request the simulation follows until its task is settled."""

    developer: PrivateKey
    kind: str
    executor: str = ""
    executor_address: bytes = b""
    right: bool = True
    finished: bool = False
    reported: bool = False
    considered: set[bytes] = field(default_factory=set)
    voted: set[bytes] = field(default_factory=set)
    ran: set[str] = field(default_factory=set)


class Run:
    """A scenario on a live chain, with its agents' off-chain state."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rng = random.Random(f"traffic {seed}")
        self.gateway = sim_key("gateway")
        self.users = [sim_key(f"user {i}") for i in range(3)]
        self.dummy_issuer = sim_key("dummy issuer")
        self.agents: list[Agent] = []
        nodes: list[Node] = []
        coalition = frozenset(a.name for a in scenario.agents if a.strategy == Strategy.COLLUDE)
        for slot, spec in enumerate(scenario.agents):  # keys by slot: a strategy's baseline has the same machines
            keys = [sim_key(f"machine {slot} key {i}") for i in range(spec.keys)]
            developer = sim_key(f"machine {slot} developer") if spec.strategy == Strategy.WASH else None
            rng = random.Random(f"agent {slot} {seed}")
            self.agents.append(Agent(spec, keys, developer, rng, coalition=coalition))
            split = [spec.weight // spec.keys + (i < spec.weight % spec.keys) for i in range(spec.keys)]
            for i, (k, w) in enumerate(zip(keys, split, strict=True)):
                nodes.append(Node(spec.name, k, sim_key(f"machine {slot} consensus {i}"), w))
        self.owner = {n.address: a for n in nodes for a in self.agents if a.name == n.owner}
        self.node_keys = {n.address: n.key for n in nodes}
        developers = [a.developer for a in self.agents if a.developer]
        self.world = World.start(nodes, [self.gateway, self.dummy_issuer, *self.users, *developers], scenario.economy)
        self.pending: dict[bytes, Pending] = {}
        self.count = 0
        self.served = dict.fromkeys((a.name for a in self.agents), 0)
        self.wrong = dict.fromkeys((a.name for a in self.agents), 0)
        self.caught = dict.fromkeys((a.name for a in self.agents), 0)
        self.misjudged = dict.fromkeys((a.name for a in self.agents), 0)
        self.names = {encode_address(address): agent.name for address, agent in self.owner.items()}

    @property
    def cost(self) -> int:
        """What one request costs its developer (every request uses its whole completion budget)."""
        traffic = self.scenario.traffic
        return (traffic.prompt_tokens + traffic.completion_tokens) * self.scenario.economy.unit_price

    @property
    def work_cost(self) -> int:
        """The off-chain cost of serving or checking one request."""
        return self.cost * self.scenario.economy.work_cost_percent // 100

    def holdings(self) -> dict[str, int]:
        """Each agent's balances."""
        return {a.name: sum(self.world.balance(x) for x in a.addresses()) for a in self.agents}

    def execute(self, cycles: int) -> dict[str, Outcome]:
        """Traffic over the next `cycles` whole Race cycles, then blocks until they have all settled; each agent's
        outcome."""
        app = self.world.app
        ctx = app.read_context
        schedule = app.race.keeper.schedule(ctx())
        params = app.verification.keeper.params.get(ctx())
        first = schedule.cycle(self.world.height) + 1
        while self.world.height + 1 < schedule.cycle_start(first):
            self.world.block()
        before = self.holdings()
        costs = {a.name: a.costs for a in self.agents}
        stop = schedule.cycle_start(first + cycles) - 4
        end = schedule.cycle_start(first + cycles) + params.check_blocks + params.dispute_blocks
        while self.world.height < end:
            height = self.world.height + 1
            self.act(height)
            if height < stop:
                self.start_requests(height)
            result = self.world.block()
            self.record([*result.events, *(e for r in result.tx_results for e in r.events)])
        after = self.holdings()
        return {
            a.name: Outcome(
                profit=(after[a.name] - before[a.name] - (a.costs - costs[a.name])) / ICON,
                served=self.served[a.name],
                wrong=self.wrong[a.name],
                caught=self.caught[a.name],
                misjudged=self.misjudged[a.name],
            )
            for a in self.agents
        }

    def start_requests(self, height: int) -> None:
        """The block's requests: users' (some of them dummy tasks) and each wash trader's to itself."""
        traffic = self.scenario.traffic
        for _ in range(traffic.requests_per_block):
            dummy = self.rng.randrange(100) < traffic.dummy_percent
            developer = self.dummy_issuer if dummy else self.rng.choice(self.users)
            self.start(developer, "dummy" if dummy else "user", height)
        for agent in self.agents:
            for _ in range(agent.spec.wash_per_block):
                assert agent.developer is not None
                self.start(agent.developer, "wash", height)

    def start(self, developer: PrivateKey, kind: str, height: int) -> None:
        """A Start signed by `developer`, sent by the gateway."""
        traffic = self.scenario.traffic
        self.count += 1
        request_id = hashlib.sha256(f"sim {self.seed} request {self.count}".encode()).digest()
        prompt_hash = hashlib.sha256(request_id).digest()
        price = self.scenario.economy.unit_price
        auth = RequestAuth(
            chain_id=CHAIN_ID,
            request_id=request_id,
            developer=developer.public_key.address,
            transfer_agent=self.gateway.public_key.address,
            model=MODEL,
            prompt_tokens=traffic.prompt_tokens,
            max_tokens=traffic.completion_tokens,
            max_price_per_token=price,
            prompt_hash=prompt_hash,
            expiry_height=height + 8,
        )
        start = MsgStartRequest(
            request_id=request_id,
            developer=developer.public_key.address,
            model=MODEL,
            prompt_tokens=traffic.prompt_tokens,
            max_tokens=traffic.completion_tokens,
            max_price_per_token=price,
            prompt_hash=prompt_hash,
            expiry_height=height + 8,
            signer_key=developer.public_key.raw,
            signature=developer.sign(auth_sign_bytes(auth)),
            api_key_id=b"",
        )
        self.world.send(self.gateway, start)
        self.pending[request_id] = Pending(developer, kind)

    def act(self, height: int) -> None:
        """Every agent's messages for the block at `height`, from the committed state."""
        app = self.world.app
        ctx = app.read_context()
        check_blocks = app.verification.keeper.params.get(ctx).check_blocks
        for request_id, p in list(self.pending.items()):
            if not p.finished:
                self.finish(request_id, p)
                continue
            task = app.verification.keeper.tasks.get(ctx, request_id)
            if task is None:
                del self.pending[request_id]  # settled, or its Finish failed
                continue
            if task.status in (TaskStatus.OPEN, TaskStatus.CHECKED) and not p.right and not p.reported:
                self.report(request_id, p)
            output = app.beacon.keeper.output(ctx, task.duty_round)
            if output and height <= task.finish_height + check_blocks:
                self.check(request_id, p, task.cycle, task.check_ppm, output)
            if task.status == TaskStatus.DISPUTED:
                self.vote(request_id, p, task.cycle)

    def finish(self, request_id: bytes, p: Pending) -> None:
        """The executor a request was routed to answers it (rightly or not, by its strategy)."""
        ctx = self.world.app.read_context()
        request = self.world.app.inference.keeper.requests.get(ctx, request_id)
        if request is None:
            del self.pending[request_id]  # never started or expired
            return
        agent = self.owner.get(request.executor)
        if agent is None:
            return
        p.executor, p.executor_address, p.finished = agent.name, request.executor, True
        p.right = agent.answers_right(self.work_cost)
        self.served[agent.name] += 1
        self.wrong[agent.name] += not p.right
        digest = hashlib.sha256((b"right " if p.right else b"wrong ") + request_id).digest()
        tokens = self.scenario.traffic.completion_tokens
        msg = MsgFinishRequest(request_id=request_id, completion_tokens=tokens, response_hash=digest)
        self.world.send(self.node_keys[request.executor], msg)

    def report(self, request_id: bytes, p: Pending) -> None:
        """A dummy task's issuer reports every wrong answer; a user one it notices; a wash trader none."""
        noticed = p.kind == "dummy" or (
            p.kind == "user" and self.rng.randrange(100) < self.scenario.traffic.report_percent
        )
        p.reported = True
        if noticed:
            self.world.send(p.developer, MsgReport(request_id=request_id))

    def judge(self, agent: Agent, p: Pending) -> bool | None:
        """An agent's verdict on a task's answer (running the check at most once per agent)."""
        verdict = agent.judge(p.executor, p.right, 0 if agent.name in p.ran else self.work_cost)
        if verdict is not None and not agent.covers(p.executor):
            p.ran.add(agent.name)
        return verdict

    def check(self, request_id: bytes, p: Pending, cycle: int, check_ppm: int, output: bytes) -> None:
        """Each validator works out once whether it owes a check of the task, and reports it if its strategy does."""
        keeper = self.world.app.verification.keeper
        ctx = self.world.app.read_context()
        for address, key in self.node_keys.items():
            if address in p.considered or address == p.executor_address:
                continue
            p.considered.add(address)
            weight, total = keeper.weight_share(ctx, cycle, address)
            proof = key_sign(beacon_secret(address), DUTY_DST, duty_message(CHAIN_ID, request_id, output))
            if not has_duty(duty_value(proof), check_ppm, weight, total):
                continue
            verdict = self.judge(self.owner[address], p)
            if verdict is not None:
                self.world.send(key, MsgCheck(request_id=request_id, proof=proof, passed=verdict))
                p.voted.add(address)

    def vote(self, request_id: bytes, p: Pending, cycle: int) -> None:
        """Every weight holder but the executor votes on a disputed task, if its strategy does."""
        keeper = self.world.app.verification.keeper
        ctx = self.world.app.read_context()
        for address, key in self.node_keys.items():
            if address in p.voted or address == p.executor_address or keeper.votes.has(ctx, (request_id, address)):
                continue
            if keeper.weight_share(ctx, cycle, address)[0] <= 0:
                continue
            p.voted.add(address)
            verdict = self.judge(self.owner[address], p)
            if verdict is not None:
                self.world.send(key, MsgReverify(request_id=request_id, valid=verdict))

    def record(self, events: list[Event]) -> None:
        """Count catches and misjudgements per agent from the block's events."""
        for event in events:
            attributes = dict(event.attributes)
            if event.type == "verification_caught":
                name = self.names.get(attributes.get("executor", ""))
                if name:
                    self.caught[name] += 1
            elif event.type == "verification_misjudged":
                name = self.names.get(attributes.get("node", ""))
                if name:
                    self.misjudged[name] += 1

    def close(self) -> None:
        self.world.close()


def run(scenario: Scenario, seed: int, cycles: int) -> dict[str, Outcome]:
    """Each agent's outcome of one run of `scenario`."""
    simulation = Run(scenario, seed)
    try:
        return simulation.execute(cycles)
    finally:
        simulation.close()

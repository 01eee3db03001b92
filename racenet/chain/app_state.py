"""The genesis file's `app_state`: every module's typed genesis state.

Devnets and tests build an `AppState` (`AppState(bank=BankGenesis(balances=...))`), the genesis
file holds its JSON form (`racenet.chain.jsonform`), and `app/export` answers one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from racenet.chain.modules.auth import AuthGenesis
from racenet.chain.modules.bank import BankGenesis
from racenet.chain.modules.beacon import BeaconGenesis
from racenet.chain.modules.dummy import DummyGenesis
from racenet.chain.modules.finetune import FinetuneGenesis
from racenet.chain.modules.gov import GovGenesis
from racenet.chain.modules.inference import InferenceGenesis
from racenet.chain.modules.pool import PoolGenesis
from racenet.chain.modules.pricing import PricingGenesis
from racenet.chain.modules.race import RaceGenesis
from racenet.chain.modules.tokenomics import TokenomicsGenesis
from racenet.chain.modules.training import TrainingGenesis
from racenet.chain.modules.validators import ValidatorsGenesis
from racenet.chain.modules.verification import VerificationGenesis
from racenet.chain.query import NO_ARG, query


@dataclass(frozen=True, kw_only=True)
class AppState:
    """One genesis state per module; a module left out starts empty."""

    auth: AuthGenesis = field(default_factory=AuthGenesis)
    bank: BankGenesis = field(default_factory=BankGenesis)
    validators: ValidatorsGenesis = field(default_factory=ValidatorsGenesis)
    race: RaceGenesis = field(default_factory=RaceGenesis)
    beacon: BeaconGenesis = field(default_factory=BeaconGenesis)
    inference: InferenceGenesis = field(default_factory=InferenceGenesis)
    pricing: PricingGenesis = field(default_factory=PricingGenesis)
    verification: VerificationGenesis = field(default_factory=VerificationGenesis)
    dummy: DummyGenesis = field(default_factory=DummyGenesis)
    tokenomics: TokenomicsGenesis = field(default_factory=TokenomicsGenesis)
    pool: PoolGenesis = field(default_factory=PoolGenesis)
    gov: GovGenesis = field(default_factory=GovGenesis)
    training: TrainingGenesis = field(default_factory=TrainingGenesis)
    finetune: FinetuneGenesis = field(default_factory=FinetuneGenesis)

    def validate(self) -> None:
        """Validate every module's state; ValueError names the module."""
        for f in fields(self):
            try:
                getattr(self, f.name).validate()
            except ValueError as e:
                raise ValueError(f"{f.name}: {e}") from e


EXPORT = query("app/export", NO_ARG, AppState)

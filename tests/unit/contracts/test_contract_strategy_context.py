"""The StrategyContext contract over the engine's facade and the shared FakeContext."""

from __future__ import annotations

import numpy as np

from ultrathink.data import load_data
from ultrathink.decision.strategy import Strategy, StrategyContext
from ultrathink.engine.config import EngineConfig, SizingConfig
from ultrathink.testing.contracts import MarketStep, StrategyContextContract
from ultrathink.testing.engine import engine_for
from ultrathink.testing.fakes import FakeContext

DATA = "synthetic:n_bars=60,seed=11,symbols=AAA+BBB"
N_WARM = 10  # timestamps the kernel runs before the contract acts: prices exist


def facade_rig(config: EngineConfig) -> tuple[StrategyContext, MarketStep]:
    """A backtest engine's facade after ``N_WARM`` timestamps; a step runs the next one."""
    data = load_data(DATA)
    times = iter(np.unique(data.ts_ns).tolist())
    engine = engine_for(Strategy(), data, config, mode="backtest")
    warm = [next(times) for _ in range(N_WARM)]
    engine.kernel.run(data.between(end_ns=warm[-1]))

    def step() -> None:  # orders sent since the last step fill at this timestamp's open
        ts = next(times)
        engine.kernel.run(data.between(ts, ts))

    return engine.parts.facade, step


class TestStrategyFacade(StrategyContextContract):
    def make_context(self) -> tuple[StrategyContext, MarketStep]:
        return facade_rig(EngineConfig())


class TestStrategyFacadeInLots(StrategyContextContract):
    lot_size = 5.0

    def make_context(self) -> tuple[StrategyContext, MarketStep]:
        return facade_rig(EngineConfig(sizing=SizingConfig(lot_size=self.lot_size)))


class TestFakeContext(StrategyContextContract):
    def make_context(self) -> tuple[StrategyContext, MarketStep]:
        ctx = FakeContext(cash=100_000.0, prices={"AAA": 100.0, "BBB": 50.0}, n_symbols=2)
        return ctx, ctx.fill_working


class TestFakeContextWithFixedLots(StrategyContextContract):
    lot_size = 10.0

    def make_context(self) -> tuple[StrategyContext, MarketStep]:
        sizing = SizingConfig(mode="fixed", quantity=25.0, lot_size=self.lot_size)
        ctx = FakeContext(cash=5_000.0, prices={"AAA": 37.0}, sizing=sizing)
        return ctx, ctx.fill_working

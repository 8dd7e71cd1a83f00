"""The generator's scenario price path as a public API (``data.synthetic.scenario_path``).

Property: the closes and opens a scenario gives ``generate`` are those of the same seed
without it, times the path's factors (the random streams do not depend on the scenarios),
and its ``keep`` mask is what a halt removes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.data.synthetic import (
    Crash,
    FlashCrash,
    Gap,
    Halt,
    SyntheticConfig,
    generate,
    scenario_path,
)


def test_a_crash_a_gap_and_a_halt_as_a_path() -> None:
    path = scenario_path(
        60,
        [
            Crash(start_bar=10, pct=30, n_bars=3),
            Gap(at_bar=20, pct=-15),
            Halt(start_bar=40, n_bars=5),
        ],
    )
    f_open, f_close = path.factors()

    assert f_close[9] == 1.0 and f_close[12] == pytest.approx(0.7)
    assert f_open[20] == pytest.approx(0.7 * 0.85) and f_close[-1] == pytest.approx(0.7 * 0.85)
    assert not path.keep[40:45].any() and path.keep[:40].all() and path.keep[45:].all()
    assert path.gaps[20] == pytest.approx(np.log(0.85)) and path.shifts[20] == 0.0


_event = st.one_of(
    st.builds(Crash, start_bar=st.integers(1, 150), pct=st.floats(1, 60), n_bars=st.integers(1, 5)),
    st.builds(Gap, at_bar=st.integers(1, 150), pct=st.floats(-40, 40).filter(lambda x: x != 0)),
    st.builds(FlashCrash, at_bar=st.integers(1, 120), pct=st.floats(1, 40),
              n_bars_down=st.integers(1, 4), n_bars_recover=st.integers(1, 10)),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(events=st.lists(_event, min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_generate_applies_exactly_the_path(events: list, seed: int) -> None:
    plain = generate(SyntheticConfig(n_bars=200, seed=seed))
    moved = generate(SyntheticConfig(n_bars=200, seed=seed, scenarios=tuple(events)))
    f_open, f_close = scenario_path(200, events).factors()

    np.testing.assert_allclose(moved.close, plain.close * f_close, rtol=1e-9)
    np.testing.assert_allclose(moved.open[1:], plain.open[1:] * f_open[1:], rtol=1e-9)

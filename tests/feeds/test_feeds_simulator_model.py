"""The simulated market: deterministic, smooth, and per-venue noise within its bound."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.errors import SimulatorConfigError
from feeds.simulator import MarketModel, VenueSimulator

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

times = st.floats(min_value=1.5e9, max_value=2.5e9, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**32)
instruments = st.sampled_from(["BTC-USD", "ETH-USD"])


@settings(max_examples=200, deadline=None)
@given(seed=seeds, instrument=instruments, t=times)
def test_same_seed_instrument_and_time_give_the_same_price(seed: int, instrument: str, t: float) -> None:
    assert MarketModel(seed).true_price(instrument, t) == MarketModel(seed).true_price(instrument, t)


@settings(max_examples=200, deadline=None)
@given(seed=seeds, instrument=instruments, t=times, dt=st.floats(min_value=0, max_value=1))
def test_price_moves_at_most_five_bps_per_second(seed: int, instrument: str, t: float, dt: float) -> None:
    model = MarketModel(seed)
    a, b = model.true_price(instrument, t), model.true_price(instrument, t + dt)
    # Walk <= 1.2 bps/s (stressed regime), a jump ramps in at <= 3.5 bps/s, and a
    # regime switch steps the fast layers by at most 2.7 bps.
    assert abs(b - a) / a <= Decimal("0.0005") * Decimal(dt) + Decimal("0.0003")


@settings(max_examples=100, deadline=None)
@given(seed=seeds, instrument=instruments, t=times)
def test_price_stays_within_half_a_percent_over_ten_seconds(seed: int, instrument: str, t: float) -> None:
    model = MarketModel(seed)
    start = model.true_price(instrument, t)
    assert all(abs(model.true_price(instrument, t + s) - start) / start < Decimal("0.005") for s in range(1, 11))


@settings(max_examples=100, deadline=None)
@given(seed=seeds, t=times)
def test_price_stays_near_its_base(seed: int, t: float) -> None:
    price = MarketModel(seed).true_price("BTC-USD", t)
    # Walk within 1.6 % (stressed), a jump within 0.35 %.
    assert abs(price - 64000) / 64000 < Decimal("0.02")


def test_seeds_and_instruments_give_different_walks() -> None:
    t = 1_700_000_000.0
    assert MarketModel(1).true_price("BTC-USD", t) != MarketModel(2).true_price("BTC-USD", t)
    assert MarketModel(1, {"X-USD": Decimal(100)}).true_price("X-USD", t) > 0


@settings(max_examples=100, deadline=None)
@given(seed=seeds, t=times, venue=st.sampled_from(["binance", "coinbase", "kraken"]))
def test_venue_noise_is_within_its_bps(seed: int, t: float, venue: str) -> None:
    sim = VenueSimulator(MarketModel(seed), noise_bps={"kraken": 5})
    truth = sim.model.true_price("ETH-USD", t)
    quoted = sim.venue_price(venue, "ETH-USD", t)
    assert abs(quoted - truth) / truth * 10_000 <= sim.noise_bps[venue]
    assert quoted == sim.venue_price(venue, "ETH-USD", t)


def test_bad_simulator_settings_are_refused_with_the_choices() -> None:
    sim = VenueSimulator(MarketModel(0))
    with pytest.raises(SimulatorConfigError, match="garbage, timeout, http500, nan, truncated"):
        sim.set_fault("kraken", "meteor")
    with pytest.raises(SimulatorConfigError, match="binance, binance-futures, bybit, coinbase, deribit, kraken, okx"):
        sim.set_fault("ftx", None)
    with pytest.raises(SimulatorConfigError, match="BTC-USD, ETH-USD"):
        MarketModel(0).true_price("DOGE-USD", 0.0)
    with pytest.raises(SimulatorConfigError, match="started simulator"):
        sim.venue_url("kraken")

"""Market scenarios on the simulated market: calm changes nothing, a vol spike shows in the
venues' candle history within seconds and leaves it, a crash steps the level past the 5 %
breaker and stays there, an outage fails its venues for its phase only."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from feeds.computed import realized_vol
from feeds.errors import Origin, SimulatorConfigError
from feeds.market import MarketModel
from feeds.registry import load_simulated_venues
from feeds.scenarios import SCENARIOS, ScenarioClock, scenario_named
from feeds.simulator import VenueSimulator, describe_schedule

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

T0 = 1_800_000_000.0


def _started(name: str, seed: int = 7) -> MarketModel:
    clock = ScenarioClock(scenario_named(name), seed)
    clock.start(T0)
    return MarketModel(seed, scenario=clock)


def _rvol(model: MarketModel, t: float) -> Decimal:
    venue = load_simulated_venues()["binance"](model, lambda: t)
    candles = [(opened, Decimal(close)) for opened, close in venue.candles("BTC-USD", 61)]
    return realized_vol(candles, Origin("binance", "BTC-USD"), t)[0]


def _times() -> Iterator[float]:
    return (T0 + dt for dt in (-100, 0, 3.3, 19.9, 25, 40.5, 61, 100))


def test_calm_scenario_is_the_seeded_market() -> None:
    plain, calm = MarketModel(7), _started("calm")
    for t in _times():
        assert calm.true_price("BTC-USD", t) == plain.true_price("BTC-USD", t)
        assert calm.implied_vol("ETH-USD", t) == plain.implied_vol("ETH-USD", t)
        assert _rvol(calm, t) == _rvol(plain, t)


def test_vol_spike_raises_realized_vol_in_seconds_and_it_falls_back() -> None:
    model = _started("vol-spike")
    calm, spike, after = _rvol(model, T0 + 19), _rvol(model, T0 + 39), _rvol(model, T0 + 75)
    assert spike >= 3 * calm
    assert after <= Decimal("1.1") * calm
    assert model.implied_vol("BTC-USD", T0 + 30) >= Decimal(2) * MarketModel(7).implied_vol("BTC-USD", T0 + 30)


def test_crash_steps_every_price_down_past_the_breaker_and_stays() -> None:
    model, plain = _started("crash"), MarketModel(7)
    for instrument in ("BTC-USD", "ETH-USD"):
        just_before, at = model.true_price(instrument, T0 + 24.99), model.true_price(instrument, T0 + 25)
        assert (just_before - at) / just_before > Decimal("0.05")
        later = T0 + 200
        assert model.true_price(instrument, later) / plain.true_price(instrument, later) == pytest.approx(
            Decimal("0.9"), abs=Decimal("1e-8"))


def test_a_scenario_that_has_not_started_is_calm() -> None:
    clock = ScenarioClock(scenario_named("crash"), 7)
    model = MarketModel(7, scenario=clock)
    assert model.true_price("BTC-USD", T0 + 30) == MarketModel(7).true_price("BTC-USD", T0 + 30)
    assert clock.phase_at(T0) is None and clock.schedule()[1]["starts_at"] is None


def test_outage_fails_its_venues_for_its_phase_only_and_a_manual_fault_wins() -> None:
    now = [T0 + 10]
    model = _started("venue-outage")
    assert model.scenario is not None
    simulator = VenueSimulator(model, clock=lambda: now[0])
    assert model.scenario.fault("kraken", now[0]) is None
    now[0] = T0 + 30
    assert (model.scenario.fault("kraken", now[0]), model.scenario.fault("coinbase", now[0])) == ("timeout", "http500")
    assert model.scenario.fault("binance", now[0]) is None
    simulator.set_fault("kraken", "http429")
    assert simulator.faults()["kraken"] == "http429"
    now[0] = T0 + 50
    assert model.scenario.fault("kraken", now[0]) is None


def test_schedule_says_when_each_phase_starts() -> None:
    model = _started("vol-spike")
    assert model.scenario is not None
    phases = model.scenario.schedule()
    assert [p["name"] for p in phases] == [p.name for p in SCENARIOS["vol-spike"].phases]
    assert phases[1]["starts_at"] == T0 + 20 and phases[0]["ends_at"] == T0 + 20 and phases[-1]["ends_at"] is None
    lines = describe_schedule(model.scenario)
    assert len(lines) == len(phases) and "phase spike at +20 s" in lines[1]


def test_unknown_scenario_is_refused_by_name() -> None:
    with pytest.raises(SimulatorConfigError, match="vol-spike"):
        scenario_named("meltdown")

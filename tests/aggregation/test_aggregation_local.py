"""A node's local aggregate over its sources: deterministic, robust, and honest about gaps."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aggregation
from aggregation.errors import DuplicateSource, InsufficientData, InvalidInput
from aggregation.fixed import to_fixed
from aggregation.local import LocalAggregate, aggregate_readings
from feeds.base import SourceReading

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]


@dataclass(frozen=True)
class Reading:
    source: str
    price: Decimal


def readings(**prices: str) -> list[Reading]:
    return [Reading(source, Decimal(price)) for source, price in prices.items()]


prices_st = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("1e9"), places=8, allow_nan=False, allow_infinity=False
)


def test_three_agreeing_venues() -> None:
    result = aggregate_readings(
        readings(kraken="64000.1", binance="64010", coinbase="64000"), min_sources=2, decimals=8
    )
    assert result == LocalAggregate(
        value=6_400_010_000_000,
        num_sources=3,
        # max |p - median| = 9.9 over 64000.1 = 1.547 bps, rounded up
        dispersion_bps=2,
        sources=("binance", "coinbase", "kraken"),
        outliers=(),
    )


def test_an_outlier_does_not_count_as_a_source_and_is_named() -> None:
    result = aggregate_readings(
        readings(binance="64000", coinbase="64001", kraken="70000"), min_sources=2, decimals=2
    )
    assert (result.num_sources, result.sources, result.outliers) == (2, ("binance", "coinbase"), ("kraken",))
    assert result.value == 6_400_100  # median of all three: the outlier cannot pull it
    assert result.dispersion_bps == 1


def test_too_few_sources_names_how_many_were_needed_and_which_came() -> None:
    with pytest.raises(InsufficientData) as caught:
        aggregate_readings(readings(kraken="64000", binance="64001"), min_sources=3, decimals=8)
    assert "expected readings from at least 3 sources, got 2 (binance, kraken)" in str(caught.value)


def test_too_few_agreeing_sources_names_the_outliers() -> None:
    with pytest.raises(InsufficientData) as caught:
        aggregate_readings(
            readings(binance="64000", coinbase="64001", kraken="70000"), min_sources=3, decimals=8
        )
    message = str(caught.value)
    assert "expected at least 3 agreeing sources, got 2 of 3" in message
    assert "kraken=70000" in message


def test_no_readings_at_all_is_insufficient() -> None:
    with pytest.raises(InsufficientData, match="got 0 \\(none\\)"):
        aggregate_readings([], min_sources=1, decimals=8)


def test_the_same_source_twice_is_refused() -> None:
    with pytest.raises(DuplicateSource, match="'kraken' twice"):
        aggregate_readings(
            [Reading("kraken", Decimal(1)), Reading("kraken", Decimal(1))], min_sources=1, decimals=8
        )


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")])
def test_unusable_prices_are_refused_naming_the_source(price: Decimal) -> None:
    with pytest.raises(InvalidInput, match="from 'coinbase'"):
        aggregate_readings([Reading("coinbase", price)], min_sources=1, decimals=8)


@pytest.mark.parametrize("min_sources", [0, -1, True])
def test_min_sources_must_be_a_positive_int(min_sources: int) -> None:
    with pytest.raises(InvalidInput, match="min_sources"):
        aggregate_readings(readings(a="1"), min_sources=min_sources, decimals=8)


def test_source_readings_from_feeds_satisfy_the_protocol() -> None:
    got = [
        SourceReading(source=name, instrument="ETH-USD", price=Decimal(p), observed_at=1.0, fetched_at=1.0, latency_ms=3.0)
        for name, p in [("binance", "3200.10"), ("coinbase", "3200.30"), ("kraken", "3200.20")]
    ]
    assert aggregate_readings(got, min_sources=3, decimals=8).value == 320_020_000_000


@given(prices=st.lists(prices_st, min_size=1, max_size=12), data=st.data())
def test_order_of_readings_never_matters(prices: list[Decimal], data: st.DataObject) -> None:
    items = [Reading(f"s{i}", price) for i, price in enumerate(prices)]
    shuffled = data.draw(st.permutations(items))
    assert aggregate_readings(shuffled, min_sources=1, decimals=8) == aggregate_readings(items, min_sources=1, decimals=8)


@given(
    pair=st.lists(prices_st, min_size=1, max_size=10).flatmap(
        lambda honest: st.tuples(
            st.just(honest),
            st.lists(
                st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("1e12"), places=8, allow_nan=False, allow_infinity=False),
                max_size=len(honest) - 1,
            ),
        )
    ),
    data=st.data(),
)
def test_a_minority_of_wrong_sources_cannot_push_the_value_outside_the_honest_range(
    pair: tuple[list[Decimal], list[Decimal]], data: st.DataObject
) -> None:
    honest, bad = pair
    items = [Reading(f"h{i}", p) for i, p in enumerate(honest)] + [Reading(f"b{i}", p) for i, p in enumerate(bad)]
    result = aggregate_readings(data.draw(st.permutations(items)), min_sources=1, decimals=8)
    assert to_fixed(min(honest), 8) <= result.value <= to_fixed(max(honest), 8)
    assert 2 * result.num_sources >= len(items)


def test_filter_first_would_break_the_honest_range_and_we_do_not() -> None:
    # Honest 10, 20, 30; wrong 9, 9.5. The MAD filter keeps 9, 9.5, 10, whose median
    # (9.5) is below every honest value; the median of all (10) is not.
    result = aggregate_readings(
        readings(h1="10", h2="20", h3="30", b1="9", b2="9.5"), min_sources=1, decimals=2, rel_floor=Decimal(0)
    )
    assert result.value == 1000
    assert result.outliers == ("h2", "h3")


@given(prices=st.lists(prices_st, min_size=1, max_size=8))
def test_same_inputs_same_output(prices: list[Decimal]) -> None:
    items = [Reading(f"s{i}", p) for i, p in enumerate(prices)]
    first = aggregate_readings(items, min_sources=1, decimals=18)
    assert all(aggregate_readings(list(items), min_sources=1, decimals=18) == first for _ in range(3))


def test_aggregation_imports_no_io_and_not_feeds_or_relayer() -> None:
    forbidden = {"feeds", "relayer", "aiohttp", "asyncio", "socket", "time", "random"}
    for path in Path(aggregation.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"

"""Venue parsers on recorded-format bodies: the good shape and every bad shape we know."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from feeds.base import Source, SourceReading
from feeds.errors import (
    SourceError,
    SourceFormatError,
    SourceHTTPError,
    SourceInstrumentMismatch,
    SourceRateLimited,
    SourceStaleError,
    SourceUnavailable,
    SourceUnknownInstrument,
    SourceValueError,
    UnknownInstrumentError,
)
from feeds.sources.binance import BinanceSpot
from feeds.sources.coinbase import CoinbaseSpot
from feeds.sources.kraken import KrakenSpot

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

NOW = 1_704_067_200.5  # 2024-01-01T00:00:00.5Z

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>503</h1><p>Please try again later.</p></body></html>"
)


def binance_body(last: object = "64000.12000000", close_ms: object = 1_704_067_200_000, **extra: object) -> bytes:
    body: dict[str, object] = {
        "symbol": "BTCUSDT",
        "priceChange": "-94.99999800",
        "priceChangePercent": "-0.148",
        "weightedAvgPrice": "64012.30000000",
        "prevClosePrice": "64095.11000000",
        "lastPrice": last,
        "lastQty": "0.00200000",
        "bidPrice": "64000.11000000",
        "bidQty": "1.20000000",
        "askPrice": "64000.12000000",
        "askQty": "0.30000000",
        "openPrice": "64095.12000000",
        "highPrice": "64500.00000000",
        "lowPrice": "63500.00000000",
        "volume": "21345.12300000",
        "quoteVolume": "1366088720.12000000",
        "openTime": 1_703_980_800_000,
        "closeTime": close_ms,
        "firstId": 3_300_000_000,
        "lastId": 3_301_000_000,
        "count": 1_000_001,
    }
    body.update(extra)
    return json.dumps(body).encode()


def coinbase_body(price: object = "64000.1", when: object = "2024-01-01T00:00:00.123456Z") -> bytes:
    return json.dumps(
        {
            "ask": "64000.11",
            "bid": "64000.1",
            "volume": "12345.6789",
            "trade_id": 586_942_123,
            "price": price,
            "size": "0.0015",
            "time": when,
        }
    ).encode()


def kraken_body(last: object = "64000.10000", key: str = "XXBTZUSD") -> bytes:
    return json.dumps(
        {
            "error": [],
            "result": {
                key: {
                    "a": ["64000.20000", "1", "1.000"],
                    "b": ["64000.10000", "2", "2.000"],
                    "c": [last, "0.00100000"],
                    "v": ["1234.5", "2345.6"],
                    "p": ["64010.1", "64020.2"],
                    "t": [12345, 23456],
                    "l": ["63500.0", "63400.0"],
                    "h": ["64500.0", "64600.0"],
                    "o": "64095.10000",
                }
            },
        }
    ).encode()


GOOD = {
    "binance": (BinanceSpot, binance_body),
    "coinbase": (CoinbaseSpot, coinbase_body),
    "kraken": (KrakenSpot, kraken_body),
}


def parse(source: Source, body: bytes, **kwargs: object) -> SourceReading:
    options: dict[str, object] = {"instrument": "BTC-USD", "fetched_at": NOW}
    options.update(kwargs)
    return source.parse_response(body, **options)  # type: ignore[arg-type]


# ---- good bodies ------------------------------------------------------------------


def test_binance_reads_last_price_and_close_time() -> None:
    reading = parse(BinanceSpot(), binance_body())
    assert reading.price == Decimal("64000.12")
    assert reading.observed_at == pytest.approx(1_704_067_200.0)
    assert (reading.source, reading.instrument, reading.fetched_at) == ("binance", "BTC-USD", NOW)


def test_coinbase_reads_price_and_trade_time() -> None:
    reading = parse(CoinbaseSpot(), coinbase_body())
    assert reading.price == Decimal("64000.1")
    assert reading.observed_at == pytest.approx(1_704_067_200.123456)


def test_kraken_reads_last_trade_and_uses_fetch_time() -> None:
    reading = parse(KrakenSpot(), kraken_body())
    assert reading.price == Decimal("64000.1")
    # Kraken's ticker has no timestamp.
    assert reading.observed_at == NOW


def test_kraken_accepts_the_plain_pair_key_of_newer_pairs() -> None:
    assert parse(KrakenSpot(), kraken_body(key="XBTUSD")).price == Decimal("64000.1")


def test_json_numbers_are_read_exactly_not_through_float() -> None:
    # 0.1 + 0.2 style drift would show in the last digit if a float were involved.
    body = b'{"symbol": "BTCUSDT", "lastPrice": 64000.10000000000000000001, "closeTime": 1704067200000}'
    assert parse(BinanceSpot(), body).price == Decimal("64000.10000000000000000001")


def test_symbols_map_usd_to_usdt_on_binance_and_xbt_on_kraken() -> None:
    assert BinanceSpot().symbol("BTC-USD") == "BTCUSDT"
    assert BinanceSpot().symbol("ETH-USD") == "ETHUSDT"
    assert CoinbaseSpot().symbol("ETH-USD") == "ETH-USD"
    assert KrakenSpot().symbol("BTC-USD") == "XBTUSD"
    assert KrakenSpot().symbol("ETH-USD") == "ETHUSD"


def test_eth_on_kraken_uses_its_own_result_key() -> None:
    reading = parse(KrakenSpot(), kraken_body("3200.50000", key="XETHZUSD"), instrument="ETH-USD")
    assert reading.price == Decimal("3200.5")


# ---- bad bodies, every venue ------------------------------------------------------


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_html_page_is_a_format_error_naming_html(venue: str) -> None:
    cls, _ = GOOD[venue]
    with pytest.raises(SourceFormatError) as caught:
        parse(cls(), HTML_PAGE, content_type="text/html")
    message = str(caught.value)
    assert message.startswith(f"{venue} BTC-USD: expected")
    assert f"HTML page (text/html, {len(HTML_PAGE)} bytes)" in message
    assert f"check sources.{venue}.url" in message
    assert (caught.value.source, caught.value.instrument) == (venue, "BTC-USD")


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_html_page_served_as_json_is_still_named_html(venue: str) -> None:
    cls, _ = GOOD[venue]
    with pytest.raises(SourceFormatError, match=r"HTML page \(application/json"):
        parse(cls(), HTML_PAGE)


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_truncated_json_is_a_format_error_saying_truncated(venue: str) -> None:
    cls, make = GOOD[venue]
    body = make()
    with pytest.raises(SourceFormatError, match="truncated JSON"):
        parse(cls(), body[: len(body) // 2])


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_empty_body_is_a_format_error(venue: str) -> None:
    cls, _ = GOOD[venue]
    with pytest.raises(SourceFormatError, match="an empty body"):
        parse(cls(), b"")


@pytest.mark.parametrize("venue", sorted(GOOD))
@pytest.mark.parametrize("value", ["NaN", "nan", "Infinity", "-inf", "sNaN"])
def test_non_finite_price_is_a_value_error(venue: str, value: str) -> None:
    cls, make = GOOD[venue]
    with pytest.raises(SourceValueError, match="non-finite"):
        parse(cls(), make(value))


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_bare_nan_token_is_a_value_error(venue: str) -> None:
    # Python's json module writes NaN unquoted; a venue built on it might too.
    cls, make = GOOD[venue]
    body = make("__X__").replace(b'"__X__"', b"NaN")
    with pytest.raises(SourceValueError, match="non-finite"):
        parse(cls(), body)


@pytest.mark.parametrize("venue", sorted(GOOD))
@pytest.mark.parametrize("value", ["-64000.1", "0", "0.00000000", "-0"])
def test_zero_or_negative_price_is_a_value_error(venue: str, value: str) -> None:
    cls, make = GOOD[venue]
    with pytest.raises(SourceValueError, match="not positive") as caught:
        parse(cls(), make(value))
    assert "the feed uses the other sources" in str(caught.value)


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_absurd_price_is_a_value_error(venue: str) -> None:
    cls, make = GOOD[venue]
    with pytest.raises(SourceValueError, match="outside the sane range"):
        parse(cls(), make("1e30"))


@pytest.mark.parametrize("venue", sorted(GOOD))
@pytest.mark.parametrize("value", ["64_000.1", " 64000.1", "sixty", "", True, None, ["64000"]])
def test_non_decimal_price_is_a_format_error(venue: str, value: object) -> None:
    cls, make = GOOD[venue]
    with pytest.raises(SourceFormatError, match="expected a decimal number at"):
        parse(cls(), make(value))


def test_binance_missing_last_price_names_the_field() -> None:
    body = json.loads(binance_body())
    del body["lastPrice"]
    with pytest.raises(SourceFormatError) as caught:
        parse(BinanceSpot(), json.dumps(body).encode())
    assert "expected JSON object with lastPrice" in str(caught.value)
    assert "object without 'lastPrice'" in str(caught.value)


def test_binance_ticker_for_another_symbol_is_rejected() -> None:
    with pytest.raises(SourceFormatError, match="symbol 'BTCUSDT'.*got symbol 'ETHUSDT'"):
        parse(BinanceSpot(), binance_body(symbol="ETHUSDT"))


def test_binance_close_time_must_be_integer_millis() -> None:
    with pytest.raises(SourceFormatError, match="unix milliseconds at closeTime"):
        parse(BinanceSpot(), binance_body(close_ms="yesterday"))


def test_coinbase_missing_price_names_the_field() -> None:
    with pytest.raises(SourceFormatError, match="expected JSON object with price, got object without 'price'"):
        parse(CoinbaseSpot(), b'{"time": "2024-01-01T00:00:00Z", "bid": "1"}')


def test_coinbase_time_without_offset_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match="RFC 3339 timestamp"):
        parse(CoinbaseSpot(), coinbase_body(when="2024-01-01T00:00:00"))


def test_kraken_result_for_another_pair_names_what_was_asked_and_what_came() -> None:
    body = kraken_body(key="XETHZUSD")
    with pytest.raises(SourceInstrumentMismatch) as caught:
        parse(KrakenSpot(), body)
    message = str(caught.value)
    assert "expected a body for pair XBTUSD (result key XXBTZUSD), got result keys XETHZUSD" in message
    assert (caught.value.expected, caught.value.got) == ("pair XBTUSD (result key XXBTZUSD)", "result keys XETHZUSD")


def test_kraken_short_c_array_is_a_format_error() -> None:
    body = json.loads(kraken_body())
    body["result"]["XXBTZUSD"]["c"] = []
    with pytest.raises(SourceFormatError, match=r"result\.XXBTZUSD\.c\[0\], got array of 0"):
        parse(KrakenSpot(), json.dumps(body).encode())


@pytest.mark.parametrize(
    ("errors", "error", "hint"),
    [
        (["EQuery:Unknown asset pair"], SourceUnknownInstrument, "symbol mapping is wrong"),
        (["EAPI:Rate limit exceeded"], SourceRateLimited, "rate limiting"),
        (["EService:Unavailable"], SourceUnavailable, "venue is failing"),
    ],
)
def test_kraken_error_list_is_an_http_error_with_the_venues_text(
    errors: list[str], error: type[SourceHTTPError], hint: str
) -> None:
    body = json.dumps({"error": errors}).encode()
    with pytest.raises(error) as caught:
        parse(KrakenSpot(), body)
    assert caught.value.status == 200
    assert f"got the venue's errors [{errors[0]}]" in str(caught.value)
    assert hint in str(caught.value)


def test_top_level_array_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match="got array at top level"):
        parse(CoinbaseSpot(), b"[1, 2, 3]")


def test_not_json_text_quotes_the_start_of_the_body() -> None:
    with pytest.raises(SourceFormatError, match="non-JSON text .*'Service temporarily"):
        parse(KrakenSpot(), b"Service temporarily unavailable", content_type="text/plain")


# ---- statuses ---------------------------------------------------------------------


def test_binance_error_status_carries_the_venue_message() -> None:
    body = b'{"code": -1121, "msg": "Invalid symbol."}'
    with pytest.raises(SourceHTTPError) as caught:
        parse(BinanceSpot(), body, status=400)
    assert caught.value.status == 400
    assert "expected HTTP 200, got 400 (venue says: code -1121: Invalid symbol.)" in str(caught.value)


def test_rate_limit_status_says_to_slow_down_and_when() -> None:
    with pytest.raises(SourceHTTPError, match=r"rate limiting.*Retry-After: 7") as caught:
        parse(CoinbaseSpot(), b'{"message": "Too Many Requests"}', status=429, retry_after="7")
    assert caught.value.status == 429


def test_server_error_with_html_body_describes_the_body() -> None:
    with pytest.raises(SourceHTTPError, match=r"got 502 \(HTML page") as caught:
        parse(KrakenSpot(), HTML_PAGE, status=502, content_type="text/html")
    assert caught.value.status == 502


# ---- freshness --------------------------------------------------------------------


def test_binance_old_close_time_is_stale() -> None:
    old_ms = int((NOW - 600) * 1000)
    with pytest.raises(SourceStaleError, match=r"at most 60s old, got .*\(600\.0s old\)"):
        parse(BinanceSpot(), binance_body(close_ms=old_ms))


def test_coinbase_old_trade_time_is_stale() -> None:
    with pytest.raises(SourceStaleError, match="stopped updating"):
        parse(CoinbaseSpot(), coinbase_body(when="2023-12-31T23:00:00Z"))


def test_timestamp_far_in_the_future_points_at_the_clock() -> None:
    with pytest.raises(SourceStaleError, match="check this host's clock"):
        parse(CoinbaseSpot(), coinbase_body(when="2024-01-01T00:01:00Z"))


def test_absurd_future_timestamp_is_a_typed_error_not_a_crash() -> None:
    with pytest.raises(SourceStaleError, match=r"unix time 1e\+17.*check this host's clock"):
        parse(BinanceSpot(), binance_body(close_ms=10**20))


def test_timestamp_slightly_ahead_is_clamped_to_fetch_time() -> None:
    reading = parse(CoinbaseSpot(), coinbase_body(when="2024-01-01T00:00:02Z"))
    assert reading.observed_at == NOW


# ---- construction -----------------------------------------------------------------


@pytest.mark.parametrize("venue", sorted(GOOD))
def test_unknown_instrument_lists_the_known_ones(venue: str) -> None:
    cls, _ = GOOD[venue]
    with pytest.raises(UnknownInstrumentError, match=r"one of the instruments this source maps \(BTC-USD, ETH-USD\), got 'DOGE-USD'") as caught:
        cls().symbol("DOGE-USD")
    assert isinstance(caught.value, SourceError)
    assert (caught.value.source, caught.value.instrument) == (venue, "DOGE-USD")


def test_default_urls_are_the_real_venues_and_base_url_overrides() -> None:
    assert BinanceSpot().base_url == "https://api.binance.com"
    assert CoinbaseSpot().base_url == "https://api.exchange.coinbase.com"
    assert KrakenSpot().base_url == "https://api.kraken.com"
    assert KrakenSpot("http://127.0.0.1:9/kraken/", timeout=0.3).base_url == "http://127.0.0.1:9/kraken"


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_bad_timeout_is_refused_at_construction(timeout: float) -> None:
    with pytest.raises(ValueError, match="positive finite timeout"):
        BinanceSpot(timeout=timeout)


def test_reading_is_frozen_and_rejects_bad_prices() -> None:
    reading = parse(KrakenSpot(), kraken_body())
    with pytest.raises(Exception):
        reading.price = Decimal(1)  # type: ignore[misc]
    with pytest.raises(ValueError):
        SourceReading(source="x", instrument="BTC-USD", price=Decimal("NaN"), observed_at=0.0, fetched_at=0.0, latency_ms=0.0)


def test_parse_is_deterministic() -> None:
    assert parse(BinanceSpot(), binance_body()) == parse(BinanceSpot(), binance_body())


def test_reading_refuses_a_float_price_instead_of_converting_it() -> None:
    with pytest.raises(ValueError):
        SourceReading(source="x", instrument="BTC-USD", price=0.1, observed_at=0.0, fetched_at=0.0, latency_ms=0.0)  # type: ignore[arg-type]
    wire = parse(KrakenSpot(), kraken_body()).model_dump_json()
    assert SourceReading.model_validate_json(wire).price == Decimal("64000.10000")

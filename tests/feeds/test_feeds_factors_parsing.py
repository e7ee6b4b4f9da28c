"""Every venue x factor parsed from a recorded-format body (the shapes the venues document)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from feeds.base import RawResponse
from feeds.errors import (
    SourceFormatError,
    SourceHTTPError,
    SourceInstrumentMismatch,
    SourceRateLimited,
    SourceUnavailable,
    SourceUnknownInstrument,
    SourceValueError,
    UnsupportedFactorError,
)
from feeds.kinds import FactorKind
from feeds.registry import make_source

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

NOW = 1_700_000_100.0
MS = int(NOW * 1000)


def _closes(n: int = 61) -> list[tuple[int, str]]:
    # Alternating +-0.1 % moves: a known realized volatility.
    price = Decimal(64000)
    out = []
    for i in range(n):
        out.append((int(NOW) - 60 * (n - 1 - i) - 30, f"{price:.2f}"))
        price = price * (Decimal("1.001") if i % 2 == 0 else Decimal(1) / Decimal("1.001"))
    return out


CANDLES = _closes()
BIDS = [["63990.00", "1.5"], ["63900.00", "2"], ["60000.00", "100"]]  # last one outside +-50 bps
ASKS = [["64010.00", "1.0"], ["64100.00", "3"]]
DEPTH = Decimal("63990") * Decimal("1.5") + 63900 * 2 + Decimal("64010") * 1 + 64100 * 3

RECORDED: dict[tuple[str, FactorKind], list[object]] = {
    ("binance", FactorKind.SPOT): [{"symbol": "BTCUSDT", "lastPrice": "64000.12000000", "closeTime": MS}],
    ("binance", FactorKind.REALIZED_VOL): [[[t * 1000, c, c, c, c, "1.0", t * 1000 + 59999, "1", 1, "1", "1", "0"]
                                            for t, c in CANDLES]],
    ("binance", FactorKind.DEPTH): [{"lastUpdateId": 1027024, "bids": BIDS, "asks": ASKS}],
    ("binance-futures", FactorKind.FUNDING_RATE): [{"symbol": "BTCUSDT", "markPrice": "64010.10000000",
                                                    "indexPrice": "64005.2", "lastFundingRate": "-0.00012500",
                                                    "nextFundingTime": MS + 1000, "interestRate": "0.0001", "time": MS}],
    ("binance-futures", FactorKind.OPEN_INTEREST): [
        {"openInterest": "10000.000", "symbol": "BTCUSDT", "time": MS},
        {"symbol": "BTCUSDT", "markPrice": "64000.00000000", "lastFundingRate": "0.0001", "time": MS},
    ],
    ("coinbase", FactorKind.SPOT): [{"price": "64000.1", "size": "0.01", "time": "2023-11-14T22:15:00.000000Z"}],
    ("coinbase", FactorKind.REALIZED_VOL): [[[t, float(c), float(c), float(c), float(c), 1.5] for t, c in reversed(CANDLES)]],
    ("coinbase", FactorKind.DEPTH): [{"bids": [b + [3] for b in BIDS], "asks": [a + [1] for a in ASKS],
                                      "sequence": 5, "time": "2023-11-14T22:15:00.000000Z"}],
    ("kraken", FactorKind.SPOT): [{"error": [], "result": {"XXBTZUSD": {"c": ["64000.10000", "0.001"]}}}],
    ("kraken", FactorKind.REALIZED_VOL): [{"error": [], "result": {
        "XXBTZUSD": [[t, c, c, c, c, c, "1.0", 5] for t, c in CANDLES], "last": CANDLES[-2][0]}}],
    ("kraken", FactorKind.DEPTH): [{"error": [], "result": {"XXBTZUSD": {
        "asks": [a + [int(NOW)] for a in ASKS], "bids": [b + [int(NOW)] for b in BIDS]}}}],
    ("okx", FactorKind.SPOT): [{"code": "0", "msg": "", "data": [{"instId": "BTC-USDT", "last": "64000.1", "ts": str(MS)}]}],
    ("okx", FactorKind.REALIZED_VOL): [{"code": "0", "msg": "", "data": [
        [str(t * 1000), c, c, c, c, "1", "1", "1", "1"] for t, c in reversed(CANDLES)]}],
    ("okx", FactorKind.DEPTH): [{"code": "0", "msg": "", "data": [{
        "asks": [a + ["0", "2"] for a in ASKS], "bids": [b + ["0", "2"] for b in BIDS], "ts": str(MS)}]}],
    ("okx", FactorKind.FUNDING_RATE): [{"code": "0", "msg": "", "data": [{
        "instType": "SWAP", "instId": "BTC-USDT-SWAP", "fundingRate": "0.0000792386", "fundingTime": str(MS + 1), "ts": str(MS)}]}],
    ("okx", FactorKind.OPEN_INTEREST): [{"code": "0", "msg": "", "data": [{
        "instType": "SWAP", "instId": "BTC-USDT-SWAP", "oi": "2216113", "oiCcy": "22161.13",
        "oiUsd": "1418312000.5", "ts": str(MS)}]}],
    ("bybit", FactorKind.SPOT): [{"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [
        {"symbol": "BTCUSDT", "lastPrice": "64000.10"}]}, "retExtInfo": {}, "time": MS}],
    ("bybit", FactorKind.REALIZED_VOL): [{"retCode": 0, "retMsg": "OK", "result": {"symbol": "BTCUSDT", "category": "spot",
        "list": [[str(t * 1000), c, c, c, c, "1", "1"] for t, c in reversed(CANDLES)]}, "time": MS}],
    ("bybit", FactorKind.DEPTH): [{"retCode": 0, "retMsg": "OK", "result": {"s": "BTCUSDT", "b": BIDS, "a": ASKS,
                                                                           "ts": MS, "u": 1}, "time": MS}],
    ("bybit", FactorKind.FUNDING_RATE): [{"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
        {"symbol": "BTCUSDT", "fundingRate": "0.0001", "openInterestValue": "3000000000.12"}]}, "time": MS}],
    ("bybit", FactorKind.OPEN_INTEREST): [{"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
        {"symbol": "BTCUSDT", "fundingRate": "0.0001", "openInterestValue": "3000000000.12"}]}, "time": MS}],
    ("deribit", FactorKind.IMPLIED_VOL): [{"jsonrpc": "2.0", "result": {"data": [
        [MS - 60000, 55.1, 55.3, 55.0, 55.2], [MS, 55.2, 55.6, 55.1, 55.43]], "continuation": None}}],
    ("deribit", FactorKind.FUNDING_RATE): [{"jsonrpc": "2.0", "result": {
        "instrument_name": "BTC-PERPETUAL", "funding_8h": 0.00003456, "open_interest": 612345670, "timestamp": MS}}],
    ("deribit", FactorKind.OPEN_INTEREST): [{"jsonrpc": "2.0", "result": {
        "instrument_name": "BTC-PERPETUAL", "funding_8h": 0.00003456, "open_interest": 612345670, "timestamp": MS}}],
}

RV = None  # computed once below from the known closes


def _expected_rv() -> Decimal:
    from aggregation.volatility import annualized_realized_vol

    return annualized_realized_vol([Decimal(c) for _, c in CANDLES], 60)


EXPECTED: dict[tuple[str, FactorKind], Decimal] = {
    ("binance", FactorKind.SPOT): Decimal("64000.12"),
    ("binance-futures", FactorKind.FUNDING_RATE): Decimal("-0.000125"),
    ("binance-futures", FactorKind.OPEN_INTEREST): Decimal(640_000_000),
    ("coinbase", FactorKind.SPOT): Decimal("64000.1"),
    ("kraken", FactorKind.SPOT): Decimal("64000.1"),
    ("okx", FactorKind.SPOT): Decimal("64000.1"),
    ("okx", FactorKind.FUNDING_RATE): Decimal("0.0000792386"),
    ("okx", FactorKind.OPEN_INTEREST): Decimal("1418312000.5"),
    ("bybit", FactorKind.SPOT): Decimal("64000.1"),
    ("bybit", FactorKind.FUNDING_RATE): Decimal("0.0001"),
    ("bybit", FactorKind.OPEN_INTEREST): Decimal("3000000000.12"),
    ("deribit", FactorKind.IMPLIED_VOL): Decimal("0.5543"),
    ("deribit", FactorKind.FUNDING_RATE): Decimal("0.00003456"),
    ("deribit", FactorKind.OPEN_INTEREST): Decimal(612345670),
}


def parse(name: str, kind: FactorKind, bodies: list[object], instrument: str = "BTC-USD"):  # type: ignore[no-untyped-def]
    source = make_source(name)
    raws = [RawResponse(json.dumps(b).encode()) for b in bodies]
    return source.parse_responses(raws, kind=kind, instrument=instrument, fetched_at=NOW)


@pytest.mark.parametrize(("name", "kind"), sorted(RECORDED))
def test_every_venue_and_factor_parses_its_documented_shape(name: str, kind: FactorKind) -> None:
    reading = parse(name, kind, RECORDED[(name, kind)])
    assert (reading.source, reading.kind, reading.instrument) == (name, kind, "BTC-USD")
    if kind == FactorKind.REALIZED_VOL:
        assert reading.value == _expected_rv()
        assert Decimal("0.5") < reading.value < Decimal("1.0")  # 0.1 % per minute ~ 72 % a year
    elif kind == FactorKind.DEPTH:
        assert reading.value == DEPTH
    else:
        assert reading.value == EXPECTED[(name, kind)]
    assert reading.observed_at <= NOW


@pytest.mark.parametrize(("name", "kind"), sorted(RECORDED))
def test_every_factor_refuses_nan_with_a_typed_error(name: str, kind: FactorKind) -> None:
    text = json.dumps(RECORDED[(name, kind)][0])
    for token in ('"64000.12000000"', '"-0.00012500"', '"10000.000"', '"64000.1"', '"0.0000792386"',
                  '"1418312000.5"', '"3000000000.12"', "55.43", "0.00003456", "612345670", '"64010.00"',
                  '"64000.10"', '"64000.10000"', "3.456e-05"):
        text = text.replace(token, '"NaN"' if token.startswith('"') else "NaN", 1)
    if (name, kind) == ("bybit", FactorKind.FUNDING_RATE):
        text = text.replace('"0.0001"', '"NaN"')
    if kind == FactorKind.REALIZED_VOL:
        text = text.replace(CANDLES[-1][1], "NaN")
        text = text.replace(str(float(CANDLES[-1][1])), "NaN")
    bodies = [json.loads(text, parse_constant=lambda c: c)] + RECORDED[(name, kind)][1:]
    with pytest.raises((SourceValueError, SourceFormatError)) as caught:
        parse(name, kind, bodies)
    assert str(caught.value).startswith(f"{name} BTC-USD: expected")


def test_okx_error_code_inside_http_200_is_the_venues_error() -> None:
    body = {"code": "51001", "msg": "Instrument ID does not exist", "data": []}
    with pytest.raises(SourceHTTPError, match="51001.*Instrument ID does not exist"):
        parse("okx", FactorKind.FUNDING_RATE, [body])


def test_bybit_ret_code_is_the_venues_error() -> None:
    with pytest.raises(SourceHTTPError, match="10001: Not supported symbols"):
        parse("bybit", FactorKind.SPOT, [{"retCode": 10001, "retMsg": "Not supported symbols", "result": {}}])


def test_deribit_error_status_carries_the_venue_message() -> None:
    source = make_source("deribit")
    body = json.dumps({"jsonrpc": "2.0", "error": {"message": "Invalid params", "code": -32602}}).encode()
    with pytest.raises(SourceHTTPError, match="venue says: code -32602: Invalid params"):
        source.parse_response(body, instrument="BTC-USD", fetched_at=NOW, status=400, kind="implied_vol")


def test_rate_limit_carries_retry_after_seconds() -> None:
    source = make_source("okx")
    with pytest.raises(SourceRateLimited) as caught:
        source.parse_response(b'{"code":"50011","msg":"Too Many Requests","data":[]}', instrument="BTC-USD",
                              fetched_at=NOW, status=429, retry_after="3", kind="spot")
    assert caught.value.retry_after == 3.0 and caught.value.status == 429
    assert "Retry-After: 3" in str(caught.value)


def test_a_source_is_never_asked_for_a_factor_it_does_not_serve() -> None:
    with pytest.raises(UnsupportedFactorError, match="deribit BTC-USD: expected a factor this source serves"):
        make_source("deribit").plan(FactorKind.SPOT, "BTC-USD")
    with pytest.raises(UnsupportedFactorError):
        parse("coinbase", FactorKind.FUNDING_RATE, [{}])


def test_too_few_candles_is_a_format_error_not_a_guess() -> None:
    body = RECORDED[("binance", FactorKind.REALIZED_VOL)][0][:30]  # type: ignore[index]
    with pytest.raises(SourceFormatError, match="at least 61 candles of 60s, got 30 candles"):
        parse("binance", FactorKind.REALIZED_VOL, [body])


def test_a_gap_in_candles_is_a_format_error() -> None:
    rows = list(RECORDED[("binance", FactorKind.REALIZED_VOL)][0])  # type: ignore[call-overload]
    del rows[30]
    first = rows[0]
    rows.insert(0, [first[0] - 120_000, *first[1:]])  # still 61 candles, but one minute is missing
    with pytest.raises(SourceFormatError, match="consecutive 60s candles"):
        parse("binance", FactorKind.REALIZED_VOL, [rows])


def test_a_crossed_book_is_a_value_error() -> None:
    body = {"lastUpdateId": 1, "bids": [["64100.00", "1"]], "asks": [["64000.00", "1"]]}
    with pytest.raises(SourceValueError, match="crossed"):
        parse("binance", FactorKind.DEPTH, [body])


def test_funding_may_be_negative_but_not_absurd() -> None:
    body = dict(RECORDED[("binance-futures", FactorKind.FUNDING_RATE)][0])  # type: ignore[call-overload]
    body["lastFundingRate"] = "-0.9"
    with pytest.raises(SourceValueError, match=r"outside the sane range \[-0.5, 0.5\]"):
        parse("binance-futures", FactorKind.FUNDING_RATE, [body])


# ---- a body for another instrument or market type ---------------------------------


def _with(name: str, kind: FactorKind, *changes: tuple[tuple[str | int, ...], object]) -> list[object]:
    """The recorded bodies of (name, kind) with the value at each path replaced."""
    bodies: list[object] = json.loads(json.dumps(RECORDED[(name, kind)]))
    for path, value in changes:
        node = bodies
        for part in path[:-1]:
            node = node[part]  # type: ignore[index]
        node[path[-1]] = value  # type: ignore[index]
    return bodies


def _rekeyed(key: str) -> list[object]:
    """Kraken's recorded ticker with its result under another pair's key."""
    body = json.loads(json.dumps(RECORDED[("kraken", FactorKind.SPOT)][0]))
    body["result"] = {key: body["result"]["XXBTZUSD"]}
    return [body]


SPOT, RV, BOOK, FUND, OI = (FactorKind.SPOT, FactorKind.REALIZED_VOL, FactorKind.DEPTH, FactorKind.FUNDING_RATE,
                            FactorKind.OPEN_INTEREST)
# (venue, kind, bodies for another market, what was asked for, what came). Endpoints whose
# answers name no instrument (Coinbase's, Binance klines and book, OKX candles and books,
# Deribit's DVOL) have nothing to compare and are not listed.
ANOTHER_MARKET = [
    ("binance", SPOT, _with("binance", SPOT, ((0, "symbol"), "ETHUSDT")), "symbol 'BTCUSDT'", "symbol 'ETHUSDT'"),
    ("binance-futures", FUND, _with("binance-futures", FUND, ((0, "symbol"), "ETHUSDT")),
     "symbol 'BTCUSDT'", "symbol 'ETHUSDT'"),
    # COIN-M (inverse) instead of USD-M (linear).
    ("binance-futures", FUND, _with("binance-futures", FUND, ((0, "symbol"), "BTCUSD_PERP")),
     "symbol 'BTCUSDT'", "symbol 'BTCUSD_PERP'"),
    ("binance-futures", OI, _with("binance-futures", OI, ((0, "symbol"), "BTCUSD_PERP")),
     "symbol 'BTCUSDT'", "symbol 'BTCUSD_PERP'"),
    ("binance-futures", OI, _with("binance-futures", OI, ((1, "symbol"), "ETHUSDT")),
     "symbol 'BTCUSDT'", "symbol 'ETHUSDT'"),
    ("bybit", SPOT, _with("bybit", SPOT, ((0, "result", "list", 0, "symbol"), "ETHUSDT")),
     "result.list[0].symbol 'BTCUSDT'", "result.list[0].symbol 'ETHUSDT'"),
    # Spot and linear share the symbol BTCUSDT: only the category tells them apart.
    ("bybit", SPOT, _with("bybit", SPOT, ((0, "result", "category"), "linear")),
     "result.category 'spot'", "result.category 'linear'"),
    ("bybit", FUND, _with("bybit", FUND, ((0, "result", "category"), "spot")),
     "result.category 'linear'", "result.category 'spot'"),
    ("bybit", OI, _with("bybit", OI, ((0, "result", "category"), "inverse"), ((0, "result", "list", 0, "symbol"), "BTCUSD")),
     "result.category 'linear'", "result.category 'inverse'"),
    ("bybit", RV, _with("bybit", RV, ((0, "result", "category"), "linear")), "result.category 'spot'",
     "result.category 'linear'"),
    ("bybit", RV, _with("bybit", RV, ((0, "result", "symbol"), "ETHUSDT")), "result.symbol 'BTCUSDT'",
     "result.symbol 'ETHUSDT'"),
    ("bybit", BOOK, _with("bybit", BOOK, ((0, "result", "s"), "ETHUSDT")), "result.s 'BTCUSDT'", "result.s 'ETHUSDT'"),
    ("okx", SPOT, _with("okx", SPOT, ((0, "data", 0, "instId"), "ETH-USDT")),
     "data[0].instId 'BTC-USDT'", "data[0].instId 'ETH-USDT'"),
    ("okx", SPOT, _with("okx", SPOT, ((0, "data", 0, "instId"), "BTC-USDT-SWAP")),
     "data[0].instId 'BTC-USDT'", "data[0].instId 'BTC-USDT-SWAP'"),
    ("okx", FUND, _with("okx", FUND, ((0, "data", 0, "instId"), "ETH-USDT-SWAP")),
     "data[0].instId 'BTC-USDT-SWAP'", "data[0].instId 'ETH-USDT-SWAP'"),
    # The inverse (coin-margined) perpetual instead of the linear one.
    ("okx", FUND, _with("okx", FUND, ((0, "data", 0, "instId"), "BTC-USD-SWAP")),
     "data[0].instId 'BTC-USDT-SWAP'", "data[0].instId 'BTC-USD-SWAP'"),
    ("okx", FUND, _with("okx", FUND, ((0, "data", 0, "instType"), "FUTURES")),
     "data[0].instType 'SWAP'", "data[0].instType 'FUTURES'"),
    ("okx", OI, _with("okx", OI, ((0, "data", 0, "instId"), "ETH-USDT-SWAP")),
     "data[0].instId 'BTC-USDT-SWAP'", "data[0].instId 'ETH-USDT-SWAP'"),
    ("okx", OI, _with("okx", OI, ((0, "data", 0, "instId"), "BTC-USD-SWAP")),
     "data[0].instId 'BTC-USDT-SWAP'", "data[0].instId 'BTC-USD-SWAP'"),
    ("kraken", SPOT, _rekeyed("XETHZUSD"), "pair XBTUSD (result key XXBTZUSD)", "result keys XETHZUSD"),
    ("kraken", RV, [{"error": [], "result": {"XETHZUSD": RECORDED[("kraken", RV)][0]["result"]["XXBTZUSD"],  # type: ignore[index]
                                             "last": 1}}], "pair XBTUSD (result key XXBTZUSD)", "result keys XETHZUSD"),
    ("kraken", BOOK, [{"error": [], "result": {"XETHZUSD": RECORDED[("kraken", BOOK)][0]["result"]["XXBTZUSD"]}}],  # type: ignore[index]
     "pair XBTUSD (result key XXBTZUSD)", "result keys XETHZUSD"),
    ("deribit", FUND, _with("deribit", FUND, ((0, "result", "instrument_name"), "ETH-PERPETUAL")),
     "result.instrument_name 'BTC-PERPETUAL'", "result.instrument_name 'ETH-PERPETUAL'"),
    # The linear (USDC-margined) perpetual instead of the inverse one.
    ("deribit", OI, _with("deribit", OI, ((0, "result", "instrument_name"), "BTC_USDC-PERPETUAL")),
     "result.instrument_name 'BTC-PERPETUAL'", "result.instrument_name 'BTC_USDC-PERPETUAL'"),
]


@pytest.mark.parametrize(("name", "kind", "bodies", "expected", "got"), ANOTHER_MARKET)
def test_a_body_for_another_instrument_or_market_type_is_refused(
    name: str, kind: FactorKind, bodies: list[object], expected: str, got: str
) -> None:
    with pytest.raises(SourceInstrumentMismatch) as caught:
        parse(name, kind, bodies)
    assert (caught.value.expected, caught.value.got) == (expected, got)
    assert str(caught.value).startswith(f"{name} BTC-USD: expected a body for {expected}, got {got};")
    assert isinstance(caught.value, SourceFormatError)  # counted with the other broken bodies


def test_every_venue_with_an_instrument_in_its_body_is_covered() -> None:
    # Each (venue, kind) whose body names its market has a case above.
    covered = {(name, kind) for name, kind, *_ in ANOTHER_MARKET}
    unnamed = {("binance", RV), ("binance", BOOK), ("coinbase", SPOT), ("coinbase", RV), ("coinbase", BOOK),
               ("okx", RV), ("okx", BOOK), ("deribit", FactorKind.IMPLIED_VOL)}
    assert covered | unnamed == set(RECORDED)
    assert not covered & unnamed


# ---- errors the venue reports inside an HTTP 200 ----------------------------------

IN_BODY = [
    ("kraken", SPOT, {"error": ["EAPI:Rate limit exceeded"]}, SourceRateLimited, 5.0),
    ("kraken", RV, {"error": ["EGeneral:Too many requests"]}, SourceRateLimited, 5.0),
    ("kraken", BOOK, {"error": ["EService:Throttled: 1700000100"]}, SourceRateLimited, 5.0),
    ("kraken", SPOT, {"error": ["EService:Unavailable"]}, SourceUnavailable, None),
    ("kraken", SPOT, {"error": ["EService:Busy"]}, SourceUnavailable, None),
    ("kraken", SPOT, {"error": ["EService:Deadline elapsed"]}, SourceUnavailable, None),
    ("kraken", SPOT, {"error": ["EGeneral:Internal error"]}, SourceUnavailable, None),
    ("kraken", SPOT, {"error": ["EQuery:Unknown asset pair"]}, SourceUnknownInstrument, None),
    ("kraken", SPOT, {"error": ["EGeneral:Invalid arguments"]}, SourceHTTPError, None),
    ("okx", SPOT, {"code": "50011", "msg": "Rate limit reached. Please refer to API documentation and throttle "
                   "requests accordingly", "data": []}, SourceRateLimited, 2.0),
    ("okx", FUND, {"code": "50061", "msg": "Sub-account rate limit exceeded", "data": []}, SourceRateLimited, 2.0),
    ("okx", OI, {"code": "50001", "msg": "Service temporarily unavailable. Please try again later", "data": []},
     SourceUnavailable, None),
    ("okx", RV, {"code": "50004", "msg": "API endpoint request timeout", "data": []}, SourceUnavailable, None),
    ("okx", BOOK, {"code": "50005", "msg": "API is offline or unavailable", "data": []}, SourceUnavailable, None),
    ("okx", SPOT, {"code": "50013", "msg": "Systems are busy. Please try again later.", "data": []},
     SourceUnavailable, None),
    ("okx", SPOT, {"code": "50026", "msg": "System error. Try again later", "data": []}, SourceUnavailable, None),
    ("okx", FUND, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}, SourceUnknownInstrument, None),
    ("okx", SPOT, {"code": "51000", "msg": "Parameter instId error", "data": []}, SourceHTTPError, None),
    ("bybit", SPOT, {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}, SourceRateLimited, 5.0),
    ("bybit", BOOK, {"retCode": 10018, "retMsg": "Exceeded the IP Rate Limit.", "result": {}}, SourceRateLimited, 5.0),
    ("bybit", FUND, {"retCode": 10429, "retMsg": "System level frequency protection", "result": {}},
     SourceRateLimited, 5.0),
    ("bybit", RV, {"retCode": 10016, "retMsg": "Internal server error.", "result": {}}, SourceUnavailable, None),
    ("bybit", OI, {"retCode": 10000, "retMsg": "Server Timeout", "result": {}}, SourceUnavailable, None),
    ("bybit", SPOT, {"retCode": 10001, "retMsg": "Not supported symbols", "result": {}}, SourceUnknownInstrument, None),
    ("bybit", SPOT, {"retCode": 10002, "retMsg": "invalid request, please check your server timestamp",
                     "result": {}}, SourceHTTPError, None),
    ("deribit", FUND, {"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}},
     SourceRateLimited, None),
    ("deribit", OI, {"jsonrpc": "2.0", "error": {"code": 11051, "message": "system_maintenance"}},
     SourceUnavailable, None),
    ("deribit", FactorKind.IMPLIED_VOL, {"jsonrpc": "2.0", "error": {"code": 13028, "message": "temporarily_unavailable"}},
     SourceUnavailable, None),
    ("deribit", FUND, {"jsonrpc": "2.0", "error": {"code": 10020, "message": "invalid_or_unsupported_instrument"}},
     SourceUnknownInstrument, None),
]


@pytest.mark.parametrize(("name", "kind", "body", "error", "pause"), IN_BODY)
def test_each_in_body_error_code_gives_the_typed_error_of_its_http_status(
    name: str, kind: FactorKind, body: dict[str, object], error: type[SourceHTTPError], pause: float | None
) -> None:
    with pytest.raises(SourceHTTPError) as caught:
        parse(name, kind, [body])
    assert type(caught.value) is error
    assert caught.value.status == 200
    message = str(caught.value)
    assert message.startswith(f"{name} BTC-USD: expected an answer without an error, got the venue's ")
    assert "inside HTTP 200" in message
    code = body.get("code", body.get("retCode", body.get("error")))
    assert str(code if not isinstance(code, dict) else code["code"]).strip("[]'") in message
    if error is SourceRateLimited:
        assert caught.value.retry_after == pause  # type: ignore[attr-defined]
        assert "rate limiting us" in message


def test_a_kraken_warning_alone_is_not_an_error() -> None:
    body = json.loads(json.dumps(RECORDED[("kraken", SPOT)][0]))
    body["error"] = ["WGeneral:Deprecated"]
    assert parse("kraken", SPOT, [body]).value == Decimal("64000.1")


@pytest.mark.parametrize(
    ("name", "status", "body", "error"),
    [
        ("binance", 400, {"code": -1121, "msg": "Invalid symbol."}, SourceUnknownInstrument),
        ("binance", 429, {"code": -1003, "msg": "Too many requests."}, SourceRateLimited),
        ("binance-futures", 503, {"code": -1008, "msg": "Server is currently overloaded"}, SourceUnavailable),
        ("okx", 429, {"code": "50011", "msg": "Too Many Requests", "data": []}, SourceRateLimited),
        ("okx", 400, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}, SourceUnknownInstrument),
        ("coinbase", 404, {"message": "NotFound"}, SourceUnknownInstrument),
        ("deribit", 400, {"jsonrpc": "2.0", "error": {"code": 10020, "message": "invalid_or_unsupported_instrument"}},
         SourceUnknownInstrument),
        ("deribit", 400, {"jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params"}}, SourceHTTPError),
    ],
)
def test_an_error_status_is_typed_by_the_venues_code_too(
    name: str, status: int, body: dict[str, object], error: type[SourceHTTPError]
) -> None:
    kind = sorted(make_source(name).factors)[0]
    with pytest.raises(SourceHTTPError) as caught:
        make_source(name).parse_responses([RawResponse(json.dumps(body).encode(), status)], kind=kind,
                                          instrument="BTC-USD", fetched_at=NOW)
    assert type(caught.value) is error
    assert caught.value.status == status
    assert f"expected HTTP 200, got {status} (venue says:" in str(caught.value)


# ---- bounds and messages ----------------------------------------------------------


def test_an_implied_vol_index_in_percent_read_as_a_fraction_is_refused() -> None:
    from feeds.sources.deribit import DeribitSource

    class ForgetsThePercent(DeribitSource):
        # An adapter that takes DVOL's close (in percent) as the fraction.
        def extract_factor(self, kind: FactorKind, payloads: object, instrument: str,  # type: ignore[override]
                           fetched_at: float) -> object:
            quote = super().extract_factor(kind, payloads, instrument, fetched_at)  # type: ignore[arg-type]
            return type(quote)(quote.price.scaleb(2), quote.observed_at)

    raws = [RawResponse(json.dumps(b).encode()) for b in RECORDED[("deribit", FactorKind.IMPLIED_VOL)]]
    with pytest.raises(SourceValueError) as caught:
        ForgetsThePercent().parse_responses(raws, kind=FactorKind.IMPLIED_VOL, instrument="BTC-USD", fetched_at=NOW)
    assert "got 55.43, outside the sane range [0.01, 5] (a percentage read as a fraction?)" in str(caught.value)
    # Even a DVOL of 10 (far below any BTC or ETH DVOL has printed) cannot pass as a fraction.
    calm = _with("deribit", FactorKind.IMPLIED_VOL, ((0, "result", "data", 1, 4), 10.0))
    raws = [RawResponse(json.dumps(b).encode()) for b in calm]
    with pytest.raises(SourceValueError, match=r"got 10\.0, outside the sane range \[0\.01, 5\]"):
        ForgetsThePercent().parse_responses(raws, kind=FactorKind.IMPLIED_VOL, instrument="BTC-USD", fetched_at=NOW)
    # Read right, the same index is a sane fraction.
    assert parse("deribit", FactorKind.IMPLIED_VOL, calm).value == Decimal("0.1")


@pytest.mark.parametrize("mark", ["-64000.00000000", "0", "NaN"])
def test_a_broken_mark_price_is_named_as_such_not_as_open_interest(mark: str) -> None:
    bodies = _with("binance-futures", OI, ((1, "markPrice"), mark))
    with pytest.raises(SourceValueError) as caught:
        parse("binance-futures", OI, bodies)
    message = str(caught.value)
    assert f"expected a positive finite markPrice for BTCUSDT to value open interest in USD, got {mark}" in message
    assert "open interest 0" not in message and "broken mark price" in message


def test_each_venue_caps_its_big_endpoints_and_keeps_64_kib_elsewhere() -> None:
    assert make_source("coinbase").body_cap(FactorKind.DEPTH) == 16 * 1024 * 1024
    assert make_source("kraken").body_cap(FactorKind.REALIZED_VOL) == 256 * 1024
    for name in ("binance", "okx", "bybit", "kraken"):
        assert make_source(name).body_cap(FactorKind.SPOT) == 64 * 1024


def test_a_full_coinbase_book_is_read_only_near_mid_with_the_same_depth() -> None:
    from feeds.computed import book_depth
    from feeds.errors import Origin

    body = json.loads(json.dumps(RECORDED[("coinbase", BOOK)][0]))
    # Thousands of far levels, as Coinbase's full level-2 book has, some of them broken:
    # they lie beyond the band, so they change nothing and are never converted.
    body["bids"] += [[f"{50000 - i}.00", "0.5", 1] for i in range(5000)] + [["NaN", "1", 1]]
    body["asks"] += [[f"{70000 + i}.00", "0.5", 1] for i in range(5000)] + [["oops", "1", 1]]
    reading = parse("coinbase", BOOK, [body])
    near = [(Decimal(p), Decimal(q)) for p, q, _ in RECORDED[("coinbase", BOOK)][0]["bids"]]  # type: ignore[index]
    near_asks = [(Decimal(p), Decimal(q)) for p, q, _ in RECORDED[("coinbase", BOOK)][0]["asks"]]  # type: ignore[index]
    assert reading.value == book_depth(near, near_asks, Origin("coinbase", "BTC-USD")) == DEPTH


def test_a_coinbase_book_side_out_of_order_is_a_format_error() -> None:
    body = json.loads(json.dumps(RECORDED[("coinbase", BOOK)][0]))
    body["bids"][0], body["bids"][1] = body["bids"][1], body["bids"][0]
    with pytest.raises(SourceFormatError, match=r"expected bids best first, got 63990\.00 after 63900\.00 at \[1\]"):
        parse("coinbase", BOOK, [body])


# ---- observation times --------------------------------------------------------------


def _dvol(newest_open_ms: int) -> list[object]:
    return [{"jsonrpc": "2.0", "result": {"data": [[newest_open_ms - 60_000, 55.1, 55.3, 55.0, 55.2],
                                                   [newest_open_ms, 55.2, 55.6, 55.1, 55.43]], "continuation": None}}]


def test_a_dvol_row_is_observed_at_its_minutes_close_not_its_open() -> None:
    # The minute that opened 90 s ago closed 30 s ago: that is when its close was true.
    assert parse("deribit", FactorKind.IMPLIED_VOL, _dvol(MS - 90_000)).observed_at == NOW - 30
    # The minute still running holds the index now: observed at the fetch, never ahead of it.
    assert parse("deribit", FactorKind.IMPLIED_VOL, _dvol(MS - 20_000)).observed_at == NOW


def test_a_closed_dvol_minute_fits_the_staleness_limit_and_two_missed_minutes_do_not() -> None:
    # Stamped at its open, the newest closed row is 60-120 s "old" though it is fresh:
    # read by its close it is at most 60 s old, inside the 120 s limit.
    assert parse("deribit", FactorKind.IMPLIED_VOL, _dvol(MS - 119_000)).value == Decimal("0.5543")
    from feeds.errors import SourceStaleError

    with pytest.raises(SourceStaleError, match=r"at most 120s old, got .*\(140\.0s old\)"):
        parse("deribit", FactorKind.IMPLIED_VOL, _dvol(MS - 200_000))


def _coinbase_candles_without(*minutes_ago: int) -> list[object]:
    rows = RECORDED[("coinbase", RV)][0]  # newest first
    return [[row for k, row in enumerate(rows) if k not in minutes_ago]]  # type: ignore[arg-type]


def test_coinbase_minutes_without_trades_are_filled_with_the_previous_close() -> None:
    from aggregation.volatility import annualized_realized_vol

    # Minutes 3 and 40 before the newest had no trades: Coinbase leaves them out, and
    # their price is the close before them.
    reading = parse("coinbase", RV, _coinbase_candles_without(3, 40))
    closes = [Decimal(c) for _, c in CANDLES]
    for k in (3, 40):
        closes[len(closes) - 1 - k] = closes[len(closes) - 2 - k]
    # The oldest close now drops out of the window (the window is the newest 61 minutes).
    assert reading.value == annualized_realized_vol(closes, 60)
    assert reading.observed_at == min(CANDLES[-1][0] + 60, NOW)


def test_coinbase_too_many_quiet_minutes_is_a_clear_error_not_a_guess() -> None:
    with pytest.raises(SourceValueError, match=r"expected at most 6 minutes without trades among the newest 61, got 7"):
        parse("coinbase", RV, _coinbase_candles_without(*range(2, 9)))


def test_coinbase_asks_for_twice_the_minutes_it_needs() -> None:
    from datetime import datetime

    (path, params), = make_source("coinbase").plan(RV, "BTC-USD")
    span = datetime.fromisoformat(params["end"]) - datetime.fromisoformat(params["start"])
    assert path == "/products/BTC-USD/candles" and span.total_seconds() == 2 * 61 * 60

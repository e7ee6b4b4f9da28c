"""The body walker: typed access to a venue's decoded JSON by path, with errors naming the path.

A venue adapter reads its body only through :class:`Body`: ``body.decimal("result",
"list", 0, "lastPrice")`` either returns an exact Decimal or raises a
:class:`~feeds.errors.SourceFormatError` that names the whole path and what was
there instead. :meth:`Body.candles` is the one reader of candle arrays
(``[[open time, ..., close, ...], ...]``) every venue with candles shares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Literal

from feeds.errors import Origin, SourceFormatError

__all__ = ["Body", "Candle", "PathPart", "json_kind", "path_text"]

PathPart = str | int
# (open time in unix seconds, close)
Candle = tuple[float, Decimal]

# A plain decimal number as venues write them ("64000.12000000", "1e-5").
# Decimal() alone also takes "1_000" and surrounding whitespace, which no venue
# documents; accepting them would hide a broken or spoofed response.
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE_TEXT = re.compile(r"[+-]?(nan|snan|inf|infinity)", re.IGNORECASE)


def path_text(path: Sequence[PathPart]) -> str:
    """``("result", "list", 0, "lastPrice")`` -> ``result.list[0].lastPrice``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def json_kind(value: object) -> str:
    """What a JSON value is, in a few words, for an error message."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    return f"number {value}"


class Body:
    """One decoded JSON body of one venue answer, for one source and instrument."""

    __slots__ = ("payload", "origin")

    def __init__(self, payload: object, origin: Origin) -> None:
        self.payload = payload
        self.origin = origin

    def error(self, expected: str, got: str) -> SourceFormatError:
        return self.origin.format_error(expected, got)

    def at(self, *path: PathPart) -> object:
        """The value at ``path``; a missing step names the whole path and what was there."""
        node = self.payload
        for depth, part in enumerate(path):
            where = path_text(path[:depth]) if depth else "top level"
            if isinstance(part, int):
                if not isinstance(node, list):
                    got = f"{json_kind(node)} at {where}"
                elif part >= len(node):
                    got = f"array of {len(node)} at {where}"
                else:
                    node = node[part]
                    continue
            else:
                if not isinstance(node, dict):
                    got = f"{json_kind(node)} at {where}"
                elif part not in node:
                    keys = ", ".join(sorted(map(str, node))[:8]) or "none"
                    got = f"object without {part!r} at {where} (keys: {keys})"
                else:
                    node = node[part]
                    continue
            raise self.error(f"JSON object with {path_text(path)}", got)
        return node

    def expect(self, wanted: str, *path: PathPart) -> None:
        """The body names ``wanted`` at ``path`` (a symbol, a market type), or it is for another market."""
        got = self.at(*path)
        if got != wanted:
            where = path_text(path)
            raise self.origin.mismatch(f"{where} {wanted!r}", f"{where} {got!r}" if isinstance(got, str) else
                                       f"{where} {json_kind(got)}")

    def decimal(self, *path: PathPart) -> Decimal:
        """A number at ``path`` as Decimal: decimal strings (what venues send) or exact JSON numbers."""
        value = self.at(*path)
        if isinstance(value, bool):
            pass
        elif isinstance(value, Decimal):
            return value
        elif isinstance(value, int):
            return Decimal(value)
        elif isinstance(value, str):
            if _DECIMAL_TEXT.fullmatch(value) or _NON_FINITE_TEXT.fullmatch(value):
                try:
                    # The value check reports NaN/inf with its own error type.
                    return Decimal(value)
                except InvalidOperation:  # pragma: no cover - regex admits only valid text
                    pass
        raise self.error(f"a decimal number at {path_text(path)}", json_kind(value))

    def array(self, *path: PathPart) -> list[object]:
        """The JSON array at ``path`` (the field must exist and be an array)."""
        value = self.at(*path)
        if not isinstance(value, list):
            raise self.error(f"an array at {path_text(path)}", json_kind(value))
        return value

    def levels(self, *path: PathPart) -> list[tuple[Decimal, Decimal]]:
        """Book levels ``[[price, size, ...], ...]`` at ``path`` as (price, size) Decimals."""
        return [
            (self.decimal(*path, index, 0), self.decimal(*path, index, 1))
            for index in range(len(self.array(*path)))
        ]

    def levels_near_mid(
        self, bids: Sequence[PathPart], asks: Sequence[PathPart], band_bps: int
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Both sides of a best-first book, read only as far as twice ``band_bps`` from mid.

        A full book (Coinbase level 2: tens of thousands of levels) would cost far more
        to convert than the few levels near mid a depth needs; the venue lists each side
        best first, which is checked on every level read, so the levels left unread are
        all further out. An empty side or a first level that is not a usable price is
        read whole, for the book checks to name.
        """
        bid_rows, ask_rows = self.array(*bids), self.array(*asks)
        if not bid_rows or not ask_rows:
            return self.levels(*bids), self.levels(*asks)
        best_bid, best_ask = self.decimal(*bids, 0, 0), self.decimal(*asks, 0, 0)
        if not (best_bid.is_finite() and best_ask.is_finite() and 0 < best_bid < best_ask):
            return self.levels(*bids), self.levels(*asks)
        mid = (best_bid + best_ask) / 2
        reach = mid * 2 * band_bps / 10_000

        def side(path: Sequence[PathPart], count: int, sign: int) -> list[tuple[Decimal, Decimal]]:
            out: list[tuple[Decimal, Decimal]] = []
            for index in range(count):
                price = self.decimal(*path, index, 0)
                if out and price.is_finite() and sign * (price - out[-1][0]) <= 0:
                    raise self.error(f"{path_text(path)} best first", f"{price} after {out[-1][0]} at [{index}]")
                if price.is_finite() and abs(price - mid) > reach:
                    break
                out.append((price, self.decimal(*path, index, 1)))
            return out

        return side(bids, len(bid_rows), -1), side(asks, len(ask_rows), 1)

    def epoch_millis(self, *path: PathPart) -> float:
        """A unix timestamp in milliseconds (Binance style; OKX sends it as a string) as seconds."""
        value = self.at(*path)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value / 1000.0
        raise self.error(f"a positive integer of unix milliseconds at {path_text(path)}", json_kind(value))

    def epoch_seconds(self, *path: PathPart) -> float:
        """A unix timestamp in whole seconds, a JSON integer (Coinbase and Kraken candles)."""
        value = self.at(*path)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return float(value)
        raise self.error(f"a positive integer of unix seconds at {path_text(path)}", json_kind(value))

    def iso_time(self, *path: PathPart) -> float:
        """An RFC 3339 timestamp with a UTC offset (Coinbase style) as unix seconds."""
        value = self.at(*path)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if parsed.tzinfo is not None:
                    return parsed.astimezone(timezone.utc).timestamp()
        raise self.error(f"an RFC 3339 timestamp with a UTC offset at {path_text(path)}", json_kind(value))

    def candles(
        self, *path: PathPart, time_unit: Literal["ms", "s"], time_index: int = 0, close_index: int = 4
    ) -> list[Candle]:
        """The candle array at ``path`` as (open time in seconds, close), in the venue's order.

        Each row is an array with the open time at ``time_index`` (unix ``time_unit``)
        and the close at ``close_index``; any row that is not is a format error naming it.
        """
        stamp = self.epoch_millis if time_unit == "ms" else self.epoch_seconds
        return [
            (stamp(*path, row, time_index), self.decimal(*path, row, close_index))
            for row in range(len(self.array(*path)))
        ]

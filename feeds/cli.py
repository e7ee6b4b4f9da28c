"""`relayer sources ...`: list the installed sources and try one against a venue.

``relayer sources list`` shows every source registered in the ``relayer.sources``
entry-point group and the risk factors and instruments it serves.
``relayer sources try NAME --instrument BTC-USD [--kind K] [--url URL]`` fetches once
and prints the parsed readings; without ``--url`` it starts the simulated venues
in-process and asks those, so it works offline; with ``--replay DIR`` it reads a
recording instead (:mod:`feeds.replay`); with ``--stream N`` it prints the first N
updates of the source's WebSocket stream (:mod:`feeds.stream`).
``relayer sources record NAME --instrument X --url BASE --out DIR`` fetches every
factor once from a live venue and saves each request and answer in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from feeds.base import Source, SourceReading
from feeds.errors import FeedsError, SourceError
from feeds.kinds import KINDS, FactorKind
from feeds.poller import FeedCache
from feeds.registry import load_sources, make_source

__all__ = ["add_sources_commands", "main"]


def add_sources_commands(subparsers: Any) -> None:
    """Add ``sources list`` and ``sources try`` to an argparse subparsers object."""
    sources = subparsers.add_parser("sources", help="list data sources, or fetch once from one")
    commands = sources.add_subparsers(dest="sources_command", required=True)
    listing = commands.add_parser("list", help="every installed source and the factors it serves")
    listing.add_argument("--json", action="store_true", help="one JSON object per source")
    listing.set_defaults(func=_list_command)
    trying = commands.add_parser("try", help="fetch once and print the parsed readings")
    trying.add_argument("name", help="source name, as in `relayer sources list`")
    trying.add_argument("--instrument", help="default: BTC-USD, or the recording's with --replay")
    trying.add_argument("--kind", choices=_FETCHED_KINDS,
                        help="one factor (default: every factor the source serves, or the recording holds)")
    where = trying.add_mutually_exclusive_group()
    where.add_argument("--url", help="the venue's base URL (default: the simulated venue, in-process)")
    where.add_argument("--replay", metavar="DIR", type=Path,
                       help="answer from a recording made by `relayer sources record` (loopback, offline)")
    trying.add_argument("--stream", type=int, metavar="N", default=0,
                        help="read N updates from the source's WebSocket stream instead of fetching once")
    trying.add_argument("--stream-url", help="the stream's URL (default: the simulated venue's, or the venue's own "
                                             "with --url)")
    trying.add_argument("--timeout", type=float, default=5.0)
    trying.add_argument("--seed", type=int, default=0, help="simulator seed (without --url)")
    trying.add_argument("--json", action="store_true")
    trying.set_defaults(func=_try_command)
    recording = commands.add_parser(
        "record", help="fetch every factor once from a live venue and save each request and answer")
    recording.add_argument("name", help="source name, as in `relayer sources list`")
    recording.add_argument("--instrument", default="BTC-USD")
    recording.add_argument("--url", required=True, help="the venue's base URL, e.g. https://api.binance.com")
    recording.add_argument("--out", required=True, type=Path, help="the directory to write (index.json and bodies)")
    recording.add_argument("--kind", action="append", choices=_FETCHED_KINDS,
                           help="record only this factor (repeatable; default: every factor the source serves)")
    recording.add_argument("--timeout", type=float, default=10.0)
    recording.add_argument("--force", action="store_true", help="replace a recording already in --out")
    recording.add_argument("--json", action="store_true")
    recording.set_defaults(func=_record_command)


_FETCHED_KINDS = [k.value for k in FactorKind if not KINDS[k].derived]


def _print_outcome(kind: FactorKind, outcome: SourceReading | SourceError, as_json: bool, out: TextIO) -> None:
    if isinstance(outcome, SourceError):
        if as_json:
            print(json.dumps({"kind": str(kind), "error": type(outcome).__name__, "message": str(outcome)}), file=out)
        else:
            print(f"{kind:<14} ERROR {type(outcome).__name__}: {outcome}", file=out)
    elif as_json:
        print(outcome.model_dump_json(), file=out)
    else:
        print(f"{kind:<14} {outcome.price}  ({KINDS[kind].unit}; observed_at {outcome.observed_at:.3f}, "
              f"{outcome.latency_ms:.0f} ms)", file=out)


def _list_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    sources = load_sources()
    for name, cls in sources.items():
        factors = sorted(str(k) for k in cls.factors)
        instruments = sorted(cls.symbols)
        if args.json:
            print(json.dumps({"name": name, "class": f"{cls.__module__}.{cls.__qualname__}",
                              "factors": factors, "instruments": instruments, "url": cls.default_url}), file=out)
        else:
            print(f"{name:<16} {', '.join(factors):<70} {', '.join(instruments)}", file=out)
    return 0


async def _replay(args: argparse.Namespace, out: TextIO) -> int:
    from feeds.replay import Replay

    replay = Replay.open(args.replay)
    if replay.recording.source != args.name:
        print(f"error: expected a recording of {args.name}, got one of {replay.recording.source} in "
              f"{args.replay}", file=sys.stderr)
        return 2
    kinds = [FactorKind(args.kind)] if args.kind else replay.recording.kinds
    code = 0
    async with replay:
        for kind in kinds:
            try:
                outcome: SourceReading | SourceError = await replay.fetch(kind, args.instrument)
            except SourceError as exc:
                outcome, code = exc, 1
            _print_outcome(kind, outcome, args.json, out)
    return code


async def _try(args: argparse.Namespace, out: TextIO) -> int:
    source_cls = load_sources().get(args.name)
    if source_cls is None:
        make_source(args.name)  # raises UnknownSourceError listing the known names
    assert source_cls is not None
    if args.replay is not None:
        return await _replay(args, out)
    args.instrument = args.instrument or "BTC-USD"
    kinds = [FactorKind(args.kind)] if args.kind else sorted(source_cls.factors)
    simulator = None
    url = args.url
    if url is None:
        from feeds.simulator import MarketModel, VenueSimulator, simulated_venue_names

        if args.name not in simulated_venue_names():
            print(f"{args.name}: no simulated venue of that name; pass --url", file=sys.stderr)
            return 2
        simulator = VenueSimulator(MarketModel(args.seed), venues=[args.name])
        await simulator.start()
        url = simulator.venue_url(args.name)
    code = 0
    try:
        if args.stream:
            stream_url = args.stream_url or (
                simulator.stream_url(args.name) if simulator is not None else source_cls.default_stream_url)
            source = make_source(args.name, base_url=url, timeout=args.timeout, stream_url=stream_url or "")
            return await _stream(source, args, out)
        source = make_source(args.name, base_url=url, timeout=args.timeout)
        async with aiohttp.ClientSession() as session:
            for kind in kinds:
                try:
                    outcome: SourceReading | SourceError = await source.fetch(session, kind, args.instrument)
                except SourceError as exc:
                    outcome, code = exc, 1
                _print_outcome(kind, outcome, args.json, out)
    finally:
        if simulator is not None:
            await simulator.stop()
    return code


def _try_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return asyncio.run(_try(args, out))
    except FeedsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _stream(source: Source, args: argparse.Namespace, out: TextIO) -> int:
    """Print the first ``args.stream`` readings (and any refusal) of the source's stream."""
    cache = FeedCache({source.name: source}, [args.instrument])
    if not cache.streamed_targets():
        print(f"error: {source.name} streams nothing (streams: {', '.join(source.streams) or 'none'}, "
              f"stream URL: {source.stream_url or 'none'}); pass --stream-url or drop --stream", file=sys.stderr)
        return 2
    shown, failures, last = 0, 0, None
    async with aiohttp.ClientSession() as session:
        streaming = asyncio.create_task(cache.run_streams(session))
        try:
            async with asyncio.timeout(args.timeout + source.stream_silence):
                while shown < args.stream:
                    await cache.next_update()
                    health = cache.health[source.name]
                    if health.error_count > failures:
                        failures = health.error_count
                        print(f"{'stream':<14} ERROR {health.last_error_type}: {health.last_error}", file=out)
                    for reading in cache.readings(args.instrument, now=0.0):
                        if reading != last:
                            last, shown = reading, shown + 1
                            _print_outcome(reading.kind, reading, args.json, out)
        except TimeoutError:
            print(f"error: expected {args.stream} stream updates within {args.timeout + source.stream_silence:g}s, "
                  f"got {shown}", file=sys.stderr)
            return 1
        finally:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)
    return 1 if failures else 0


async def _record(args: argparse.Namespace, out: TextIO) -> int:
    from feeds.replay import INDEX, RecordingError, record

    if (args.out / INDEX).exists() and not args.force:
        raise RecordingError(
            f"expected an empty directory to record into, got {args.out} holding a recording; "
            f"choose another --out or pass --force to replace it"
        )
    kinds = [FactorKind(k) for k in args.kind] if args.kind else None
    recording, outcomes = await record(args.name, args.instrument, args.url, kinds, timeout=args.timeout)
    recording.save(args.out, force=args.force)
    for kind, outcome in outcomes:
        _print_outcome(kind, outcome, args.json, out)
    if not args.json:
        answers, factors = len(recording.exchanges), len(outcomes)
        print(f"recorded {answers} answer{'s' * (answers != 1)} for {factors} factor{'s' * (factors != 1)} in "
              f"{args.out}; replay: relayer sources try {args.name} --replay {args.out}", file=out)
    return 1 if any(isinstance(o, SourceError) for _, o in outcomes) else 0


def _record_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        return asyncio.run(_record(args, out))
    except FeedsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m feeds.cli sources list``."""
    parser = argparse.ArgumentParser(prog="relayer")
    add_sources_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""`relayer sources ...`: list the installed sources and try one against a venue.

``relayer sources list`` shows every source registered in the ``relayer.sources``
entry-point group and the risk factors and instruments it serves.
``relayer sources try NAME --instrument BTC-USD [--kind K] [--url URL]`` fetches once
and prints the parsed readings; without ``--url`` it starts the simulated venues
in-process and asks those, so it works offline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

import aiohttp

from feeds.errors import FeedsError, SourceError
from feeds.kinds import KINDS, FactorKind
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
    trying.add_argument("--instrument", default="BTC-USD")
    trying.add_argument("--kind", choices=[k.value for k in FactorKind if not KINDS[k].derived],
                        help="one factor (default: every factor the source serves)")
    trying.add_argument("--url", help="the venue's base URL (default: the simulated venue, in-process)")
    trying.add_argument("--timeout", type=float, default=5.0)
    trying.add_argument("--seed", type=int, default=0, help="simulator seed (without --url)")
    trying.add_argument("--json", action="store_true")
    trying.set_defaults(func=_try_command)


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


async def _try(args: argparse.Namespace, out: TextIO) -> int:
    source_cls = load_sources().get(args.name)
    if source_cls is None:
        make_source(args.name)  # raises UnknownSourceError listing the known names
    assert source_cls is not None
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
        source = make_source(args.name, base_url=url, timeout=args.timeout)
        async with aiohttp.ClientSession() as session:
            for kind in kinds:
                try:
                    reading = await source.fetch(session, kind, args.instrument)
                except SourceError as exc:
                    code = 1
                    if args.json:
                        print(json.dumps({"kind": str(kind), "error": type(exc).__name__, "message": str(exc)}), file=out)
                    else:
                        print(f"{kind:<14} ERROR {type(exc).__name__}: {exc}", file=out)
                    continue
                if args.json:
                    print(reading.model_dump_json(), file=out)
                else:
                    print(f"{kind:<14} {reading.price}  ({KINDS[kind].unit}; observed_at {reading.observed_at:.3f}, "
                          f"{reading.latency_ms:.0f} ms)", file=out)
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


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m feeds.cli sources list``."""
    parser = argparse.ArgumentParser(prog="relayer")
    add_sources_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

"""Fetching signed reports from relayer nodes' HTTP APIs, with failover.

Node URLs are tried in the order given: a node that is down, times out, answers an HTTP error
or something that is not a report is passed over for the next, and when every one fails the
error lists each URL's failure. Whatever a node serves is only a claim until
:class:`relayer.client.verify.ReportVerifier` has checked it against the chain.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from relayer.client.errors import MalformedReport, NodeFailure, NodesUnavailable, ReportNotFound
from relayer.client.report import SignedReport, parse_report

FETCH_TIMEOUT_S = 5.0
# A stream sends a comment at least every 15 s; silence longer than this is a dead node.
STREAM_IDLE_S = 45.0
MAX_BODY_BYTES = 4 << 20  # a report with 1,000 feeds is ~100 kB


class ReportFetcher:
    """Signed reports from several node URLs, the first that answers well winning."""

    def __init__(self, urls: Sequence[str], *, timeout: float = FETCH_TIMEOUT_S,
                 session: aiohttp.ClientSession | None = None) -> None:
        if not urls:
            raise ValueError("give at least one node URL, e.g. http://127.0.0.1:8788")
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.timeout = timeout
        self._session = session
        self._own_session = session is None
        # Reports a node dropped from this client's stream buffer because it read too slowly.
        self.missed = 0

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> ReportFetcher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _get(self, url: str) -> tuple[int, Any]:
        async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as response:
            body = await response.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise MalformedReport(f"answer longer than {MAX_BODY_BYTES} bytes")
            try:
                return response.status, json.loads(body)
            except ValueError:
                raise MalformedReport(f"HTTP {response.status}, not JSON: {body[:120]!r}") from None

    async def _one(self, base: str, path: str) -> SignedReport | NodeFailure:
        """One node's report at ``path``, or why it gave none."""
        try:
            status, body = await self._get(base + path)
            if status == 200:
                return parse_report(body, source=base)
            detail = body.get("error") if isinstance(body, dict) else None
            return NodeFailure(base, f"HTTP {status}: {detail or str(body)[:160]}", not_found=status == 404)
        except MalformedReport as exc:
            return NodeFailure(base, f"not a report: {exc}")
        except TimeoutError:
            return NodeFailure(base, f"no answer within {self.timeout:g} s")
        except aiohttp.ClientError as exc:
            return NodeFailure(base, f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _unavailable(what: str, failures: Sequence[NodeFailure]) -> NodesUnavailable:
        if any(f.not_found for f in failures):  # the others may be down, but those that answered do not keep it
            return ReportNotFound(what, failures)
        return NodesUnavailable(what, failures)

    async def _first(self, path: str, what: str) -> SignedReport:
        failures: list[NodeFailure] = []
        for base in self.urls:
            answer = await self._one(base, path)
            if isinstance(answer, SignedReport):
                return answer
            failures.append(answer)
        raise self._unavailable(what, failures)

    async def latest(self) -> SignedReport:
        """The last attested report that carries a feed, from the first node that has one."""
        return await self._first("/api/reports/latest", "latest report")

    async def freshest(self) -> SignedReport:
        """The latest report of every node, asked at once, the highest (epoch, round) winning
        (the first URL's on a tie): for a pull-path transaction, whose report should be the
        newest any node has, not the first node's. Raises like :meth:`latest` when none has one."""
        return (await self.newest_first())[0]

    async def newest_first(self) -> list[SignedReport]:
        """Every node's latest report, asked at once, highest (epoch, round) first (URL order on
        a tie). A node still serving a replaced committee's report may rank first: a caller that
        verifies takes the first that passes. Raises like :meth:`latest` when none has one."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._one(base, "/api/reports/latest")) for base in self.urls]
        answers = [t.result() for t in tasks]
        reports = [a for a in answers if isinstance(a, SignedReport)]
        if not reports:
            raise self._unavailable("latest report", [a for a in answers if isinstance(a, NodeFailure)])
        return sorted(reports, key=lambda r: (r.epoch, r.round), reverse=True)

    async def at(self, epoch: int, round: int, *, config_digest: bytes | None = None) -> SignedReport:
        """The report of (epoch, round) (under ``config_digest``, else the one attested last)."""
        query = f"?config_digest=0x{config_digest.hex()}" if config_digest is not None else ""
        return await self._first(f"/api/reports/{epoch}/{round}{query}", f"report of epoch {epoch} round {round}")

    async def stream(self) -> AsyncIterator[SignedReport]:
        """Reports as they are attested, from the first node that accepts the stream; when it
        goes away, from the next (round-robin). Raises :class:`NodesUnavailable` once every node
        failed in a row. Reports missed while switching can be fetched by round."""
        failures: list[NodeFailure] = []
        k = 0
        while len(failures) < len(self.urls):
            base = self.urls[k % len(self.urls)]
            k += 1
            try:
                async for report in self._stream_one(base):
                    failures.clear()
                    yield report
                failures.append(NodeFailure(base, "the stream ended"))
            except MalformedReport as exc:
                failures.append(NodeFailure(base, f"not a report: {exc}"))
            except TimeoutError:
                failures.append(NodeFailure(base, f"silent for {STREAM_IDLE_S:g} s"))
            except aiohttp.ClientError as exc:
                failures.append(NodeFailure(base, f"{type(exc).__name__}: {exc}"))
        raise NodesUnavailable("report stream", failures)

    async def _stream_one(self, base: str) -> AsyncIterator[SignedReport]:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=STREAM_IDLE_S)
        async with self._client().get(base + "/api/reports/stream", timeout=timeout) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                                  message=(await response.text())[:160])
            event, data = "", []
            async for raw in response.content:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line:
                    if event == "missed" and data:
                        try:
                            self.missed += int(json.loads(data[0])["missed"])
                        except (ValueError, KeyError, TypeError):
                            raise MalformedReport(f"missed event without a count: {data[0][:120]!r}") from None
                    if event == "report" and data:
                        try:
                            body = json.loads("\n".join(data))
                        except ValueError:
                            raise MalformedReport(f"stream data is not JSON: {data[0][:120]!r}") from None
                        yield parse_report(body, source=base)
                    event, data = "", []

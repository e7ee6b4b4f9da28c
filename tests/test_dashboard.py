"""The dashboard in headless Chromium (Debian's package, installed by `make setup`).

Drives the browser over the DevTools protocol (aiohttp websockets): the page loads, shows
both feeds and the committee, and updates as reports land. The screenshot is kept in
`test-artifacts/dashboard.png` (or $TEST_ARTIFACTS). The page is watched updating as every
report lands with every feed (`--feed-selection all`): charts and the realized vol of landed
values need several spot landings, which the devnet's default `trigger` policy sends only
when the price moves 25 bps.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.devnet_proc import DevnetProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--window-size=1280,900"]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetProcess]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed; `make setup` installs Debian's chromium")
    dn = DevnetProcess(tmp_path_factory.mktemp("dashboard-devnet"), "--feed-selection", "all")
    try:
        dn.wait_first_report()
        yield dn
    finally:
        dn.stop()


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        await self.ws.send_json({"id": mid, "method": method, "params": params})
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data.get("id") == mid:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                return dict(data.get("result", {}))
        raise AssertionError("DevTools connection closed")

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            while not (value := await self.eval(expression)):
                await asyncio.sleep(0.25)
            return value


async def test_dashboard_shows_feeds_and_updates_as_reports_land(devnet: DevnetProcess, tmp_path: Path) -> None:
    info = devnet.info
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir()
    browser = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or not port_file.read_text().strip():
                await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with session.ws_connect(page_ws, max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Page.navigate", url=info["nodes"][0]["api"] + "/")
                # Loads and shows both feeds with a value, and the committee of four.
                rows = await page.wait_for(
                    "(() => { const r = [...document.querySelectorAll('#feeds tbody tr')]"
                    ".filter(tr => tr.children[1].textContent !== '-'); return r.length >= 2 ? "
                    "r.map(tr => tr.dataset.feed) : null })()", timeout=20)
                assert {"BTC-USD", "ETH-USD"} <= set(rows)
                assert await page.wait_for("document.querySelectorAll('#committee tbody tr').length === 4", 10)
                # Updates as reports land: the landed counter (fed by server-sent events) rises,
                # and the on-chain round shown for a feed moves on.
                first_round = await page.eval(
                    "document.querySelector('#feeds tr[data-feed=\"BTC-USD\"]').children[2].textContent")
                await page.wait_for("Number(document.getElementById('landed-count').textContent) >= 2", 30)
                await page.wait_for(
                    "document.querySelector('#feeds tr[data-feed=\"BTC-USD\"]').children[2].textContent "
                    f"!== {json.dumps(first_round)}", 15)
                assert await page.wait_for("document.querySelectorAll('#rounds tbody tr').length > 0", 10)
                assert await page.wait_for(
                    "document.querySelectorAll('.chart[data-feed] polyline[points]').length >= 2", 15)
                await page.wait_for("!document.querySelector('#feeds tr[data-feed=\"BTC-USD\"]')"
                                    ".textContent.includes('waiting')", 20)
                # The devnet deploys a RiskGate: each spot feed shows its market's initial and
                # maintenance margin as the gate returns them, and the volatility column holds
                # the landed values' realized vol.
                margin = await page.wait_for(
                    "(() => { const t = document.querySelector('#feeds tr[data-feed=\"BTC-USD\"] .feed-margin')"
                    ".textContent; return t.includes('BTC-PERP') ? t : null })()", 15)
                assert re.fullmatch(r"\d+\.\d\d% / \d+\.\d\d% \(BTC-PERP\)", margin), margin
                assert info["risk_gate"] in await page.eval("document.getElementById('risk-gate').textContent")
                assert "%" in await page.eval(
                    "document.querySelector('#feeds tr[data-feed=\"BTC-USD\"] .feed-vol').textContent")
                # Why each feed is in the latest report: under `all`, every feed every round.
                assert await page.wait_for(
                    "document.querySelector('#feeds tr[data-feed=\"BTC-USD\"] .feed-why').textContent "
                    "=== 'every round'", 10)
                # Against its promise now: 25 bps, and the time left to its heartbeat.
                now = await page.wait_for(
                    "(() => { const t = document.querySelector('#feeds tr[data-feed=\"BTC-USD\"] .feed-now')"
                    ".textContent; return t.includes('/ 25 bps') ? t : null })()", 15)
                assert now.endswith(" s"), now
                assert "BTC-USD: every round" in await page.eval(
                    "[...document.querySelectorAll('#rounds .round-why')].map(td => td.textContent).join(' ')")
                shot = await page.send("Page.captureScreenshot", format="png")
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "dashboard.png").write_bytes(png)

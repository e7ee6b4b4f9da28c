"""Reader of a deployed RiskGate: its markets (inputs, the decimals it read, curves), and the
margins it sets now.

Governance sets one curve per market (``setCurve``); the contract keeps no list of its
markets, so they are found through its ``CurveSet`` events, read block range by block
range. The margins are the contract's own ``margins(marketId)`` view: what a protocol
gating on this RiskGate demands at the current block, never a local recomputation.
``set_curve`` is there for governance scripts and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from web3 import AsyncWeb3

from aggregation.margin import MarginCurve, Margins, Reading, compute_margins
from relayer.chain.codec import keccak
from relayer.chain.contract import ContractClient, deploy_contract, require_success

__all__ = [
    "NO_FEED", "MarginCase", "MarketInputs", "MarketMargins", "RiskGateClient", "RiskMarket", "deploy_risk_gate",
    "market_id_bytes",
]



@dataclass(frozen=True)
class MarginCase:
    """One computeMargins input: a curve and the readings of a market (None: unused)."""

    curve: MarginCurve
    realized_vol: Reading
    implied_vol: Reading | None = None
    depth: Reading | None = None
    dispersion: Reading | None = None
    funding: Reading | None = None
    open_interest: Reading | None = None

    def optional(self) -> tuple[Reading | None, ...]:
        """The optional readings in the contract's order."""
        return (self.implied_vol, self.depth, self.dispersion, self.funding, self.open_interest)

    def mirror(self) -> Margins:
        """What aggregation/margin.py computes for this case."""
        return compute_margins(self.curve, self.realized_vol, implied_vol=self.implied_vol, depth=self.depth,
                               dispersion=self.dispersion, funding=self.funding, open_interest=self.open_interest)


NO_FEED = 0xFFFF  # RiskGate.NO_FEED: the market does not use this input
_CURVE_TYPE = "(uint32,uint32,uint32,uint32,uint64,uint32,uint32,uint32,uint32,uint32,uint32,uint32,uint64)"
_INPUTS_TYPE = "(uint16,uint16,uint16,uint16,uint16,uint16,uint32)"
_MARKET_TYPE = f"({_INPUTS_TYPE},uint8,uint8,uint8,uint8,uint8,uint8,{_CURVE_TYPE})"
CURVE_SET_TOPIC = "0x" + keccak(f"CurveSet(bytes32,{_MARKET_TYPE})".encode()).hex()


def market_id_bytes(name: str) -> bytes:
    """A market id as governance usually writes it: the name in ASCII, right-padded to 32 bytes."""
    raw = name.encode()
    if len(raw) > 32:
        raise ValueError(f"a market name fits 32 bytes, got {len(raw)} bytes in {name!r}")
    return raw.ljust(32, b"\x00")


def _feed(index: int) -> int | None:
    return None if index == NO_FEED else index


@dataclass(frozen=True)
class MarketInputs:
    """The feeds a market reads (None: not used) and the oldest data it accepts for new risk."""

    realized_vol_feed: int
    max_age: int
    implied_vol_feed: int | None = None
    depth_feed: int | None = None
    dispersion_feed: int | None = None
    funding_feed: int | None = None
    open_interest_feed: int | None = None

    def feeds(self) -> tuple[int | None, ...]:
        """The input feeds in the contract's order: realized vol, implied vol, depth,
        dispersion, funding rate, open interest."""
        return (self.realized_vol_feed, self.implied_vol_feed, self.depth_feed, self.dispersion_feed,
                self.funding_feed, self.open_interest_feed)

    def as_tuple(self) -> tuple[int, ...]:
        """The ABI tuple for ``RiskGate.setCurve``."""
        return (*(NO_FEED if feed is None else feed for feed in self.feeds()), self.max_age)

    @classmethod
    def from_tuple(cls, raw: Sequence[Any]) -> MarketInputs:
        rv, iv, depth, dispersion, funding, open_interest, max_age = (int(v) for v in raw)
        return cls(rv, max_age, _feed(iv), _feed(depth), _feed(dispersion), _feed(funding), _feed(open_interest))


@dataclass(frozen=True)
class RiskMarket:
    """One market as governance last set it: its inputs, the decimals RiskGate read for each
    input feed (in ``MarketInputs.feeds`` order; 0 for an unused one), its curve."""

    market_id: bytes
    inputs: MarketInputs
    decimals: tuple[int, ...]
    curve: MarginCurve

    @classmethod
    def from_abi(cls, market_id: bytes, raw: Sequence[Any]) -> RiskMarket:
        inputs, *decimals, curve = raw
        return cls(market_id, MarketInputs.from_tuple(inputs), tuple(int(d) for d in decimals),
                   MarginCurve(*(int(v) for v in curve)))

    def case(self, values: Sequence[int | None]) -> MarginCase:
        """The computeMargins case of this market for raw ``values`` of its input feeds (in
        ``MarketInputs.feeds`` order; None for an unused input)."""
        readings = [None if v is None else Reading(v, d) for v, d in zip(values, self.decimals, strict=True)]
        realized = readings[0]
        if realized is None:
            raise ValueError("a market always reads realized volatility; got no value for it")
        return MarginCase(self.curve, realized, *readings[1:])

    @property
    def vol_feed(self) -> int:
        return self.inputs.realized_vol_feed

    @property
    def depth_feed(self) -> int | None:
        return self.inputs.depth_feed

    @property
    def name(self) -> str:
        """The id as text when it is padded printable ASCII (``ETH-PERP``), else its hex."""
        text = self.market_id.rstrip(b"\x00")
        if text and all(0x20 <= b < 0x7F for b in text):
            return text.decode()
        return "0x" + self.market_id.hex()


@dataclass(frozen=True)
class MarketMargins:
    """``margins(marketId)``: initial and maintenance margin (bps), and whether every input the
    market uses is fresh, untripped and non-negative (a risk-increasing action passes only then)."""

    initial_bps: int
    maintenance_bps: int
    usable: bool


async def deploy_risk_gate(w3: AsyncWeb3[Any], key: bytes, oracle: str) -> str:
    """Deploy a RiskGate reading ``oracle``, owned by ``key``'s account; returns its address."""
    return await deploy_contract(w3, key, "RiskGate", AsyncWeb3.to_checksum_address(oracle))


class RiskGateClient(ContractClient):
    ARTIFACT = "RiskGate"

    async def oracle(self) -> str:
        """The QuorumOracle this gate reads its inputs from."""
        return str(await self._call("oracle"))

    async def margins(self, market_id: bytes, *, block: str = "latest") -> MarketMargins:
        """Never reverts on market inputs; raises ``ContractRevert`` (``UnknownMarket``) as the
        contract does. ``block``: a block number (hex) or tag to read at."""
        initial, maintenance, usable = await self._call("margins", market_id, block=block)
        return MarketMargins(initial_bps=int(initial), maintenance_bps=int(maintenance), usable=bool(usable))

    async def check_action(self, market_id: bytes, increases_risk: bool) -> Margins:
        """``checkAction``: a risk-increasing check raises ``ContractRevert`` (``FeedTripped``,
        ``FeedStale``, ``NegativeRiskInput``) when an input the market uses is unfit; a
        risk-reducing one always returns the margins."""
        initial, maintenance = await self._call("checkAction", market_id, increases_risk)
        return Margins(int(initial), int(maintenance))

    async def market(self, market_id: bytes, *, block: str = "latest") -> RiskMarket:
        return RiskMarket.from_abi(market_id, await self._call("market", market_id, block=block))

    async def curve_events(self, from_block: int, to_block: int) -> list[RiskMarket]:
        """Every ``CurveSet`` in ``[from_block, to_block]``, oldest first (a market may repeat)."""
        out = []
        for entry in await self._logs("CurveSet", from_block, to_block, CURVE_SET_TOPIC):
            (market,) = abi_decode([_MARKET_TYPE], bytes.fromhex(entry["data"][2:]))
            out.append(RiskMarket.from_abi(bytes.fromhex(entry["topics"][1][2:]), market))
        return out

    async def set_curve(self, owner_key: bytes, market_id: bytes, inputs: MarketInputs, curve: MarginCurve) -> None:
        """Governance: set (or replace) a market's inputs and curve; RiskGate reads each input
        feed's decimals from the oracle now."""
        receipt = await self._transact(owner_key, "setCurve", market_id, inputs.as_tuple(), curve.as_tuple())
        require_success(receipt, "setCurve")

    async def compute_margins(self, cases: Sequence[MarginCase], *, batch: int = 500) -> list[Margins]:
        """The contract's own ``computeMargins`` on each case, in JSON-RPC batches of ``batch``
        calls; for checking a mirror or a curve against the deployed code without sending
        anything."""
        unused = (0, 0, False)
        out: list[Margins] = []
        for start in range(0, len(cases), batch):
            calls = [("computeMargins", (
                case.curve.as_tuple(),
                [case.realized_vol.as_abi(), *(r.as_abi() if r is not None else unused for r in case.optional())],
            )) for case in cases[start:start + batch]]
            out.extend(Margins(int(im), int(mm)) for im, mm in await self._call_many(calls))
        return out

"""Reader of a deployed RiskGate: its markets, their curves, and the margins it sets now.

Governance sets one curve per market (``setCurve``); the contract keeps no list of its
markets, so they are found through its ``CurveSet`` events, read block range by block
range. The margins are the contract's own ``margins(marketId)`` view: what a protocol
gating on this RiskGate demands at the current block, never a local recomputation.
``set_curve`` is there for governance scripts and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from web3 import AsyncWeb3

from aggregation.margin import MarginCurve
from relayer.chain.codec import keccak
from relayer.chain.contract import ContractClient, deploy_contract, require_success
from relayer.chain.errors import RpcError
from relayer.chain.rpc import RpcCallError

__all__ = ["MarketMargins", "RiskGateClient", "RiskMarket", "deploy_risk_gate", "market_id_bytes"]

_CURVE_TYPE = "(uint32,uint32,uint32,uint64,uint32,uint32,uint32,uint32)"
CURVE_SET_TOPIC = "0x" + keccak(f"CurveSet(bytes32,uint16,uint16,{_CURVE_TYPE})".encode()).hex()


def market_id_bytes(name: str) -> bytes:
    """A market id as governance usually writes it: the name in ASCII, right-padded to 32 bytes."""
    raw = name.encode()
    if len(raw) > 32:
        raise ValueError(f"a market name fits 32 bytes, got {len(raw)} bytes in {name!r}")
    return raw.ljust(32, b"\x00")


@dataclass(frozen=True)
class RiskMarket:
    """One market as governance last set it: its two input feeds and its curve."""

    market_id: bytes
    vol_feed: int
    depth_feed: int
    curve: MarginCurve

    @property
    def name(self) -> str:
        """The id as text when it is padded printable ASCII (``ETH-PERP``), else its hex."""
        text = self.market_id.rstrip(b"\x00")
        if text and all(0x20 <= b < 0x7F for b in text):
            return text.decode()
        return "0x" + self.market_id.hex()


@dataclass(frozen=True)
class MarketMargins:
    """``margins(marketId)``: initial and maintenance margin (bps), and whether both input
    feeds are fresh and untripped (a risk-increasing action passes only then)."""

    initial_bps: int
    maintenance_bps: int
    usable: bool


async def deploy_risk_gate(w3: AsyncWeb3[Any], key: bytes, oracle: str) -> str:
    """Deploy a RiskGate reading ``oracle``, owned by ``key``'s account; returns its address."""
    return await deploy_contract(w3, key, "RiskGate", AsyncWeb3.to_checksum_address(oracle))


class RiskGateClient(ContractClient):
    ARTIFACT = "RiskGate"

    async def oracle(self) -> str:
        """The QuorumOracle this gate reads its volatility and depth from."""
        return str(await self._call("oracle"))

    async def margins(self, market_id: bytes) -> MarketMargins:
        """Raises ``ContractRevert`` (``UnknownMarket``, ``NegativeRiskInput``) as the contract does."""
        initial, maintenance, usable = await self._call("margins", market_id)
        return MarketMargins(initial_bps=int(initial), maintenance_bps=int(maintenance), usable=bool(usable))

    async def market(self, market_id: bytes) -> RiskMarket:
        vol_feed, depth_feed, _exists, curve = await self._call("market", market_id)
        return RiskMarket(market_id, int(vol_feed), int(depth_feed), MarginCurve(*(int(v) for v in curve)))

    async def curve_events(self, from_block: int, to_block: int) -> list[RiskMarket]:
        """Every ``CurveSet`` in ``[from_block, to_block]``, oldest first (a market may repeat)."""
        try:
            logs = await self.rpc.request("eth_getLogs", [{
                "address": self.address, "topics": [CURVE_SET_TOPIC],
                "fromBlock": hex(from_block), "toBlock": hex(to_block),
            }])
        except RpcCallError as exc:
            raise RpcError(f"CurveSet logs {from_block}..{to_block}: {exc}") from exc
        out = []
        for entry in logs:
            vol_feed, depth_feed, curve = abi_decode(["uint16", "uint16", _CURVE_TYPE],
                                                     bytes.fromhex(entry["data"][2:]))
            out.append(RiskMarket(bytes.fromhex(entry["topics"][1][2:]), int(vol_feed), int(depth_feed),
                                  MarginCurve(*(int(v) for v in curve))))
        return out

    async def set_curve(
        self, owner_key: bytes, market_id: bytes, vol_feed: int, depth_feed: int, curve: MarginCurve
    ) -> None:
        """Governance: set (or replace) a market's input feeds and curve."""
        receipt = await self._transact(owner_key, "setCurve", market_id, vol_feed, depth_feed, curve.as_tuple())
        require_success(receipt, "setCurve")

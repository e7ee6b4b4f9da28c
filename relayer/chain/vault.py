"""Client of a deployed ``MarginVault`` and its ERC-20 test collateral, and the vault's unit
arithmetic in Python.

Every vault action is static-checked before it is sent (``eth_estimateGas`` against the
pending block), so a refusal surfaces as a :class:`~relayer.chain.errors.VaultRevert` whose
``reason`` is the contract's custom error (``FeedStale``, ``FeedTripped``, ``CoolingDown``,
``ActionLimitReached``, ``InsufficientMargin``, ``NotLiquidatable``, ...; RiskGate's and the
token's errors pass through the vault under their own names) and whose ``error_args`` are
decoded, before any gas is spent.

Units (docs/contracts.md, "MarginVault"): sizes in base units with :data:`SIZE_DECIMALS`
(1 BTC = 10**18), prices as the oracle stores them (8 decimals for USD spot), amounts in the
collateral token's units. :func:`position_value` and :func:`requirement` are the contract's
formulas, integer for integer, so a caller can predict what the vault will demand.

The pull path: :meth:`MarginVaultClient.submit_and_call` brings a report the committee signed
and one vault action (:meth:`MarginVaultClient.encode_action`) in one transaction, the action
running as the sender on data at least as new as the report's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import AsyncWeb3

from relayer.chain.codec import pack_report_signatures
from relayer.chain.contract import ContractClient, HttpWeb3, deploy_contract, require_success
from relayer.chain.errors import ChainError, VaultRevert
from relayer.chain.oracle import ReportSignatures
from relayer.chain.risk_gate import RiskGateClient

__all__ = [
    "SIZE_DECIMALS", "VAULT_ACTIONS", "AccountView", "CollateralClient", "MarginVaultClient", "VaultMarket", "VaultParameters",
    "VaultPosition", "deploy_test_collateral", "deploy_vault", "position_value", "requirement",
]

SIZE_DECIMALS = 18  # MarginVault.SIZE_DECIMALS
# What MarginVault.submitAndCall runs (any other selector is ActionNotAllowed).
VAULT_ACTIONS = frozenset({"deposit", "withdraw", "open", "increase", "reduce", "close", "liquidate"})
BPS = 10_000


def position_value(size: int, price: int, price_decimals: int, collateral_decimals: int) -> int:
    """``size * price / 10**(18 + price_decimals - collateral_decimals)``, truncated toward zero
    as Solidity's signed division is: a position's signed value in collateral units."""
    product = size * price
    divisor: int = 10 ** (SIZE_DECIMALS + price_decimals - collateral_decimals)
    quotient = abs(product) // divisor
    return quotient if product >= 0 else -quotient


def requirement(value: int, bps: int) -> int:
    """A margin requirement: ``|value| * bps / 10000``, rounded up."""
    return (abs(value) * bps + BPS - 1) // BPS


@dataclass(frozen=True)
class VaultParameters:
    """Governance's heuristics: at most ``max_actions_per_window`` risk-increasing actions per
    account per ``window_blocks`` blocks (0: no limit); ``cooldown_s`` after a feed seen in
    trouble has a new value; the liquidator's reward in bps of the notional (<= 1000)."""

    max_actions_per_window: int = 0
    window_blocks: int = 0
    cooldown_s: int = 0
    liquidation_reward_bps: int = 0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.max_actions_per_window, self.window_blocks, self.cooldown_s, self.liquidation_reward_bps)


@dataclass(frozen=True)
class VaultMarket:
    price_feed: int
    price_decimals: int
    value_exponent: int  # 18 + price decimals - collateral decimals
    listed: bool


@dataclass(frozen=True)
class VaultPosition:
    size: int  # base units, SIZE_DECIMALS; > 0 long
    open_notional: int  # collateral units paid in (long > 0, short < 0)


@dataclass(frozen=True)
class AccountView:
    """One account in one market at the latest attested price and RiskGate's margins."""

    size: int
    open_notional: int
    collateral: int
    price: int
    price_usable: bool
    equity: int
    initial_requirement: int
    maintenance_requirement: int


async def deploy_test_collateral(w3: HttpWeb3, key: bytes, decimals: int, symbol: str = "tUSD") -> str:
    """Deploy a ``TestCollateral`` (anyone may mint) with ``decimals``; returns its address."""
    return await deploy_contract(w3, key, "TestCollateral", f"Test {symbol}", symbol, decimals)


async def deploy_vault(w3: HttpWeb3, owner_key: bytes, risk_gate: str, collateral: str) -> str:
    """Deploy a MarginVault over ``risk_gate`` (and its oracle) taking ``collateral``; owned by
    ``owner_key``'s account. Returns its address."""
    return await deploy_contract(
        w3, owner_key, "MarginVault", AsyncWeb3.to_checksum_address(risk_gate),
        AsyncWeb3.to_checksum_address(collateral))


class CollateralClient(ContractClient):
    ARTIFACT = "TestCollateral"

    async def mint(self, key: bytes, to: str, amount: int) -> None:
        require_success(await self._transact(key, "mint", AsyncWeb3.to_checksum_address(to), amount), "mint")

    async def approve(self, key: bytes, spender: str, amount: int) -> None:
        receipt = await self._transact(key, "approve", AsyncWeb3.to_checksum_address(spender), amount)
        require_success(receipt, "approve")

    async def balance_of(self, account: str) -> int:
        return int(await self._call("balanceOf", AsyncWeb3.to_checksum_address(account)))

    async def decimals(self) -> int:
        return int(await self._call("decimals"))


class MarginVaultClient(ContractClient):
    ARTIFACT = "MarginVault"

    async def _send(self, key: bytes, fn: str, *args: Any) -> dict[str, Any]:
        receipt = await self._transact(key, fn, *args, error_cls=VaultRevert)
        require_success(receipt, fn)
        return receipt

    # -- governance -----------------------------------------------------------------

    async def list_market(self, owner_key: bytes, market_id: bytes, price_feed: int) -> None:
        """List RiskGate's market ``market_id`` (its curve must exist), priced by ``price_feed``."""
        await self._send(owner_key, "listMarket", market_id, price_feed)

    async def set_parameters(self, owner_key: bytes, parameters: VaultParameters) -> None:
        await self._send(owner_key, "setParameters", parameters.as_tuple())

    # -- actions (each returns its receipt: gasUsed, logs, ...) ---------------------

    async def deposit(self, key: bytes, market_id: bytes, amount: int) -> dict[str, Any]:
        return await self._send(key, "deposit", market_id, amount)

    async def withdraw(self, key: bytes, market_id: bytes, amount: int) -> dict[str, Any]:
        return await self._send(key, "withdraw", market_id, amount)

    async def fund_pool(self, key: bytes, amount: int) -> dict[str, Any]:
        return await self._send(key, "fundPool", amount)

    async def open(self, key: bytes, market_id: bytes, size: int) -> dict[str, Any]:
        """Open ``size`` base units (> 0 long, < 0 short) on a flat account."""
        return await self._send(key, "open", market_id, size)

    async def increase(self, key: bytes, market_id: bytes, amount: int) -> dict[str, Any]:
        return await self._send(key, "increase", market_id, amount)

    async def reduce(self, key: bytes, market_id: bytes, amount: int) -> dict[str, Any]:
        return await self._send(key, "reduce", market_id, amount)

    async def close(self, key: bytes, market_id: bytes) -> dict[str, Any]:
        return await self._send(key, "close", market_id)

    async def liquidate(self, key: bytes, account: str, market_id: bytes) -> dict[str, Any]:
        return await self._send(key, "liquidate", AsyncWeb3.to_checksum_address(account), market_id)

    async def sync_feeds(self, key: bytes, market_id: bytes) -> dict[str, Any]:
        """Record the market's feeds that are in trouble now, so their cool-down applies."""
        return await self._send(key, "syncFeeds", market_id)

    # -- the pull path: a signed report and an action in one transaction ---------------

    def encode_action(self, fn: str, *args: Any) -> bytes:
        """The calldata of one vault action (``encode_action("open", market_id, size)``), for
        :meth:`submit_and_call`; only the actions in :data:`VAULT_ACTIONS`."""
        if fn not in VAULT_ACTIONS:
            raise ChainError(f"submitAndCall runs one of {sorted(VAULT_ACTIONS)}, got {fn!r}; call it directly instead")
        if fn == "liquidate" and args:
            args = (AsyncWeb3.to_checksum_address(args[0]), *args[1:])
        return self._function(fn).encode(args)

    async def submit_and_call(
        self, key: bytes, config_digest: bytes, epoch: int, round: int, updates: bytes,
        signatures: ReportSignatures, action: bytes,
    ) -> dict[str, Any]:
        """Submit a signed report to the oracle and run ``action`` (from :meth:`encode_action`)
        as ``key``'s account, in one transaction. Feeds of the report not newer than the stored
        ones are skipped (someone landed it first): the action runs on what is stored. A refusal
        raises :class:`VaultRevert` before any gas is spent: the oracle's own error for the
        report (``SignerMismatch``, ``ConfigDigestMismatch``, ``Paused``, ...), the vault's for the
        action (``FeedStale``, ``InsufficientMargin``, ``ActionNotAllowed``, ...)."""
        packed = pack_report_signatures(signatures)
        return await self._send(key, "submitAndCall", config_digest, epoch, round, updates, packed.signer_bitmask,
                                packed.signatures, action)

    # -- reads ------------------------------------------------------------------------

    async def oracle(self) -> str:
        """The QuorumOracle the vault (and its RiskGate) reads."""
        return str(await self._call("oracle"))

    async def risk_gate(self) -> str:
        return str(await self._call("riskGate"))

    async def market_feeds(self, market_id: bytes) -> list[int]:
        """The oracle feeds a listed market reads: its price feed, then RiskGate's inputs for it
        (the feeds ``syncFeeds`` records). Raises ``VaultRevert`` (``MarketNotListed``) for a
        market the vault does not list."""
        listed = await self.market(market_id)
        if not listed.listed:
            raise VaultRevert(f"the vault lists no market 0x{market_id.hex()}", reason="MarketNotListed",
                              error_args=(market_id,))
        inputs = (await RiskGateClient(self.w3, await self.risk_gate()).market(market_id)).inputs
        return [listed.price_feed, *(feed for feed in inputs.feeds() if feed is not None)]

    async def market(self, market_id: bytes) -> VaultMarket:
        feed, decimals, exponent, listed = await self._call("market", market_id)
        return VaultMarket(int(feed), int(decimals), int(exponent), bool(listed))

    async def parameters(self) -> VaultParameters:
        return VaultParameters(*(int(v) for v in await self._call("parameters")))

    async def position(self, account: str, market_id: bytes) -> VaultPosition:
        size, open_notional = await self._call("position", AsyncWeb3.to_checksum_address(account), market_id)
        return VaultPosition(int(size), int(open_notional))

    async def collateral_of(self, account: str, market_id: bytes) -> int:
        return int(await self._call("collateralOf", AsyncWeb3.to_checksum_address(account), market_id))

    async def account_view(self, account: str, market_id: bytes) -> AccountView:
        raw: Sequence[Any] = await self._call("accountView", AsyncWeb3.to_checksum_address(account), market_id)
        size, notional, collateral, price, usable, equity, initial, maintenance = raw
        return AccountView(int(size), int(notional), int(collateral), int(price), bool(usable), int(equity),
                           int(initial), int(maintenance))

    async def pool(self) -> int:
        """The pool's collateral: negative is a deficit (bad debt, profits paid beyond it)."""
        return int(await self._call("pool"))

    async def trouble_round(self, feed: int) -> int:
        """The round at which the vault last saw ``feed`` in trouble (0: none pending)."""
        return int(await self._call("troubleRound", feed))

    async def recovered_at(self, feed: int) -> int:
        """When the vault recorded ``feed`` usable again after its trouble (0: not yet); the
        cool-down runs from it."""
        return int(await self._call("recoveredAt", feed))

    async def actions_in_window(self, account: str) -> tuple[int, int]:
        """(current window, risk-increasing actions ``account`` made in it)."""
        window, count = await self._call("actionsInWindow", AsyncWeb3.to_checksum_address(account))
        return int(window), int(count)


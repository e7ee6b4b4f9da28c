"""Typed async wrapper around the deployed QuorumOracle and FeedProxy contracts.

A report reaches the oracle three ways, all in ``transmit``'s encoding: ``transmit`` (the
committee's transmitters), :meth:`QuorumOracleClient.submit_report` (anyone: the pull path)
and :meth:`QuorumOracleClient.verify_report` (a read: the report's values, nothing stored).
Every state-changing call is first checked against the pending block (``eth_estimateGas``)
so a revert surfaces as a :class:`ContractRevert` / :class:`TransmitError` carrying the
custom error's name, before any gas is spent. Transactions are signed locally with
eth-account; no node-side keys. Calls go through :mod:`relayer.chain.contract`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3

from relayer.chain.codec import (
    PackedSignatures,
    ReportDomain,
    ThresholdKey,
    feed_id_bytes,
    keccak,
    pack_report_signatures,
)
from relayer.chain.contract import (
    ContractClient,
    HttpWeb3,
    deploy_contract,
    load_artifact,
    require_success,
    set_rpc_timeout,
)
from relayer.chain.errors import ChainError, ContractRevert, ReportRefused, TransmitError

__all__ = [
    "FeedParameters",
    "FeedProxyClient",
    "FeedState",
    "FeedStatus",
    "OnchainConfig",
    "ReportSignatures",
    "QuorumOracleClient",
    "SubmitReceipt",
    "TransmitReceipt",
    "Transmission",
    "VerifiedFeed",
    "connect",
    "deploy_contract",
    "deploy_oracle",
    "deploy_proxy",
    "feed_id_bytes",
    "load_artifact",
]

RPC_TIMEOUT_S = 10.0
# What a report entry point takes: per-member (index, sig65) pairs under scheme 0x0001, or the
# packed form (a FROST signature under 0x0002: codec.schnorr_signature).
ReportSignatures = Sequence[tuple[int, bytes]] | PackedSignatures
# Age after which readers call a feed stale, unless add_feed is told otherwise.
DEFAULT_HEARTBEAT_S = 3600
NEW_TRANSMISSION_TOPIC = "0x" + keccak(b"NewTransmission(uint32,uint32,uint256)").hex()
FEED_ADDED_TOPIC = "0x" + keccak(b"FeedAdded(uint16,bytes32,uint8,string,int192,int192)").hex()
FEED_UPDATED_TOPIC = "0x" + keccak(b"FeedUpdated(uint16,int192,uint32,uint32)").hex()
FEED_PARAMETERS_SET_TOPIC = "0x" + keccak(
    b"FeedParametersSet(uint16,(int192,int192,uint16,uint64,uint32,uint8,bool))").hex()


def connect(rpc_url: str, *, timeout: float = RPC_TIMEOUT_S) -> HttpWeb3:
    """An ``AsyncWeb3`` over HTTP with a total timeout on every request (its clients' too)."""
    provider = AsyncHTTPProvider(
        rpc_url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
    )
    w3 = AsyncWeb3(provider)
    set_rpc_timeout(w3, timeout)
    return w3


@dataclass(frozen=True)
class OnchainConfig:
    config_count: int
    config_digest: bytes
    signers: list[str]
    transmitters: list[str]
    f: int
    threshold: int
    offchain_config: bytes


@dataclass(frozen=True)
class FeedState:
    value: int
    observed_at: int
    round_id: int


@dataclass(frozen=True)
class FeedStatus:
    """A feed's latest answer with what a reader needs to judge it (``feedStatus``)."""

    value: int
    observed_at: int
    round_id: int
    stale: bool  # never written, older than the heartbeat, or the oracle is paused
    tripped: bool  # the circuit breaker holds the last good value back from a jump
    signer_count: int  # signatures on the latest report
    threshold: int
    heartbeat: int

    @property
    def usable(self) -> bool:
        return not (self.stale or self.tripped)

    @classmethod
    def from_tuple(cls, raw: Sequence[Any]) -> FeedStatus:
        value, observed_at, round_id, stale, tripped, signer_count, threshold, heartbeat = raw
        return cls(
            value=int(value), observed_at=int(observed_at), round_id=int(round_id), stale=bool(stale),
            tripped=bool(tripped), signer_count=int(signer_count), threshold=int(threshold),
            heartbeat=int(heartbeat),
        )


@dataclass(frozen=True)
class FeedParameters:
    """A feed's on-chain parameters (``addFeed``, ``setFeedParameters``, ``feedParameters``).

    Bounds must lie within int64, the stored width (else ``InvalidBounds``). ``breaker_bps``
    (0 = off) is the largest accepted jump from the last good value, ``breaker_floor`` a jump
    (in raw units) always accepted, so a feed that can read 0 is not stuck tripped;
    ``heartbeat`` the age in seconds after which readers call the value stale, and the oldest
    observation the oracle accepts; ``history_depth`` past rounds kept for ``getRoundData``
    (0 = latest only); ``update_events`` a ``FeedUpdated`` event per stored value.
    """

    min_value: int
    max_value: int
    breaker_bps: int = 0
    breaker_floor: int = 0
    heartbeat: int = DEFAULT_HEARTBEAT_S
    history_depth: int = 0
    update_events: bool = True

    def as_tuple(self) -> tuple[int, int, int, int, int, int, bool]:
        return (self.min_value, self.max_value, self.breaker_bps, self.breaker_floor, self.heartbeat,
                self.history_depth, self.update_events)

    @classmethod
    def from_tuple(cls, raw: Sequence[Any]) -> FeedParameters:
        low, high, bps, floor, heartbeat, depth, events = raw
        return cls(int(low), int(high), int(bps), int(floor), int(heartbeat), int(depth), bool(events))


@dataclass(frozen=True)
class VerifiedFeed:
    """One feed of a report ``verifyReport`` accepted: as signed, nothing stored."""

    feed_index: int
    value: int
    observed_at: int


@dataclass(frozen=True)
class FeedUpdated:
    """One ``FeedUpdated`` event: a feed's value was stored."""

    feed_index: int
    value: int
    updated_at: int
    round_id: int


@dataclass(frozen=True)
class Transmission:
    """One ``NewTransmission`` event: a report landed."""

    epoch: int
    round: int
    signer_bitmask: int
    block_number: int
    tx_hash: bytes


@dataclass(frozen=True)
class TransmitReceipt:
    tx_hash: bytes
    block_number: int
    gas_used: int
    status: int  # 1 = applied; 0 = reverted on-chain after a passing static call (lost a race)

    @property
    def succeeded(self) -> bool:
        return self.status == 1


@dataclass(frozen=True)
class SubmitReceipt(TransmitReceipt):
    """A landed ``submit``: which feeds of the report were newer than stored, and stored."""

    updated: tuple[FeedUpdated, ...] = ()


async def deploy_oracle(w3: HttpWeb3, owner_key: bytes) -> str:
    """Deploy a QuorumOracle owned by ``owner_key``'s account; returns its address."""
    return await deploy_contract(w3, owner_key, "QuorumOracle")


async def deploy_proxy(w3: HttpWeb3, owner_key: bytes, oracle: str, feed_index: int, *, strict: bool = False) -> str:
    """Deploy a FeedProxy (AggregatorV2V3) for one feed of ``oracle``.

    While the oracle is paused or the feed's breaker tripped, a FeedProxy answers the last good
    value with ``updatedAt = 0`` (every staleness check refuses it); a ``strict`` one
    (StrictFeedProxy) reverts ``OraclePaused`` / ``FeedBreakerTripped`` instead.
    """
    name = "StrictFeedProxy" if strict else "FeedProxy"
    return await deploy_contract(w3, owner_key, name, AsyncWeb3.to_checksum_address(oracle), feed_index)


class QuorumOracleClient(ContractClient):
    """One deployed QuorumOracle: typed reads, owner administration and transmit."""

    ARTIFACT = "QuorumOracle"

    def domain(self, chain_id: int) -> ReportDomain:
        return ReportDomain(chain_id, self.address)

    # -- administration (owner) -------------------------------------------------------

    async def set_config(
        self,
        owner_key: bytes,
        signers: Sequence[str],
        transmitters: Sequence[str],
        f: int,
        threshold: int,
        offchain_config: bytes,
    ) -> OnchainConfig:
        return await self._configure(owner_key, "setConfig", signers, transmitters, f, threshold, offchain_config)

    async def set_threshold_config(
        self,
        owner_key: bytes,
        signers: Sequence[str],
        transmitters: Sequence[str],
        f: int,
        threshold: int,
        offchain_config: bytes,
        key: ThresholdKey,
        approvals: bytes,
    ) -> OnchainConfig:
        """Install a committee under scheme 0x0002 with its group key; ``approvals``
        (``codec.pack_approvals``) from at least ``threshold`` members over
        ``ReportDomain.key_approval_digest`` of the new config digest (``codec.config_digest``
        with ``config_count`` one above the current and ``group_key``). A refusal raises
        :class:`ContractRevert` naming ``InsufficientApprovals``, ``ForeignApproval``,
        ``DuplicateApproval``, ``MalformedApprovals`` or ``InvalidGroupKey``."""
        return await self._configure(owner_key, "setThresholdConfig", signers, transmitters, f, threshold,
                                     offchain_config, key.as_tuple(), approvals)

    async def _configure(
        self, owner_key: bytes, function: str, signers: Sequence[str], transmitters: Sequence[str], *rest: Any
    ) -> OnchainConfig:
        receipt = await self._transact(
            owner_key,
            function,
            [AsyncWeb3.to_checksum_address(a) for a in signers],
            [AsyncWeb3.to_checksum_address(a) for a in transmitters],
            *rest,
        )
        require_success(receipt, function)
        return await self.config()

    async def group_key(self) -> ThresholdKey | None:
        """The installed group key (scheme 0x0002), None under scheme 0x0001."""
        x, parity, transcript = await self._call("groupKey")
        return ThresholdKey(int(x), int(parity), bytes(transcript)) if int(x) else None

    async def key_approval_digest(self, config_digest: bytes, key: ThresholdKey) -> bytes:
        """The contract's own key approval digest (to cross-check :class:`ReportDomain`)."""
        return bytes(await self._call("keyApprovalDigest", config_digest, *key.as_tuple()))

    async def add_feed(
        self,
        owner_key: bytes,
        feed_id: str,
        decimals: int,
        description: str,
        min_value: int,
        max_value: int,
        *,
        breaker_bps: int = 0,
        heartbeat: int = DEFAULT_HEARTBEAT_S,
        history_depth: int = 0,
        breaker_floor: int = 0,
        update_events: bool = True,
    ) -> int:
        """Register a feed (its on-chain id is :func:`feed_id_bytes`); returns its index.

        The parameters are those of :class:`FeedParameters` (bounds within int64).
        """
        parameters = FeedParameters(min_value, max_value, breaker_bps, breaker_floor, heartbeat, history_depth,
                                    update_events)
        receipt = await self._transact(
            owner_key, "addFeed", feed_id_bytes(feed_id), decimals, description, parameters.as_tuple()
        )
        require_success(receipt, "addFeed")
        for entry in receipt["logs"]:
            if entry["topics"] and entry["topics"][0] == FEED_ADDED_TOPIC:
                return int(entry["topics"][1], 16)  # feedIndex is indexed
        raise ChainError(f"addFeed landed without a FeedAdded event (tx {receipt['transactionHash'].hex()})")

    async def set_feed_parameters(self, owner_key: bytes, index: int, parameters: FeedParameters) -> None:
        receipt = await self._transact(owner_key, "setFeedParameters", index, parameters.as_tuple())
        require_success(receipt, "setFeedParameters")

    async def feed_parameters(self, index: int) -> FeedParameters:
        return FeedParameters.from_tuple(await self._call("feedParameters", index))

    async def feed_bounds(self, indexes: Sequence[int]) -> dict[int, tuple[int, int]]:
        """Per feed index its (min, max) accepted value, in one batched request."""
        if not indexes:
            return {}
        results = await self._call_many([("feedParameters", (i,)) for i in indexes])
        return {i: (p.min_value, p.max_value) for i, p in zip(indexes, map(FeedParameters.from_tuple, results))}

    async def feed_parameter_changes(self, from_block: int, to_block: int) -> list[int]:
        """Feed indexes whose parameters governance set in ``[from_block, to_block]``."""
        return [int(entry["topics"][1], 16)
                for entry in await self._logs("FeedParametersSet", from_block, to_block, FEED_PARAMETERS_SET_TOPIC)]

    async def reset_breaker(self, key: bytes, index: int) -> None:
        """Owner or guardian: clear a tripped breaker; the next report re-anchors the feed."""
        require_success(await self._transact(key, "resetBreaker", index), "resetBreaker")

    async def set_guardian(self, owner_key: bytes, guardian: str) -> None:
        receipt = await self._transact(owner_key, "setGuardian", AsyncWeb3.to_checksum_address(guardian))
        require_success(receipt, "setGuardian")

    async def pause(self, key: bytes) -> None:
        require_success(await self._transact(key, "pause"), "pause")

    async def unpause(self, key: bytes) -> None:
        require_success(await self._transact(key, "unpause"), "unpause")

    async def transfer_ownership(self, owner_key: bytes, new_owner: str) -> None:
        receipt = await self._transact(owner_key, "transferOwnership", AsyncWeb3.to_checksum_address(new_owner))
        require_success(receipt, "transferOwnership")

    async def accept_ownership(self, new_owner_key: bytes) -> None:
        require_success(await self._transact(new_owner_key, "acceptOwnership"), "acceptOwnership")

    # -- reads ------------------------------------------------------------------------

    async def owner(self) -> str:
        return str(await self._call("owner"))

    async def paused(self) -> bool:
        return bool(await self._call("paused"))

    async def feed_status(self, index: int, *, block: str = "latest") -> FeedStatus:
        return FeedStatus.from_tuple(await self._call("feedStatus", index, block=block))

    async def round_data(self, index: int, round_id: int) -> tuple[int, int]:
        """(value, observed_at) of a past round still in the feed's history."""
        value, observed_at = await self._call("roundData", index, round_id)
        return int(value), int(observed_at)

    async def latest_config_details(self) -> tuple[int, int, bytes]:
        """(config count, the block the config was set in, its digest)."""
        count, block, digest = await self._call("latestConfigDetails")
        return int(count), int(block), bytes(digest)

    async def config(self) -> OnchainConfig:
        count, _block, digest = await self.latest_config_details()
        signers, transmitters, f, threshold, offchain = await self._call("getConfig")
        return OnchainConfig(
            config_count=count,
            config_digest=bytes(digest),
            signers=list(signers),
            transmitters=list(transmitters),
            f=f,
            threshold=threshold,
            offchain_config=bytes(offchain),
        )

    async def feed_index(self, feed_id: str) -> int:
        return int(await self._call("feedIndexOf", feed_id_bytes(feed_id)))

    async def latest_epoch_round(self) -> tuple[int, int]:
        epoch, round_ = await self._call("latestEpochAndRound")
        return int(epoch), int(round_)

    async def latest_signer_count(self) -> int:
        return int((await self._call("latestTransmissionDetails"))[3])

    async def latest_feeds(self, indexes: Sequence[int]) -> tuple[tuple[int, int], list[FeedState]]:
        """(latest epoch and round, each feed's latest state), read in one request."""
        results = await self._call_many([("latestEpochAndRound", ())] + [("latestFeed", (i,)) for i in indexes])
        (epoch, round_), feeds = results[0], results[1:]
        return (int(epoch), int(round_)), [FeedState(value=v, observed_at=t, round_id=r) for v, t, r in feeds]

    async def latest_feed(self, index: int) -> FeedState:
        value, observed_at, round_id = await self._call("latestFeed", index)
        return FeedState(value=value, observed_at=observed_at, round_id=round_id)

    async def report_digest(
        self, config_digest: bytes, epoch: int, round: int, updates: bytes
    ) -> bytes:
        """The contract's own EIP-712 digest (to cross-check :class:`ReportDomain`)."""
        return bytes(await self._call("reportDigest", config_digest, epoch, round, updates))

    async def transmission_events(self, from_block: int, to_block: int) -> list[Transmission]:
        """``NewTransmission`` events in ``[from_block, to_block]``, oldest first."""
        out = []
        for entry in await self._logs("NewTransmission", from_block, to_block, NEW_TRANSMISSION_TOPIC):
            data = bytes.fromhex(entry["data"][2:])
            out.append(Transmission(
                epoch=int.from_bytes(data[0:32], "big"), round=int.from_bytes(data[32:64], "big"),
                signer_bitmask=int.from_bytes(data[64:96], "big"), block_number=int(entry["blockNumber"], 16),
                tx_hash=bytes.fromhex(entry["transactionHash"][2:]),
            ))
        return out

    def decode_transmit_input(self, data: bytes | str) -> dict[str, Any]:
        """Arguments of a ``transmit`` transaction's input, by name (``updates``, ...)."""
        try:
            fn, args = self.contract.decode_function_input(data)
        except ValueError as exc:
            raise ChainError(f"not a QuorumOracle call: {exc}") from exc
        if fn.fn_name != "transmit":
            raise ChainError(f"expected a transmit call, got {fn.fn_name}")
        return dict(args)

    # -- the pull path: anyone submits, anyone verifies ----------------------------------

    async def verify_report(
        self,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signatures: ReportSignatures,
        *,
        block: str = "latest",
    ) -> list[VerifiedFeed]:
        """The contract's verdict on a report, nothing stored: its feeds if the current
        committee signed it for this chain and contract and each feed passes the per-feed
        checks; else :class:`ReportRefused` with the contract's error (``reason``)."""
        packed = pack_report_signatures(signatures)
        try:
            indexes, values, times = await self._call(
                "verifyReport", config_digest, epoch, round, updates, packed.signer_bitmask, packed.signatures,
                block=block)
        except ContractRevert as exc:
            raise ReportRefused(f"verifyReport refused the report: {exc}", reason=exc.reason,
                                error_args=exc.error_args, data=exc.data) from exc
        return [VerifiedFeed(int(i), int(v), int(t)) for i, v, t in zip(indexes, values, times)]

    async def submit_report(
        self,
        sender_key: bytes,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signatures: ReportSignatures,
    ) -> SubmitReceipt:
        """Submit an attested report from any account (the pull path). Feeds not newer than
        the stored ones are skipped, not refused; ``updated`` lists the ones stored (from
        their ``FeedUpdated`` events: feeds with events off are stored but not listed).
        A refused report raises :class:`ReportRefused` before any gas is spent."""
        packed = pack_report_signatures(signatures)
        receipt = await self._transact(
            sender_key, "submit", config_digest, epoch, round, updates, packed.signer_bitmask, packed.signatures,
            error_cls=ReportRefused,
        )
        return SubmitReceipt(
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            status=int(receipt["status"]),
            updated=tuple(self.feed_updates(receipt["logs"])),
        )

    def feed_updates(self, logs: Sequence[dict[str, Any]]) -> list[FeedUpdated]:
        """This oracle's ``FeedUpdated`` events among raw JSON-RPC logs (a receipt's, or
        ``eth_getLogs``'), in order."""
        out = []
        for entry in logs:
            topics = entry.get("topics") or []
            if not topics or topics[0] != FEED_UPDATED_TOPIC or entry["address"].lower() != self.address.lower():
                continue
            data = bytes.fromhex(entry["data"][2:])
            value = int.from_bytes(data[0:32], "big", signed=True)
            out.append(FeedUpdated(feed_index=int(topics[1], 16), value=value,
                                   updated_at=int.from_bytes(data[32:64], "big"),
                                   round_id=int.from_bytes(data[64:96], "big")))
        return out

    # -- transmission -----------------------------------------------------------------

    async def transmit(
        self,
        transmitter_key: bytes,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signatures: ReportSignatures,
    ) -> TransmitReceipt:
        """Send an attested report; ``signatures`` are ``(signer_index, sig65)`` pairs, or a
        packed form (a FROST signature under scheme 0x0002)."""
        packed = pack_report_signatures(signatures)
        return await self.transmit_packed(
            transmitter_key, config_digest, epoch, round, updates, packed.signer_bitmask, packed.signatures
        )

    def transmit_calldata(
        self,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signatures: ReportSignatures,
    ) -> bytes:
        """The calldata of ``transmit`` for an attested report, for a transaction manager to send."""
        packed = pack_report_signatures(signatures)
        return self._function("transmit").encode(
            (config_digest, epoch, round, updates, packed.signer_bitmask, packed.signatures))

    async def transmit_packed(
        self,
        transmitter_key: bytes,
        config_digest: bytes,
        epoch: int,
        round: int,
        updates: bytes,
        signer_bitmask: int,
        signatures: bytes,
    ) -> TransmitReceipt:
        """Like :meth:`transmit` with the wire form already built (bitmask, signature bytes)."""
        receipt = await self._transact(
            transmitter_key,
            "transmit",
            config_digest,
            epoch,
            round,
            updates,
            signer_bitmask,
            signatures,
            error_cls=TransmitError,
        )
        return TransmitReceipt(
            tx_hash=bytes(receipt["transactionHash"]),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            status=int(receipt["status"]),
        )


class FeedProxyClient(ContractClient):
    """Reads one FeedProxy the way a Chainlink consumer would."""

    ARTIFACT = "FeedProxy"

    async def decimals(self) -> int:
        return int(await self._call("decimals"))

    async def description(self) -> str:
        return str(await self._call("description"))

    async def latest_round_data(self) -> tuple[int, int, int, int, int]:
        return tuple(await self._call("latestRoundData"))

    async def get_round_data(self, round_id: int) -> tuple[int, int, int, int, int]:
        return tuple(await self._call("getRoundData", round_id))

    async def latest_status(self) -> FeedStatus:
        """The safety-stating read: value, time, round, stale, tripped, signer count."""
        return FeedStatus.from_tuple(await self._call("latestStatus"))

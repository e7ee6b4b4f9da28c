"""Verifying a report off-chain against the committee the oracle holds, as the contract does.

:func:`read_chain` reads, at one block, everything ``QuorumOracle.verifyReport`` looks at: the
pause, the config digest (its top two bytes name the signature scheme), the signers, the
threshold, the group key (scheme 0x0002), and each carried feed's table entry (bounds,
heartbeat, decimals, id), with the block's timestamp. :func:`check_report` is then a pure function making the contract's checks
in the contract's order (docs/contracts.md), so its verdict is the contract's at that block,
refusals included: the same error name (``ReportRejected.reason``), with a cause the contract
cannot tell apart (a report signed for another chain is ``SignerMismatch`` there too) named
here. :class:`ReportVerifier` ties both to an oracle and submits verified reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aggregation.fixed import from_fixed
from coincurve import PublicKey

from relayer.chain.codec import (
    SIGNATURE_SCHEME,
    THRESHOLD_SCHNORR_SCHEME,
    ReportDomain,
    ThresholdKey,
    feed_id_bytes,
    recover_address,
    to_compact,
)
from relayer.chain.contract import chain_id_of, disconnect
from relayer.chain.errors import ChainError, CodecError, ReportRefused
from relayer.chain.oracle import QuorumOracleClient, SubmitReceipt, connect
from relayer.client.errors import (
    BelowThreshold,
    ChainUnavailable,
    FeedRejected,
    MalformedSignatures,
    OraclePaused,
    ReplacedCommittee,
    TamperedReport,
    UnknownSigner,
    UnsupportedScheme,
    WrongChain,
    rejection,
)
from relayer.client.report import SCHNORR_BYTES, SignedReport, VerifiedReport, VerifiedValue
from relayer.crypto import frost

# QuorumOracle.MAX_FUTURE_SKEW: an observation may be this far ahead of the block.
MAX_FUTURE_SKEW_S = 60
WORD = 32
ZERO_ADDRESS = "0x" + "00" * 20
# secp256k1's field prime: R's coordinates must be below it, as the contract checks.
FIELD_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F


@dataclass(frozen=True, slots=True)
class OnchainFeed:
    """One feed's entry in the oracle's table, as the per-feed checks use it."""

    feed_key: bytes
    decimals: int
    min_value: int
    max_value: int
    heartbeat: int


@dataclass(frozen=True, slots=True)
class ChainState:
    """What ``verifyReport`` reads, at one block. ``feeds`` holds the registered feeds the
    report carries; an index missing from it is unknown to the oracle."""

    chain_id: int
    oracle: str
    block_number: int
    block_timestamp: int
    paused: bool
    config_digest: bytes
    signers: tuple[str, ...]
    threshold: int
    feeds: Mapping[int, OnchainFeed]
    group_key: ThresholdKey | None = None  # scheme 0x0002's, as setThresholdConfig installed it


def carried_indexes(updates: bytes) -> list[int]:
    """The feed index of each whole update word (whatever else is wrong with it)."""
    return [int.from_bytes(updates[o:o + 2], "big") for o in range(0, len(updates) - len(updates) % WORD, WORD)]


async def read_chain(oracle: QuorumOracleClient, feed_indexes: Sequence[int], *, block: int | None = None) -> ChainState:
    """The oracle's state for judging a report carrying ``feed_indexes``, all read at one block
    (the latest unless ``block`` is given)."""
    rpc = oracle.rpc
    try:
        header = await rpc.request("eth_getBlockByNumber", [hex(block) if block is not None else "latest", False])
        if not isinstance(header, dict):
            raise ChainUnavailable(f"the RPC has no block {block if block is not None else 'latest'}")
        number, timestamp = int(header["number"], 16), int(header["timestamp"], 16)
        at = hex(number)
        chain_id = await chain_id_of(rpc)
        paused, details, config, count, key = await oracle._call_many(
            [("paused", ()), ("latestConfigDetails", ()), ("getConfig", ()), ("feedCount", ()), ("groupKey", ())],
            block=at)
        known = sorted({i for i in feed_indexes if i < int(count)})
        calls = [c for i in known for c in (("feedInfo", (i,)), ("feedParameters", (i,)))]
        results = await oracle._call_many(calls, block=at) if calls else []
    except ChainError as exc:
        raise ChainUnavailable(f"cannot read oracle {oracle.address} at {rpc.url}: {exc}") from exc
    feeds: dict[int, OnchainFeed] = {}
    for k, index in enumerate(known):
        (feed_key, decimals, _description, _low, _high), parameters = results[2 * k], results[2 * k + 1]
        low, high, _bps, _floor, heartbeat = parameters[:5]
        if int(heartbeat) == 0:  # a slot the table has no feed in
            continue
        feeds[index] = OnchainFeed(bytes(feed_key), int(decimals), int(low), int(high), int(heartbeat))
    signers, _transmitters, _f, threshold, _offchain = config
    key_x, key_parity, transcript = key
    return ChainState(
        chain_id=chain_id, oracle=oracle.address, block_number=number, block_timestamp=timestamp, paused=bool(paused),
        config_digest=bytes(details[2]), signers=tuple(str(s) for s in signers), threshold=int(threshold), feeds=feeds,
        group_key=ThresholdKey(int(key_x), int(key_parity), bytes(transcript)) if int(key_x) else None,
    )


def _recovered(digest: bytes, signature: bytes) -> str:
    """Who signed ``digest``, as the contract's ecrecover of the EIP-2098 form sees it; the
    zero address where ecrecover would fail."""
    try:
        return recover_address(digest, to_compact(signature))
    except CodecError:
        return ZERO_ADDRESS


def schnorr_valid(key: ThresholdKey, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (R's x and y, then z) is the group's signature of ``digest``, by
    the contract's rule: z a nonzero scalar, R a point of the curve given by coordinates below
    the field prime, c = H2(R || PK || digest) of RFC 9591 nonzero, and z*G - c*PK equal to R
    (the contract compares their addresses after one ecrecover; an identity fails there)."""
    if len(signature) != SCHNORR_BYTES:
        return False
    rx, ry, z = (int.from_bytes(signature[k:k + WORD], "big") for k in (0, WORD, 2 * WORD))
    if not (0 < z < frost.ORDER and rx < FIELD_P and ry < FIELD_P and (ry * ry - rx ** 3 - 7) % FIELD_P == 0):
        return False
    try:
        r = PublicKey(b"\x04" + signature[:2 * WORD])
        group = PublicKey(bytes([2 + key.y_parity]) + key.x.to_bytes(WORD, "big"))
        c = frost.compute_challenge(r, group, digest)
        if c == 0:
            return False
        point = frost.point_sum((frost.base_mul(z), frost.point_mul(group, frost.ORDER - c)))
    except (ValueError, frost.FrostError):
        return False
    return point.format(compressed=False)[1:] == signature[:2 * WORD]


def _claimed_digest(report: SignedReport, chain: ChainState) -> bytes | None:
    """The report digest under the domain the node claims (chain id, oracle), when that
    differs from the chain and oracle being asked; None when it does not, or claims nothing."""
    if report.chain_id is None or report.oracle is None:
        return None
    try:
        domain = ReportDomain(report.chain_id, report.oracle)
    except CodecError:
        return None
    if (domain.chain_id, domain.verifying_contract.lower()) == (chain.chain_id, chain.oracle.lower()):
        return None
    return domain.report_digest(report.config_digest, report.epoch, report.round, report.updates)


def _members_signed(digest: bytes, report: SignedReport, chain: ChainState) -> bool:
    return all(i < len(chain.signers) and _recovered(digest, s) == chain.signers[i] for i, s in report.signatures)


def _wrong_chain(report: SignedReport, chain: ChainState, reason: str, args: tuple[object, ...]) -> WrongChain:
    return WrongChain(f"the committee signed this report for chain {report.chain_id} oracle {report.oracle}, not "
                      f"chain {chain.chain_id} oracle {chain.oracle}: fetch it from a node of this network",
                      reason=reason, error_args=args)


def check_report(report: SignedReport, chain: ChainState) -> VerifiedReport:
    """The contract's verdict on ``report`` at ``chain``'s block: the verified values, or the
    typed refusal whose ``reason`` is the error ``verifyReport`` reverts with."""
    scheme = int.from_bytes(chain.config_digest[:2], "big")
    if scheme not in (SIGNATURE_SCHEME, THRESHOLD_SCHNORR_SCHEME):
        raise UnsupportedScheme(f"oracle {chain.oracle} signs with scheme 0x{scheme:04x}; this SDK checks "
                                f"0x{SIGNATURE_SCHEME:04x} (ECDSA over EIP-712) and 0x{THRESHOLD_SCHNORR_SCHEME:04x} "
                                "(FROST threshold Schnorr): verify on-chain instead")
    if chain.paused:
        raise OraclePaused(f"oracle {chain.oracle} is paused at block {chain.block_number}: it verifies and "
                           "stores nothing until its guardian or owner unpauses it", reason="Paused")
    if report.config_digest != chain.config_digest:
        other = report.scheme
        extra = f" (and another signature scheme, 0x{other:04x})" if other != scheme else ""
        raise ReplacedCommittee(
            f"report signed under config digest 0x{report.config_digest.hex()}{extra}; oracle {chain.oracle} "
            f"holds 0x{chain.config_digest.hex()}: the committee was replaced, or the report is another oracle's; "
            "fetch a report of the current committee", reason="ConfigDigestMismatch",
            error_args=(chain.config_digest, report.config_digest))
    digest = ReportDomain(chain.chain_id, chain.oracle).report_digest(
        report.config_digest, report.epoch, report.round, report.updates)
    if scheme == THRESHOLD_SCHNORR_SCHEME:
        _check_schnorr(report, chain, digest)
        signers: tuple[str, ...] = ()
    else:
        signers = _check_members(report, chain, digest)
    return VerifiedReport(report=report, chain_id=chain.chain_id, oracle=chain.oracle,
                          block_number=chain.block_number, block_timestamp=chain.block_timestamp,
                          signers=signers, values=tuple(_check_feeds(report, chain)))


def _check_schnorr(report: SignedReport, chain: ChainState, digest: bytes) -> None:
    """Scheme 0x0002: no bitmask, one 96-byte signature, valid under the group key."""
    packed = report.packed()
    if packed.signer_bitmask or len(packed.signatures) != SCHNORR_BYTES:
        raise MalformedSignatures(
            f"scheme 0x{THRESHOLD_SCHNORR_SCHEME:04x} takes one {SCHNORR_BYTES}-byte Schnorr signature and no signer "
            f"bitmask; got bitmask {packed.signer_bitmask:#x} and {len(packed.signatures)} signature bytes (members' "
            "signatures are scheme 0x0001's): fetch the report from a node of this committee",
            reason="MalformedSchnorrSignature", error_args=(packed.signer_bitmask, len(packed.signatures)))
    key = chain.group_key
    if key is not None and schnorr_valid(key, digest, packed.signatures):
        return
    claimed = _claimed_digest(report, chain)
    if key is not None and claimed is not None and schnorr_valid(key, claimed, packed.signatures):
        raise _wrong_chain(report, chain, "InvalidSchnorrSignature", ())
    raise TamperedReport(
        f"the Schnorr signature does not verify under oracle {chain.oracle}'s group key "
        f"{'none' if key is None else hex(key.x)}: the report was changed after signing, or not signed by this "
        "committee", reason="InvalidSchnorrSignature")


def _check_members(report: SignedReport, chain: ChainState, digest: bytes) -> tuple[str, ...]:
    """Scheme 0x0001: at least ``threshold`` members, each signature recovering to its member."""
    packed = report.packed()
    mask, n = packed.signer_bitmask, len(chain.signers)
    if mask >> n:
        raise UnknownSigner(f"signer indexes {[i for i, _ in report.signatures if i >= n]} are outside the "
                            f"committee of {n}", reason="UnknownSigner", error_args=(mask,))
    count = bin(mask).count("1")
    if len(packed.signatures) != 2 * WORD * count:
        raise MalformedSignatures(
            f"{count} signers in the bitmask but {len(packed.signatures)} signature bytes (64 each): a Schnorr "
            f"signature is scheme 0x{THRESHOLD_SCHNORR_SCHEME:04x}'s, and this committee signs with "
            f"0x{SIGNATURE_SCHEME:04x}", reason="SignatureCountMismatch", error_args=(count, len(packed.signatures)))
    if count < chain.threshold:
        raise BelowThreshold(f"{count} signatures, the committee's threshold is {chain.threshold}: not attested",
                             reason="InsufficientSignatures", error_args=(count, chain.threshold))
    signers = []
    for index, signature in report.signatures:
        recovered = _recovered(digest, signature)
        if recovered != chain.signers[index]:
            args = (index, recovered)
            claimed = _claimed_digest(report, chain)
            if claimed is not None and _members_signed(claimed, report, chain):
                raise _wrong_chain(report, chain, "SignerMismatch", args)
            raise TamperedReport(
                f"signature of signer {index} recovers to {recovered}, not member {chain.signers[index]}: the report "
                "was changed after signing, or not signed by this committee", reason="SignerMismatch",
                error_args=args)
        signers.append(recovered)
    return tuple(signers)


def _feed_refused(reason: str, index: int | None, message: str, *args: object) -> FeedRejected:
    return FeedRejected(message, reason=reason, feed_index=index, error_args=args)


def _check_feeds(report: SignedReport, chain: ChainState) -> list[VerifiedValue]:
    updates = report.updates
    if not updates or len(updates) % WORD:
        raise _feed_refused("InvalidUpdates", None, f"updates must be a non-empty multiple of 32 bytes, got "
                            f"{len(updates)} bytes")
    values = []
    previous = -1
    now = chain.block_timestamp
    for offset in range(0, len(updates), WORD):
        word = int.from_bytes(updates[offset:offset + WORD], "big")
        index = word >> 240
        if index <= previous or (word >> 192) & 0xFF:
            raise _feed_refused("InvalidUpdates", index, f"update word {offset // WORD} (feed {index}): indexes must "
                                "rise strictly and the reserved byte be zero")
        previous = index
        feed = chain.feeds.get(index)
        if feed is None:
            raise _feed_refused("UnknownFeed", index, f"feed {index} is not registered in oracle {chain.oracle}",
                                index)
        raw = word & ((1 << 192) - 1)
        value = raw - (1 << 192) if raw >> 191 else raw
        if not feed.min_value <= value <= feed.max_value:
            raise _feed_refused("ValueOutOfBounds", index, f"feed {index} value {value} is outside its bounds "
                                f"[{feed.min_value}, {feed.max_value}]", index, value)
        observed_at = (word >> 208) & 0xFFFFFFFF
        if observed_at > now + MAX_FUTURE_SKEW_S:
            raise _feed_refused("ObservationInFuture", index, f"feed {index} observed at {observed_at}, more than "
                                f"{MAX_FUTURE_SKEW_S} s after block {chain.block_number} ({now})", index, observed_at)
        if observed_at + feed.heartbeat < now:
            raise _feed_refused("ObservationExpired", index, f"feed {index} observed at {observed_at}, older than "
                                f"its heartbeat {feed.heartbeat} s at block time {now}: fetch a newer report",
                                index, observed_at, feed.heartbeat)
        claimed = report.feed_names.get(index)
        name = claimed if claimed is not None and feed_id_bytes(claimed) == feed.feed_key else None
        values.append(VerifiedValue(
            feed_index=index, feed_key=feed.feed_key, feed_id=name, decimals=feed.decimals, raw_value=value,
            value=from_fixed(value, feed.decimals), observed_at=observed_at, num_sources=(word >> 200) & 0xFF))
    return values


class ReportVerifier:
    """Verifies reports against one deployed QuorumOracle, and submits verified ones."""

    def __init__(self, oracle: QuorumOracleClient) -> None:
        self.oracle = oracle

    @classmethod
    def connect(cls, rpc_url: str, oracle_address: str, *, timeout: float = 10.0) -> ReportVerifier:
        return cls(QuorumOracleClient(connect(rpc_url, timeout=timeout), oracle_address))

    async def close(self) -> None:
        await disconnect(self.oracle.w3)

    async def __aenter__(self) -> ReportVerifier:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def chain_state(self, report: SignedReport, *, block: int | None = None) -> ChainState:
        return await read_chain(self.oracle, carried_indexes(report.updates), block=block)

    async def verify(self, report: SignedReport, *, block: int | None = None) -> VerifiedReport:
        """The verified values, or the typed refusal the contract would give at that block."""
        return check_report(report, await self.chain_state(report, block=block))

    async def submit(self, report: SignedReport, sender_key: bytes) -> tuple[VerifiedReport, SubmitReceipt]:
        """Verify, then ``submit`` the report from ``sender_key``'s account. Feeds not newer than
        the stored ones are skipped by the contract (``receipt.updated`` lists those stored); a
        refusal at the pending block (the chain moved on) is raised typed, before any gas."""
        verified = await self.verify(report)
        try:
            receipt = await self.oracle.submit_report(sender_key, report.config_digest, report.epoch, report.round,
                                                      report.updates, report.packed())
        except ReportRefused as exc:
            raise rejection(exc.reason or "unknown", f"submit refused: {exc}", exc.error_args) from exc
        except ChainError as exc:
            raise ChainUnavailable(f"submit to oracle {self.oracle.address} failed: {exc}") from exc
        return verified, receipt

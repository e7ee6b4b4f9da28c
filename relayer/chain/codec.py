"""The on-chain report codec: update words, the EIP-712 report digest and signatures.

Pure functions, no I/O. This is the hot path of every round (each node hashes, signs and
recovers many times per report), so it uses coincurve and pycryptodome's keccak directly and
caches the EIP-712 domain separator instead of going through eth-account.

Everything here must match ``contracts/QuorumOracle.sol`` bit for bit; the tests compare the
digest with the contract's ``reportDigest`` and with eth-account's typed-data hashing.

Two signature schemes, named by the config digest's top two bytes: 0x0001, one ECDSA
signature per member (a bitmask and EIP-2098 pairs), and 0x0002, one FROST Schnorr
signature (R, z) under a group key the members approved (``ThresholdKey``, approvals over
``ReportDomain.key_approval_digest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak as _keccak
from eth_abi.abi import encode as abi_encode

from relayer.chain.errors import CodecError

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "SIGNATURE_SCHEME",
    "THRESHOLD_SCHNORR_SCHEME",
    "FeedUpdate",
    "PackedSignatures",
    "ReportDomain",
    "ThresholdKey",
    "address_of",
    "config_digest",
    "decode_updates",
    "encode_updates",
    "feed_id_bytes",
    "keccak",
    "pack_approvals",
    "pack_report_signatures",
    "pack_signatures",
    "schnorr_signature",
    "recover_address",
    "sign_digest",
    "to_compact",
    "unpack_signatures",
]

DOMAIN_NAME = "QuorumOracle"
DOMAIN_VERSION = "1"
# Top two bytes of every config digest; 0x0001 = per-signer ECDSA over EIP-712 (DESIGN §6).
SIGNATURE_SCHEME = 0x0001
# 0x0002 = FROST(secp256k1, SHA-256) threshold Schnorr: one (R, z) per report.
THRESHOLD_SCHNORR_SCHEME = 0x0002

WORD = 32
UINT16_MAX = (1 << 16) - 1
UINT32_MAX = (1 << 32) - 1
UINT8_MAX = (1 << 8) - 1
INT192_MIN = -(1 << 191)
INT192_MAX = (1 << 191) - 1
_VALUE_MASK = (1 << 192) - 1
# secp256k1 group order: EIP-2098 can only carry s in the lower half.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def keccak(data: bytes) -> bytes:
    """Keccak-256 (Ethereum's, not SHA3-256)."""
    return _keccak.new(digest_bits=256, data=data).digest()


_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_REPORT_TYPEHASH = keccak(b"Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)")
_KEY_APPROVAL_TYPEHASH = keccak(
    b"KeyApproval(bytes32 configDigest,uint256 groupKeyX,uint8 groupKeyYParity,bytes32 transcriptHash)"
)


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """One feed's entry in a report: the 32-byte update word, unpacked."""

    feed_index: int
    observed_at: int
    num_sources: int
    value: int


def _encode_word(update: FeedUpdate) -> bytes:
    if not 0 <= update.feed_index <= UINT16_MAX:
        raise CodecError(f"feed_index must be a uint16, got {update.feed_index}")
    if not 0 <= update.observed_at <= UINT32_MAX:
        raise CodecError(f"observed_at must be a uint32 (unix seconds), got {update.observed_at}")
    if not 0 <= update.num_sources <= UINT8_MAX:
        raise CodecError(f"num_sources must be a uint8, got {update.num_sources}")
    if not INT192_MIN <= update.value <= INT192_MAX:
        raise CodecError(f"value must fit an int192, got {update.value}")
    word = (
        (update.feed_index << 240)
        | (update.observed_at << 208)
        | (update.num_sources << 200)
        | (update.value & _VALUE_MASK)  # two's complement in the low 192 bits
    )
    return word.to_bytes(WORD, "big")


def encode_updates(updates: Sequence[FeedUpdate]) -> bytes:
    """Concatenate one word per feed; feed indexes must be strictly ascending and non-empty."""
    if not updates:
        raise CodecError("a report must carry at least one feed update")
    previous = -1
    for update in updates:
        if update.feed_index <= previous:
            raise CodecError(
                f"feed indexes must be strictly ascending, got {update.feed_index} after {previous}"
            )
        previous = update.feed_index
    return b"".join(_encode_word(u) for u in updates)


def decode_updates(data: bytes) -> list[FeedUpdate]:
    """Inverse of :func:`encode_updates`, with the same checks the contract makes."""
    if not data or len(data) % WORD:
        raise CodecError(f"updates must be a non-empty multiple of 32 bytes, got {len(data)} bytes")
    result: list[FeedUpdate] = []
    previous = -1
    for offset in range(0, len(data), WORD):
        word = int.from_bytes(data[offset : offset + WORD], "big")
        feed_index = word >> 240
        if feed_index <= previous:
            raise CodecError(
                f"feed indexes must be strictly ascending, got {feed_index} after {previous}"
            )
        if (word >> 192) & 0xFF:
            raise CodecError(f"reserved byte of the update word for feed {feed_index} must be zero")
        raw_value = word & _VALUE_MASK
        value = raw_value - (1 << 192) if raw_value >> 191 else raw_value
        result.append(
            FeedUpdate(
                feed_index=feed_index,
                observed_at=(word >> 208) & UINT32_MAX,
                num_sources=(word >> 200) & UINT8_MAX,
                value=value,
            )
        )
        previous = feed_index
    return result


def _uint_word(value: int, bits: int, name: str) -> bytes:
    if not 0 <= value < (1 << bits):
        raise CodecError(f"{name} must be a uint{bits}, got {value}")
    return value.to_bytes(WORD, "big")


def _address_bytes(address: str) -> bytes:
    text = address[2:] if address.startswith(("0x", "0X")) else address
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise CodecError(f"expected a hex address, got {address!r}") from exc
    if len(raw) != 20:
        raise CodecError(f"expected a 20-byte address, got {len(raw)} bytes in {address!r}")
    return raw


class ReportDomain:
    """The EIP-712 domain of one deployed QuorumOracle, with its separator computed once."""

    __slots__ = ("chain_id", "verifying_contract", "separator", "_prefix")

    def __init__(self, chain_id: int, verifying_contract: str) -> None:
        self.chain_id = chain_id
        self.verifying_contract = _checksum(_address_bytes(verifying_contract))
        self.separator: bytes = keccak(
            _DOMAIN_TYPEHASH
            + keccak(DOMAIN_NAME.encode())
            + keccak(DOMAIN_VERSION.encode())
            + _uint_word(chain_id, 256, "chain_id")
            + _address_bytes(verifying_contract).rjust(WORD, b"\x00")
        )
        self._prefix = b"\x19\x01" + self.separator

    def report_digest(self, config_digest: bytes, epoch: int, round: int, updates: bytes) -> bytes:
        """The 32-byte EIP-712 digest of ``Report(configDigest, epoch, round, updates)``."""
        if len(config_digest) != WORD:
            raise CodecError(f"config_digest must be 32 bytes, got {len(config_digest)}")
        struct_hash = keccak(
            _REPORT_TYPEHASH
            + config_digest
            + _uint_word(epoch, 32, "epoch")
            + _uint_word(round, 32, "round")
            + keccak(updates)
        )
        return keccak(self._prefix + struct_hash)

    def key_approval_digest(self, config_digest: bytes, key: ThresholdKey) -> bytes:
        """What each member signs to approve ``key`` for the config ``config_digest`` (which
        already commits to the key, the transcript and the config count)."""
        if len(config_digest) != WORD:
            raise CodecError(f"config_digest must be 32 bytes, got {len(config_digest)}")
        struct_hash = keccak(
            _KEY_APPROVAL_TYPEHASH
            + config_digest
            + _uint_word(key.x, 256, "group key x")
            + _uint_word(key.y_parity, 8, "group key y parity")
            + key.transcript_hash
        )
        return keccak(self._prefix + struct_hash)

    def __repr__(self) -> str:
        return f"ReportDomain(chain_id={self.chain_id}, verifying_contract={self.verifying_contract})"


def _checksum(raw: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address."""
    lower = raw.hex()
    hashed = keccak(lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(lower, hashed))


def _check_private_key(private_key: bytes) -> None:
    if len(private_key) != WORD:
        raise CodecError(f"private key must be 32 bytes, got {len(private_key)}")


def address_of(private_key: bytes) -> str:
    """Checksummed Ethereum address of a secp256k1 private key."""
    _check_private_key(private_key)
    try:
        public = PrivateKey(private_key).public_key.format(compressed=False)
    except ValueError as exc:
        raise CodecError("private key is not a valid secp256k1 scalar") from exc
    return _checksum(keccak(public[1:])[12:])


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """65-byte ``r || s || v`` (low-s, ``v`` in {27, 28}) over an already hashed digest."""
    _check_private_key(private_key)
    if len(digest) != WORD:
        raise CodecError(f"digest must be 32 bytes, got {len(digest)}")
    try:
        signature = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    except ValueError as exc:
        raise CodecError("private key is not a valid secp256k1 scalar") from exc
    return signature[:64] + bytes((signature[64] + 27,))


def _split(signature: bytes) -> tuple[int, int, int]:
    """(r, s, y parity) of a 65-byte (v in {0,1,27,28}) or 64-byte EIP-2098 signature."""
    if len(signature) == 65:
        v = signature[64]
        if v in (27, 28):
            v -= 27
        if v not in (0, 1):
            raise CodecError(f"signature v must be 0, 1, 27 or 28, got {signature[64]}")
        return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), v
    if len(signature) == 64:
        vs = int.from_bytes(signature[32:], "big")
        return int.from_bytes(signature[:32], "big"), vs & ((1 << 255) - 1), vs >> 255
    raise CodecError(f"signature must be 65 bytes (or 64 compact), got {len(signature)}")


def recover_address(digest: bytes, signature: bytes) -> str:
    """Checksummed address that produced ``signature`` over ``digest``."""
    if len(digest) != WORD:
        raise CodecError(f"digest must be 32 bytes, got {len(digest)}")
    r, s, parity = _split(signature)
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N):
        raise CodecError("signature r or s is out of range")
    recoverable = r.to_bytes(WORD, "big") + s.to_bytes(WORD, "big") + bytes((parity,))
    try:
        public = PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    except ValueError as exc:
        raise CodecError(f"signature does not recover to a public key: {exc}") from exc
    return _checksum(keccak(public.format(compressed=False)[1:])[12:])


def to_compact(signature65: bytes) -> bytes:
    """EIP-2098 form: ``r || (yParity << 255 | s)``; a high s is first folded to low s."""
    if len(signature65) != 65:
        raise CodecError(f"expected a 65-byte signature, got {len(signature65)}")
    r, s, parity = _split(signature65)
    if s > _SECP256K1_N // 2:
        # (r, n - s) with the other parity is the same signature; only low s fits EIP-2098.
        s, parity = _SECP256K1_N - s, parity ^ 1
    return r.to_bytes(WORD, "big") + ((parity << 255) | s).to_bytes(WORD, "big")


def unpack_signatures(bitmask: int, packed: bytes) -> list[tuple[int, bytes]]:
    """``(bitmask, compact sigs)`` as ``transmit`` takes them -> ``[(signer_index, sig65)]``
    (v = 27 + y parity), the inverse of :func:`pack_signatures`."""
    indexes = [i for i in range(256) if bitmask >> i & 1]
    if len(packed) != WORD * 2 * len(indexes):
        raise CodecError(f"{len(indexes)} signers in the bitmask but {len(packed)} signature bytes "
                         f"(expected {WORD * 2 * len(indexes)})")
    out = []
    for k, index in enumerate(indexes):
        r, s, parity = _split(packed[k * 2 * WORD:(k + 1) * 2 * WORD])
        out.append((index, r.to_bytes(WORD, "big") + s.to_bytes(WORD, "big") + bytes([27 + parity])))
    return out


def pack_signatures(signed: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
    """``[(signer_index, sig65)]`` -> ``(bitmask, compact sigs in ascending index order)``."""
    bitmask = 0
    for index, _ in signed:
        if not 0 <= index <= 255:
            raise CodecError(f"signer index must be in [0, 255], got {index}")
        if bitmask >> index & 1:
            raise CodecError(f"signer index {index} appears twice")
        bitmask |= 1 << index
    ordered = sorted(signed, key=lambda pair: pair[0])
    return bitmask, b"".join(to_compact(sig) for _, sig in ordered)


@dataclass(frozen=True, slots=True)
class PackedSignatures:
    """A report's signatures as the contract takes them: (signer bitmask, signature bytes).

    Scheme 0x0001: the members' bitmask and their EIP-2098 pairs in index order; scheme
    0x0002: bitmask 0 and one 96-byte Schnorr signature (``schnorr_signature``)."""

    signer_bitmask: int
    signatures: bytes


def pack_report_signatures(signatures: Sequence[tuple[int, bytes]] | PackedSignatures) -> PackedSignatures:
    """Per-member ``(index, sig65)`` pairs packed for scheme 0x0001; a packed form as it is."""
    if isinstance(signatures, PackedSignatures):
        return signatures
    bitmask, packed = pack_signatures(signatures)
    return PackedSignatures(bitmask, packed)


def schnorr_signature(r: PublicKey, z: int) -> PackedSignatures:
    """A FROST signature (R, z) in the contract's form: R uncompressed (its address is what
    ecrecover is compared with), z a scalar; no bitmask."""
    if not 0 < z < _SECP256K1_N:
        raise CodecError(f"z must be a nonzero scalar below the group order, got {z}")
    point = r.format(compressed=False)
    return PackedSignatures(0, point[1:] + z.to_bytes(WORD, "big"))


def pack_approvals(signatures: Sequence[bytes]) -> bytes:
    """Members' approvals of a group key (65-byte signatures over the key approval digest),
    as ``setThresholdConfig`` takes them: EIP-2098 pairs, concatenated, in any order."""
    return b"".join(to_compact(sig) for sig in signatures)


@dataclass(frozen=True, slots=True)
class ThresholdKey:
    """A FROST group key as the contract stores it, and the transcript hash of the key
    generation that made it (what the members approve)."""

    x: int
    y_parity: int
    transcript_hash: bytes

    def __post_init__(self) -> None:
        if not 0 < self.x < _SECP256K1_N:
            raise CodecError(
                f"a group key's x must be below the group order (ecrecover's r), got {self.x:#x}; "
                "run the key generation again"
            )
        if self.y_parity not in (0, 1):
            raise CodecError(f"y parity must be 0 or 1, got {self.y_parity}")
        if len(self.transcript_hash) != WORD:
            raise CodecError(f"transcript hash must be 32 bytes, got {len(self.transcript_hash)}")

    @classmethod
    def from_point(cls, group_public_key: PublicKey, transcript_hash: bytes) -> ThresholdKey:
        x, y = group_public_key.point()
        return cls(x, y & 1, transcript_hash)

    def as_tuple(self) -> tuple[int, int, bytes]:
        return (self.x, self.y_parity, self.transcript_hash)


def feed_id_bytes(feed_id: str) -> bytes:
    """On-chain ``bytes32`` id of a feed name: ``keccak256(utf8(feed_id))``.

    Hashing (rather than right-padding) takes names of any length, never collides with the
    zero id the contract reserves, and matches how feed ids are derived on other oracles.
    """
    if not feed_id:
        raise CodecError("feed id must be a non-empty string")
    return keccak(feed_id.encode("utf-8"))


def config_digest(
    *,
    chain_id: int,
    contract: str,
    config_count: int,
    signers: Sequence[str],
    transmitters: Sequence[str],
    f: int,
    threshold: int,
    offchain_config: bytes,
    group_key: ThresholdKey | None = None,
) -> bytes:
    """Mirror of ``QuorumOracle._configDigest``, scheme 0x0001, or 0x0002 with ``group_key``:
    lets a node check the digest it was given, and compute the one it approves a group key
    for (``config_count`` is then the next one)."""
    types = ["uint256", "address", "uint64", "address[]", "address[]", "uint8", "uint8", "bytes"]
    values: list[object] = [
        chain_id,
        _checksum(_address_bytes(contract)),
        config_count,
        [_checksum(_address_bytes(a)) for a in signers],
        [_checksum(_address_bytes(a)) for a in transmitters],
        f,
        threshold,
        offchain_config,
    ]
    encoded = abi_encode(types, values)
    scheme = SIGNATURE_SCHEME
    if group_key is not None:
        encoded += abi_encode(["uint256", "uint8", "bytes32"], list(group_key.as_tuple()))
        scheme = THRESHOLD_SCHNORR_SCHEME
    digest = keccak(encoded)
    return scheme.to_bytes(2, "big") + digest[2:]

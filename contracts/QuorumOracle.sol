// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Governed} from "./Governed.sol";

/// @title QuorumOracle
/// @notice Stores multi-feed reports attested by a threshold of an on-chain committee
/// (DESIGN.md §6). A report is `updates` (one 32-byte word per feed) signed with EIP-712 by
/// at least `threshold` committee signers; signatures travel as EIP-2098 compact pairs in
/// ascending signer order plus a signer bitmask, which makes signer distinctness free.
/// Three entry points take a report in the same encoding: `transmit` (the committee's
/// transmitters, the push path), `submit` (anyone: the pull path, feeds newer than stored)
/// and `verifyReport` (a view: the report's values, nothing stored). docs/contracts.md has
/// the checks of each and the safety model of the pull path.
///
/// Storage is laid out for the transmit hot path (docs/contracts.md has the gas budget):
///  - one slot (`s_transmission`) holds the config blob pointer, the (epoch, round)
///    watermark, n, threshold, the latest signer count and the pause flag;
///  - everything transmit reads but never writes lives in the code of a data contract
///    (SSTORE2): config digest, signers, transmitters and the feed table (bounds, breaker
///    limit, heartbeat, history depth). One cold EXTCODECOPY (2.6k gas) replaces a cold
///    SLOAD per signer and per feed; it is redeployed when the owner changes any of it;
///  - the latest answer of a feed is 128 bits (value int64, updatedAt, roundId, breaker
///    state), two feeds per slot: a 10-feed report writes five slots, not ten. The price of
///    that is the value range: stored values are int64 (as Pyth's), so feed bounds must lie
///    within int64 and decimals must be chosen accordingly (8 for USD prices);
///  - updatedAt is min(observation time, block time): never after the block that stored it;
///  - history (for getRoundData) is opt-in per feed, a ring of `historyDepth` slots.
///
/// Ownership (two-step) and the guardian come from Governed; the pause flag it sets is the
/// top byte of the hot slot, so transmit checks it with the load it does anyway.
contract QuorumOracle is Governed {
    // ---------------------------------------------------------------- constants

    uint256 public constant MAX_SIGNERS = 31;
    /// Clock skew tolerated between a node's observation time and the block timestamp.
    uint256 public constant MAX_FUTURE_SKEW = 60;
    /// Signature scheme, written into the top two bytes of every config digest so that a
    /// report signed for one scheme can never verify under another (DESIGN.md §6).
    /// 0x0001 = per-signer secp256k1 ECDSA over EIP-712, EIP-2098 compact on the wire.
    uint256 public constant SIGNATURE_SCHEME = 0x0001;
    /// 0x0002 = threshold Schnorr, FROST(secp256k1, SHA-256) of RFC 9591: one signature (R, z)
    /// per report under a group key the committee made with a distributed key generation and
    /// approved (setThresholdConfig). Both schemes run on this code; the digest picks one.
    uint256 public constant THRESHOLD_SCHNORR_SCHEME = 0x0002;
    /// Consecutive in-limit reports that clear a tripped breaker by themselves.
    uint256 public constant BREAKER_CLEAR_REPORTS = 2;
    /// Bytes per feed in the code-stored feed table (one word: no shifting to read an entry).
    uint256 private constant ENTRY_BYTES = 32;
    /// The blob's group key: compressed SEC1 (0x02 | 0x03, x), zero under scheme 0x0001. The
    /// feed table starts after it, at TABLE_BASE + 40 n.
    uint256 private constant KEY_BYTES = 33;
    uint256 private constant TABLE_BASE = 66; // 1 + 32 + KEY_BYTES
    /// EIP-170: the most code a data contract may hold.
    uint256 private constant MAX_BLOB_BYTES = 24_576;
    uint256 private constant MAX_ROUND_ID = (1 << 29) - 1;

    uint256 private constant DIGEST_PREFIX_MASK = type(uint256).max >> 16;
    uint256 private constant MASK_128 = (1 << 128) - 1;
    uint256 private constant ADDRESS_MASK = (1 << 160) - 1;
    /// EIP-2098: vs without its top (y parity) bit is s.
    uint256 private constant S_MASK = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    /// Table entry bits of breakerBps, and the bit above them that turns the feed's
    /// FeedUpdated event off.
    uint256 private constant BPS_MASK = 0x7fff << 224;
    uint256 private constant QUIET_BIT = 1 << 239;
    uint256 private constant FLOOR_MASK = (1 << 64) - 1;
    /// The hot slot without epoch (bits 160..191), round (192..223), signer count (240..247).
    uint256 private constant WATERMARK_CLEAR_MASK = 0xff00ffff0000000000000000ffffffffffffffffffffffffffffffffffffffff;
    /// Most feed indexes: the feed slots are a fixed array of 2^15 pairs.
    uint256 private constant FEED_PAIRS = 1 << 15;
    /// secp256k1: the group order and the field prime.
    uint256 private constant CURVE_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 private constant CURVE_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;
    /// RFC 9591's challenge H2 is hash_to_field with expand_message_xmd (SHA-256, 48 bytes) and
    /// DST "FROST-secp256k1-SHA256-v1chal" (29 bytes). b0 hashes Z_pad || msg || I2OSP(48, 2) ||
    /// 0x00 || DST || 0x1d: the tail after msg is this word and one byte 0x1d. b1 and b2 hash
    /// 33 bytes then DST || 0x1d: this word's first 30 bytes.
    uint256 private constant CHALLENGE_B0_TAIL = 0x00300046524f53542d736563703235366b312d5348413235362d76316368616c;
    uint256 private constant CHALLENGE_DST_PRIME = 0x46524f53542d736563703235366b312d5348413235362d76316368616c1d0000;
    /// How _applyUpdates treats each feed: push (transmit: a feed older than stored reverts),
    /// submit of a report newer than the (epoch, round) watermark (an older feed is skipped),
    /// submit of a report at or below it (only strictly later feeds, see docs/contracts.md),
    /// verify (the checks only, nothing read from or written to storage).
    uint256 private constant MODE_PUSH = 0;
    uint256 private constant MODE_SUBMIT = 1;
    uint256 private constant MODE_SUBMIT_LATE = 2;
    uint256 private constant MODE_VERIFY = 3;
    /// Calldata offsets of the report arguments (transmit, submit, verifyReport share them),
    /// fixed because the encoding is required to be canonical.
    uint256 private constant CD_UPDATES_LENGTH = 0xc4;
    uint256 private constant CD_UPDATES = 0xe4;

    // Selectors and topics for transmit's assembly (test_oracle checks them against the ABI).
    uint256 private constant ERR_PAUSED = 0x9e87fac8;
    uint256 private constant ERR_UNAUTHORIZED_TRANSMITTER = 0x12c92d94;
    uint256 private constant ERR_CONFIG_DIGEST_MISMATCH = 0x93df584c;
    uint256 private constant ERR_STALE_ROUND = 0xb21bc572;
    uint256 private constant ERR_UNKNOWN_SIGNER = 0xbda62c23;
    uint256 private constant ERR_SIGNATURE_COUNT_MISMATCH = 0x0ad1c981;
    uint256 private constant ERR_INSUFFICIENT_SIGNATURES = 0xf1e86aa6;
    uint256 private constant ERR_SIGNER_MISMATCH = 0x326b95cc;
    uint256 private constant ERR_INVALID_UPDATES = 0x3fa8e0ec;
    uint256 private constant ERR_UNKNOWN_FEED = 0x47b05425;
    uint256 private constant ERR_VALUE_OUT_OF_BOUNDS = 0x45bc5a1f;
    uint256 private constant ERR_OBSERVATION_IN_FUTURE = 0xb564dc52;
    uint256 private constant ERR_OBSERVATION_TOO_OLD = 0x9f3015f9;
    uint256 private constant ERR_ROUND_ID_EXHAUSTED = 0x5d9bb504;
    uint256 private constant ERR_OBSERVATION_EXPIRED = 0x8dbcd00f;
    uint256 private constant ERR_MALFORMED_CALLDATA = 0x5de92f80;
    uint256 private constant ERR_MALFORMED_SCHNORR_SIGNATURE = 0x8af8ee10;
    uint256 private constant ERR_INVALID_SCHNORR_SIGNATURE = 0xf08f7bd8;
    uint256 private constant REPORT_TYPEHASH_WORD = 0x20fa91086326136eb7ca711ac4b00478a7dd88e600c59d619f355a8ae8ba306f;
    uint256 private constant NEW_TRANSMISSION_TOPIC = 0xd3affd46d3660297c4b7189ba15673d28634924551b5a61ae7fb676b1e3467bb;
    uint256 private constant BREAKER_TRIPPED_TOPIC = 0xec95ae040e9e69716540543e0d56b4715250ab657d9048d3e1e4282079c05755;
    uint256 private constant BREAKER_CLEARED_TOPIC = 0xf0e50bbc7d3b2dbef2ed9a6aceeea80888578e86df1aeae3795320ac7f21ac6e;
    uint256 private constant FEED_UPDATED_TOPIC = 0x15f23e96e64af7a42545235af5daaa27622c0fe118d35843792c7524d7cd2cd0;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant REPORT_TYPEHASH =
        keccak256("Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)");
    bytes32 private constant KEY_APPROVAL_TYPEHASH =
        keccak256("KeyApproval(bytes32 configDigest,uint256 groupKeyX,uint8 groupKeyYParity,bytes32 transcriptHash)");
    bytes32 private constant NAME_HASH = keccak256("QuorumOracle");
    bytes32 private constant VERSION_HASH = keccak256("1");

    // ---------------------------------------------------------------- errors

    // Administration (NotOwner, NotPendingOwner, NotGuardian, ZeroAddress: Governed)
    error LengthMismatch(uint256 signers, uint256 transmitters);
    error TooManySigners(uint256 n, uint256 max);
    error FaultToleranceTooHigh(uint256 n, uint8 f);
    error InvalidThreshold(uint8 threshold, uint8 f, uint256 n);
    /// f = 0 tolerates no faulty member: one wrong signer would be a wrong value.
    error ZeroFaultTolerance();
    error DuplicateAddress(address account);
    error CommitteeStoreFailed();
    error InvalidFeedId();
    error InvalidBounds(int192 minValue, int192 maxValue);
    error InvalidFeedParameters(uint16 breakerBps, uint32 heartbeat);
    error BreakerNotTripped(uint16 feedIndex);
    error FeedExists(bytes32 feedId);
    error TooManyFeeds();
    error UnknownFeedId(bytes32 feedId);
    /// A group key that is not a point of secp256k1 with x below the group order (ecrecover's
    /// r must be), or a y parity that is not 0 or 1.
    error InvalidGroupKey(uint256 x, uint8 yParity);
    /// Approvals are 64-byte EIP-2098 signatures, concatenated.
    error MalformedApprovals(uint256 length);
    /// An approval that recovers to no member of the new committee: signed by an outsider, or
    /// over another key, transcript or config.
    error ForeignApproval(address recovered);
    error DuplicateApproval(address member);
    error InsufficientApprovals(uint256 count, uint256 threshold);

    // Transmission
    error Paused();
    error UnauthorizedTransmitter(address sender);
    error ConfigDigestMismatch(bytes32 expected, bytes32 actual);
    error StaleRound(uint32 latestEpoch, uint32 latestRound);
    error UnknownSigner(uint256 signerBitmask);
    error SignatureCountMismatch(uint256 bitmaskSigners, uint256 signatureBytes);
    error InsufficientSignatures(uint256 count, uint256 threshold);
    /// Also the outcome for a "duplicate signer": the bitmask cannot name an index twice,
    /// so a repeated signature necessarily sits under some other index and recovers to an
    /// address that is not that index's signer.
    error SignerMismatch(uint256 signerIndex, address recovered);
    error InvalidUpdates();
    error UnknownFeed(uint16 feedIndex);
    error ValueOutOfBounds(uint16 feedIndex, int192 value);
    error ObservationInFuture(uint16 feedIndex, uint32 observedAt);
    error ObservationTooOld(uint16 feedIndex, uint32 observedAt, uint32 latestObservedAt);
    error RoundIdExhausted(uint16 feedIndex);
    /// Observed longer ago than the feed's heartbeat: stale before it is stored.
    error ObservationExpired(uint16 feedIndex, uint32 observedAt, uint32 heartbeat);
    /// The report arguments are not canonically ABI-encoded, or bytes follow them (as OCR2
    /// refuses them: calldata that readers decode must mean one thing).
    error MalformedCalldata(uint256 expectedLength, uint256 actualLength);
    /// Under scheme 0x0002 a report carries no signer bitmask (0) and one signature of 96 bytes:
    /// R's x and y, and z.
    error MalformedSchnorrSignature(uint256 signerBitmask, uint256 signatureBytes);
    /// (R, z) is not a signature of the report digest under the configured group key.
    error InvalidSchnorrSignature();

    // Reads
    error RoundNotAvailable(uint16 feedIndex, uint80 roundId);

    // ---------------------------------------------------------------- events
    // (OwnershipTransferStarted, OwnershipTransferred, GuardianSet, PausedSet: Governed)

    event ConfigSet(
        bytes32 previousConfigDigest,
        uint64 configCount,
        bytes32 configDigest,
        address[] signers,
        address[] transmitters,
        uint8 f,
        uint8 threshold,
        bytes offchainConfig
    );
    /// A group key was installed with the config `configDigest` (scheme 0x0002).
    event GroupKeySet(bytes32 indexed configDigest, uint256 x, uint8 yParity, bytes32 transcriptHash);
    event FeedAdded(
        uint16 indexed feedIndex,
        bytes32 indexed feedId,
        uint8 decimals,
        string description,
        int192 minValue,
        int192 maxValue
    );
    event FeedParametersSet(uint16 indexed feedIndex, FeedParameters parameters);
    /// A report's value for the feed jumped beyond the breaker limit: it was not stored.
    event BreakerTripped(uint16 indexed feedIndex, int64 lastGoodValue, int192 rejectedValue, uint32 observedAt);
    /// The breaker cleared: by BREAKER_CLEAR_REPORTS consecutive in-limit reports (byGuardian
    /// false, the value is stored), or by an owner/guardian reset (the next report re-anchors).
    event BreakerCleared(uint16 indexed feedIndex, bool byGuardian);
    /// A report landed through transmit (the push path).
    event NewTransmission(uint32 epoch, uint32 round, uint256 signerBitmask);
    /// A report landed through submit (the pull path); `feedsStored` of its feeds were newer.
    event ReportSubmitted(uint32 epoch, uint32 round, uint256 signerBitmask, address indexed sender, uint256 feedsStored);
    /// One feed's stored value (value, updatedAt = min(observation time, block time), its new
    /// round id), unless the feed's events are off (FeedParameters.updateEvents).
    event FeedUpdated(uint16 indexed feedIndex, int192 value, uint32 updatedAt, uint32 roundId);

    // ---------------------------------------------------------------- storage

    /// The transmit hot slot (256 bits).
    struct Transmission {
        address blob; // code = 0x00 || configDigest || signers || transmitters || group key || feed table
        uint32 epoch;
        uint32 round;
        uint8 n;
        uint8 threshold;
        uint8 latestSignerCount;
        uint8 pauseLevel; // 0 running, Governed.PAUSED_BY_GUARDIAN or PAUSED_BY_OWNER
    }

    struct ConfigMeta {
        uint64 configCount;
        uint32 blockNumber;
        uint8 f;
        uint16 feedCount;
    }

    /// A feed's parameters (addFeed, setFeedParameters, feedParameters).
    struct FeedParameters {
        int192 minValue; // bounds, within int64 (the stored width)
        int192 maxValue;
        uint16 breakerBps; // largest jump from the last good value, in bps; 0 = no breaker
        uint64 breakerFloor; // a jump of at most this many units is always within the limit
        uint32 heartbeat; // age (s) after which the value is stale; also the oldest accepted
        uint8 historyDepth; // past rounds kept for getRoundData (0: the latest only)
        bool updateEvents; // emit FeedUpdated for each stored value
    }

    /// A threshold group key (scheme 0x0002): the point (x, y parity) and the hash of the key
    /// generation's transcript the members approved.
    struct GroupKey {
        uint256 x;
        uint8 yParity;
        bytes32 transcriptHash;
    }

    struct FeedInfo {
        bytes32 feedId;
        uint8 decimals;
        string description;
    }

    /// What a reader needs to judge a value (FeedProxy.latestStatus, RiskGate).
    struct FeedStatus {
        int256 value;
        uint32 observedAt; // updatedAt: min(observation time, block time of the report)
        uint32 roundId;
        bool stale; // never written, or older than the feed's heartbeat, or the oracle is paused
        bool tripped; // the breaker holds the last good value back from a jump
        uint8 signerCount; // signatures on the latest report (every stored value had >= threshold)
        uint8 threshold;
        uint32 heartbeat;
    }

    // Slots 0..2 are Governed's (owner, pendingOwner, guardian); transmit's assembly names
    // the slots below by `.slot`, so the layout is the compiler's to keep consistent.
    Transmission private s_transmission;
    bytes32 private s_configDigest; // for reads; transmit reads the blob's copy
    ConfigMeta private s_configMeta;
    bytes private s_offchainConfig;
    /// Feed 2k in the low 128 bits, 2k+1 in the high: value int64 | updatedAt u32 | ahead u1
    /// | roundId u29 | tripped u1 | flag u1 (ahead: observed after its block's time, so
    /// updatedAt is the block's; flag: tripped -> one in-limit report seen; not tripped ->
    /// re-anchor on the next report after a reset).
    /// A fixed array, not a mapping: transmit finds a pair's slot by an addition, no hashing.
    uint256[FEED_PAIRS] private s_feedPairs;
    mapping(uint256 => mapping(uint256 => uint256)) private s_history; // feed => roundId % depth => half
    mapping(uint256 => FeedInfo) private s_feedInfo;
    mapping(bytes32 => uint256) private s_feedIndexPlusOne;
    bytes32 private s_transcriptHash; // of the current group key (scheme 0x0002), for reads

    uint256 private immutable i_cachedChainId;
    bytes32 private immutable i_cachedDomainSeparator;

    constructor() {
        i_cachedChainId = block.chainid;
        i_cachedDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- pause (Governed)

    function _pauseLevel() internal view override returns (uint8) {
        return s_transmission.pauseLevel;
    }

    function _setPauseLevel(uint8 level) internal override {
        s_transmission.pauseLevel = level;
    }

    // ---------------------------------------------------------------- configuration

    function setConfig(
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig
    ) external onlyOwner {
        _setConfig(signers, transmitters, f, threshold, offchainConfig, GroupKey(0, 0, 0));
    }

    /// Installs a committee under scheme 0x0002 with its threshold group key. Accepted only with
    /// `approvals` (64-byte EIP-2098 signatures, concatenated, any order) from at least
    /// `threshold` distinct members of the new committee over keyApprovalDigest(the new config
    /// digest, the key, the transcript hash): the owner chooses the committee, as with setConfig,
    /// but cannot install a key its members did not make. The config digest commits to the key
    /// and the transcript, and to the config count, so an approval serves one config only.
    function setThresholdConfig(
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig,
        GroupKey calldata key,
        bytes calldata approvals
    ) external onlyOwner {
        _requireGroupKey(key.x, key.yParity);
        // Checked after the install (all of it reverts with them): the digest is the new one.
        bytes32 digest = _setConfig(signers, transmitters, f, threshold, offchainConfig, key);
        _requireApprovals(
            keyApprovalDigest(digest, key.x, key.yParity, key.transcriptHash), signers, threshold, approvals
        );
        emit GroupKeySet(digest, key.x, key.yParity, key.transcriptHash);
    }

    /// The EIP-712 digest each member signs to approve a group key for a config (domain as
    /// for reports): KeyApproval(configDigest, groupKeyX, groupKeyYParity, transcriptHash).
    function keyApprovalDigest(bytes32 configDigest, uint256 x, uint8 yParity, bytes32 transcriptHash)
        public
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(KEY_APPROVAL_TYPEHASH, configDigest, x, yParity, transcriptHash));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), structHash));
    }

    /// The current group key (zero under scheme 0x0001) and its key generation's transcript hash.
    function groupKey() external view returns (uint256 x, uint8 yParity, bytes32 transcriptHash) {
        Transmission memory t = s_transmission;
        bytes memory committee = _loadCommittee(t.blob, t.n);
        uint256 keyAt = 40 * uint256(t.n);
        uint256 prefix;
        assembly ("memory-safe") {
            let p := add(add(committee, 32), keyAt)
            prefix := byte(0, mload(p))
            x := mload(add(p, 1))
        }
        yParity = prefix == 0 ? 0 : uint8(prefix - 2);
        transcriptHash = s_transcriptHash;
    }

    /// A new committee; `key.x` = 0 for scheme 0x0001 (no group key).
    function _setConfig(
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig,
        GroupKey memory key
    ) private returns (bytes32 digest) {
        _validateConfig(signers, transmitters, f, threshold);
        ConfigMeta memory meta = s_configMeta;
        uint64 configCount = meta.configCount + 1;
        digest = _configDigest(configCount, signers, transmitters, f, threshold, offchainConfig, key);
        emit ConfigSet(s_configDigest, configCount, digest, signers, transmitters, f, threshold, offchainConfig);
        s_configDigest = digest;
        s_configMeta = ConfigMeta(configCount, uint32(block.number), f, meta.feedCount);
        s_offchainConfig = offchainConfig;
        s_transcriptHash = key.transcriptHash;
        _commitCommittee(digest, signers, transmitters, threshold, meta.feedCount, key);
    }

    /// Each approval must recover to a member not seen before; then at least `threshold` of them.
    function _requireApprovals(bytes32 digest, address[] calldata signers, uint256 threshold, bytes calldata approvals)
        private
        pure
    {
        if (approvals.length % 64 != 0) revert MalformedApprovals(approvals.length);
        uint256 count = approvals.length / 64;
        uint256 seen;
        for (uint256 k; k < count; ++k) {
            bytes32 r = bytes32(approvals[64 * k:64 * k + 32]);
            uint256 vs = uint256(bytes32(approvals[64 * k + 32:64 * k + 64]));
            address member = ecrecover(digest, uint8(27 + (vs >> 255)), r, bytes32(vs & S_MASK));
            uint256 i;
            while (i < signers.length && signers[i] != member) ++i;
            if (member == address(0) || i == signers.length) revert ForeignApproval(member);
            if ((seen >> i) & 1 == 1) revert DuplicateApproval(member);
            seen |= 1 << i;
        }
        if (count < threshold) revert InsufficientApprovals(count, threshold);
    }

    /// x below the group order (ecrecover's r), a parity bit, and x^3 + 7 a square mod p (so a
    /// point with that x exists): checked with the modexp precompile, y = (x^3 + 7)^((p+1)/4).
    function _requireGroupKey(uint256 x, uint8 yParity) private view {
        bool ok = x != 0 && x < CURVE_N && yParity <= 1;
        if (ok) {
            uint256 rhs = addmod(mulmod(mulmod(x, x, CURVE_P), x, CURVE_P), 7, CURVE_P);
            (bool called, bytes memory out) =
                address(5).staticcall(abi.encodePacked(uint256(32), uint256(32), uint256(32), rhs, (CURVE_P + 1) / 4, CURVE_P));
            uint256 y = called && out.length == 32 ? abi.decode(out, (uint256)) : 0;
            ok = called && mulmod(y, y, CURVE_P) == rhs;
        }
        if (!ok) revert InvalidGroupKey(x, yParity);
    }

    function _commitCommittee(
        bytes32 digest,
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 threshold,
        uint16 count,
        GroupKey memory key
    ) private {
        uint256 n = signers.length;
        bytes memory committee = new bytes(40 * n + KEY_BYTES);
        for (uint256 i; i < n; ++i) {
            _writeAddress(committee, 20 * i, signers[i]);
            _writeAddress(committee, 20 * (n + i), transmitters[i]);
        }
        if (key.x != 0) {
            // Compressed SEC1: 0x02 | y parity, then x.
            uint256 offset = 40 * n + 32;
            uint256 prefix = 2 + key.yParity;
            uint256 x = key.x;
            assembly ("memory-safe") {
                let p := add(committee, offset)
                mstore8(p, prefix)
                mstore(add(p, 1), x)
            }
        }
        Transmission memory t = s_transmission;
        bytes memory table = _feedTable(t, count, 0);
        // A new committee starts a new (epoch, round) sequence: the watermark resets. The
        // latest signer count stays: it describes the report behind the stored values.
        s_transmission = Transmission(
            _storeBlob(digest, committee, table), 0, 0, uint8(signers.length), threshold, t.latestSignerCount, t.pauseLevel
        );
    }

    function latestConfigDetails() external view returns (uint64 configCount, uint32 blockNumber, bytes32 configDigest) {
        ConfigMeta memory meta = s_configMeta;
        return (meta.configCount, meta.blockNumber, s_configDigest);
    }

    function getConfig()
        external
        view
        returns (address[] memory signers, address[] memory transmitters, uint8 f, uint8 threshold, bytes memory offchainConfig)
    {
        Transmission memory t = s_transmission;
        uint256 n = t.n;
        bytes memory committee = _loadCommittee(t.blob, n);
        signers = new address[](n);
        transmitters = new address[](n);
        for (uint256 i; i < n; ++i) {
            signers[i] = _addressAt(committee, i);
            transmitters[i] = _addressAt(committee, n + i);
        }
        return (signers, transmitters, s_configMeta.f, t.threshold, s_offchainConfig);
    }

    // ---------------------------------------------------------------- feeds

    /// Registers a feed with `parameters` (FeedParameters: bounds within int64, the circuit
    /// breaker's limit and floor, heartbeat > 0, history depth, FeedUpdated on or off).
    function addFeed(bytes32 feedId, uint8 decimals, string calldata description, FeedParameters calldata parameters)
        external
        onlyOwner
        returns (uint16 index)
    {
        if (feedId == bytes32(0)) revert InvalidFeedId();
        if (s_feedIndexPlusOne[feedId] != 0) revert FeedExists(feedId);
        index = s_configMeta.feedCount;
        _storeEntry(index, 1, _entry(index, decimals, parameters));
        s_feedInfo[index] = FeedInfo(feedId, decimals, description);
        s_feedIndexPlusOne[feedId] = uint256(index) + 1;
        s_configMeta.feedCount = index + 1;
        emit FeedAdded(index, feedId, decimals, description, parameters.minValue, parameters.maxValue);
    }

    /// Replaces a feed's parameters. A new history depth is safe: a ring slot answers only
    /// for the round id stored in it.
    function setFeedParameters(uint16 index, FeedParameters calldata parameters) external onlyOwner {
        uint256 old = _readEntry(s_transmission, index);
        _storeEntry(index, 0, _entry(index, uint8(old >> 248), parameters));
    }

    /// Redeploys the blob with `entry` at `index` (extra = 1: appended as a new feed).
    function _storeEntry(uint16 index, uint256 extra, uint256 entry) private {
        Transmission memory t = s_transmission;
        bytes memory table = _feedTable(t, s_configMeta.feedCount, extra);
        _putEntry(table, index, entry);
        s_transmission.blob = _storeBlob(s_configDigest, _loadCommittee(t.blob, t.n), table);
    }

    /// Clears a tripped breaker; the next attested value is stored whatever its jump and
    /// becomes the new reference. For a market that really moved beyond the limit. A feed
    /// that is not tripped reverts: clearing it would skip its next breaker check.
    function resetBreaker(uint16 index) external onlyGuardianOrOwner {
        _readEntry(s_transmission, index);
        uint256 shift = (uint256(index) & 1) * 128;
        uint256 packed = s_feedPairs[index >> 1];
        uint256 half = (packed >> shift) & MASK_128;
        if (half & 2 == 0) revert BreakerNotTripped(index);
        half = (half & ~uint256(3)) | 1; // tripped = 0, re-anchor = 1
        s_feedPairs[index >> 1] = (packed & ~(MASK_128 << shift)) | (half << shift);
        emit BreakerCleared(index, true);
    }

    function feedCount() external view returns (uint16) {
        return s_configMeta.feedCount;
    }

    function feedIndexOf(bytes32 feedId) external view returns (uint16) {
        uint256 plusOne = s_feedIndexPlusOne[feedId];
        if (plusOne == 0) revert UnknownFeedId(feedId);
        return uint16(plusOne - 1);
    }

    function feedInfo(uint16 index)
        external
        view
        returns (bytes32 feedId, uint8 decimals, string memory description, int192 minValue, int192 maxValue)
    {
        uint256 entry = _readEntry(s_transmission, index);
        FeedInfo storage info = s_feedInfo[index];
        return (info.feedId, info.decimals, info.description, int64(uint64(entry >> 128)), int64(uint64(entry >> 64)));
    }

    function feedParameters(uint16 index) external view returns (FeedParameters memory parameters) {
        uint256 entry = _readEntry(s_transmission, index);
        parameters.minValue = int64(uint64(entry >> 128));
        parameters.maxValue = int64(uint64(entry >> 64));
        parameters.breakerBps = uint16(entry >> 224) & 0x7fff;
        parameters.breakerFloor = uint64(entry);
        parameters.heartbeat = uint32(entry >> 192);
        parameters.historyDepth = uint8(entry >> 240);
        parameters.updateEvents = (entry >> 239) & 1 == 0;
    }

    function feedDecimals(uint16 index) external view returns (uint8) {
        return uint8(_readEntry(s_transmission, index) >> 248);
    }

    function latestFeed(uint16 index) external view returns (int192 value, uint32 observedAt, uint32 roundId) {
        _readEntry(s_transmission, index);
        uint256 half = _half(index);
        return (int64(uint64(half >> 64)), uint32(half >> 32), uint32((half >> 2) & MAX_ROUND_ID));
    }

    /// The latest value with what a proxy needs to present it, from two storage reads and no
    /// feed table read (FeedProxy checks its index once, at deployment): an index that is
    /// not a feed reads as never written (roundId 0).
    function latestFeedState(uint16 index)
        external
        view
        returns (int192 value, uint32 updatedAt, uint32 roundId, bool tripped, bool isPaused)
    {
        uint256 half = _half(index);
        return (
            int64(uint64(half >> 64)),
            uint32(half >> 32),
            uint32((half >> 2) & MAX_ROUND_ID),
            (half >> 1) & 1 == 1,
            s_transmission.pauseLevel != 0
        );
    }

    function feedStatus(uint16 index) public view returns (FeedStatus memory status) {
        Transmission memory t = s_transmission;
        uint256 entry = _readEntry(t, index);
        uint256 half = _half(index);
        status.value = int64(uint64(half >> 64));
        status.observedAt = uint32(half >> 32);
        status.roundId = uint32((half >> 2) & MAX_ROUND_ID);
        status.tripped = (half >> 1) & 1 == 1;
        status.heartbeat = uint32(entry >> 192);
        status.stale = t.pauseLevel != 0 || status.roundId == 0
            || block.timestamp > uint256(status.observedAt) + status.heartbeat;
        status.signerCount = t.latestSignerCount;
        status.threshold = t.threshold;
    }

    /// A past round of a feed (the latest, or one of the last historyDepth ones).
    function roundData(uint16 index, uint80 roundId) external view returns (int192 value, uint32 observedAt) {
        uint256 entry = _readEntry(s_transmission, index);
        uint256 half = _half(index);
        uint256 latest = (half >> 2) & MAX_ROUND_ID;
        if (roundId == 0 || roundId > latest) revert RoundNotAvailable(index, roundId);
        if (roundId != latest) {
            uint256 depth = uint8(entry >> 240);
            if (depth == 0 || latest - roundId >= depth) revert RoundNotAvailable(index, roundId);
            half = s_history[index][roundId % depth];
            if ((half >> 2) & MAX_ROUND_ID != roundId) revert RoundNotAvailable(index, roundId);
        }
        return (int64(uint64(half >> 64)), uint32(half >> 32));
    }

    // ---------------------------------------------------------------- reports

    function latestEpochAndRound() external view returns (uint32 epoch, uint32 round) {
        Transmission memory t = s_transmission;
        return (t.epoch, t.round);
    }

    function latestTransmissionDetails()
        external
        view
        returns (bytes32 configDigest, uint32 epoch, uint32 round, uint8 signerCount)
    {
        Transmission memory t = s_transmission;
        return (s_configDigest, t.epoch, t.round, t.latestSignerCount);
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == i_cachedChainId ? i_cachedDomainSeparator : _buildDomainSeparator();
    }

    /// The EIP-712 digest every signer signs; exposed so off-chain code can check its own.
    function reportDigest(bytes32 configDigest, uint32 epoch, uint32 round, bytes calldata updates)
        public
        view
        returns (bytes32 digest)
    {
        bytes32 separator = domainSeparator();
        bytes32 typehash = REPORT_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            calldatacopy(p, updates.offset, updates.length)
            let updatesHash := keccak256(p, updates.length)
            mstore(p, typehash)
            mstore(add(p, 0x20), configDigest)
            mstore(add(p, 0x40), epoch)
            mstore(add(p, 0x60), round)
            mstore(add(p, 0x80), updatesHash)
            let structHash := keccak256(p, 0xa0)
            mstore(p, 0x1901)
            mstore(add(p, 0x20), separator)
            mstore(add(p, 0x40), structHash)
            digest := keccak256(add(p, 0x1e), 0x42)
        }
    }

    /// Push path: verifies and stores a report; committee transmitters only. The checks and
    /// their order are those of docs/contracts.md; every feed must be at least as recent as
    /// its stored value (ObservationTooOld otherwise) and (epoch, round) must rise.
    function transmit(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures
    ) external {
        (configDigest, updates, signatures); // read by _verifyReport from the calldata itself
        (uint256 t, uint256 count) = _verifyReport(true);
        _applyUpdates(t, MODE_PUSH);
        _advanceWatermark(t, epoch, round, count);
        assembly {
            mstore(0x80, epoch)
            mstore(0xa0, round)
            mstore(0xc0, signerBitmask)
            log1(0x80, 0x60, NEW_TRANSMISSION_TOPIC)
        }
    }

    /// Pull path: anyone may submit a report the current committee signed. Each feed in it
    /// is stored only if newer than the stored one, else skipped (never a revert, so a
    /// front-runner who lands the same report first cannot make this call fail); returns how
    /// many were stored. A report above the (epoch, round) watermark advances it, as transmit
    /// would. docs/contracts.md: what "newer" means and the safety model.
    function submit(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures
    ) external returns (uint256 feedsStored) {
        (configDigest, updates, signatures); // read by _verifyReport from the calldata itself
        (uint256 t, uint256 count) = _verifyReport(false);
        uint256 watermark = (((t >> 160) & 0xffffffff) << 32) | ((t >> 192) & 0xffffffff);
        bool inSequence = ((uint256(epoch) << 32) | round) > watermark;
        feedsStored = _applyUpdates(t, inSequence ? MODE_SUBMIT : MODE_SUBMIT_LATE);
        if (inSequence) _advanceWatermark(t, epoch, round, count);
        emit ReportSubmitted(epoch, round, signerBitmask, msg.sender, feedsStored);
    }

    /// Verify only: the report's feeds, if the current committee signed it for this chain and
    /// contract and every feed passes transmit's per-feed checks (known, in bounds, not in the
    /// future, not older than its heartbeat). Nothing is compared with or written to storage,
    /// so any report of the current committee verifies, however old its round; refusals are
    /// transmit's named errors. For consumers that keep their own copy of the values.
    function verifyReport(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures
    ) external view returns (uint16[] memory feedIndexes, int192[] memory values, uint32[] memory observedAts) {
        (configDigest, epoch, round, signerBitmask, signatures); // read by _verifyReport from the calldata
        (uint256 t,) = _verifyReport(false);
        _viewOnly(_applyUpdates)(t, MODE_VERIFY);
        uint256 n = updates.length >> 5;
        feedIndexes = new uint16[](n);
        values = new int192[](n);
        observedAts = new uint32[](n);
        for (uint256 i; i < n; ++i) {
            uint256 word = uint256(bytes32(updates[i << 5:(i + 1) << 5]));
            feedIndexes[i] = uint16(word >> 240);
            observedAts[i] = uint32(word >> 208);
            values[i] = int192(uint192(word));
        }
    }

    // ---------------------------------------------------------------- internals: reports

    /// In MODE_VERIFY, _applyUpdates neither writes storage nor logs: verifyReport may run it
    /// under a view signature (the compiler cannot see the mode), so the per-feed checks are
    /// one piece of code for all three entry points.
    function _viewOnly(function(uint256, uint256) internal returns (uint256) f)
        private
        pure
        returns (function(uint256, uint256) internal view returns (uint256) g)
    {
        assembly {
            g := f
        }
    }

    /// One SSTORE of the hot slot (still warm): epoch (bits 160..191), round (192..223) and
    /// the signer count (240..247) replaced, the rest kept.
    function _advanceWatermark(uint256 t, uint32 epoch, uint32 round, uint256 count) private {
        assembly {
            sstore(
                s_transmission.slot,
                or(and(t, WATERMARK_CLEAR_MASK), or(or(shl(160, epoch), shl(192, round)), shl(240, count)))
            )
        }
    }

    /// The report checks every entry point makes, on the calldata of transmit, submit and
    /// verifyReport (same arguments, read at fixed offsets once the encoding is known to be
    /// canonical). With `push`, also: the sender is a transmitter and (epoch, round) rises.
    /// Returns the hot slot and the number of signatures. Assembly because it is the hot path
    /// (bench/gas.py). Memory map, all of it scratch (nothing is allocated here; the callers
    /// restore 0x40 and 0x60 through _applyUpdates):
    ///   0x80..0xff  the ecrecover input (digest, v, r, s); 0x100 its output;
    ///   0x120..     the updates while they are hashed, then 0x00 || the config digest ||
    ///               signers || transmitters from the blob: config digest at 0x120, signer i
    ///               at 0x140 + 20 i, transmitter j at 0x140 + 20 (n + j).
    /// The signature checks are unrolled, one block per committee index (MAX_SIGNERS = 31),
    /// so each index is a constant: generated, see the comment at the first block.
    function _verifyReport(bool push) private view returns (uint256 t, uint256 count) {
        bytes32 separator = block.chainid == i_cachedChainId ? i_cachedDomainSeparator : _buildDomainSeparator();
        assembly {
            // Canonical encoding, nothing after it: head of six words, then the updates and
            // the signatures, each a length word and its bytes padded to a word.
            let ulen := calldataload(CD_UPDATES_LENGTH)
            let soff := add(0xe0, and(add(ulen, 31), not(31)))
            let slen := calldataload(add(4, soff))
            let expected := add(add(0x24, soff), and(add(slen, 31), not(31)))
            if or(
                or(iszero(eq(calldatasize(), expected)), or(gt(ulen, 0xffffffff), gt(slen, 0xffffffff))),
                or(
                    or(iszero(eq(calldataload(0x64), 0xc0)), iszero(eq(calldataload(0xa4), soff))),
                    or(gt(calldataload(0x24), 0xffffffff), gt(calldataload(0x44), 0xffffffff))
                )
            ) {
                mstore(0, ERR_MALFORMED_CALLDATA)
                mstore(0x20, expected)
                mstore(0x40, calldatasize())
                revert(0x1c, 0x44)
            }
            let configDigest := calldataload(4)
            let epoch := calldataload(0x24)
            let round := calldataload(0x44)
            let signerBitmask := calldataload(0x84)
            let sigStart := add(0x24, soff)

            // The EIP-712 digest, exactly as reportDigest computes it (no side effect, so it
            // may run before the checks), left at 0x80 as the first word of the ecrecover input.
            calldatacopy(0x120, CD_UPDATES, ulen)
            mstore(0x100, keccak256(0x120, ulen))
            mstore(0x80, REPORT_TYPEHASH_WORD)
            mstore(0xa0, configDigest)
            mstore(0xc0, epoch)
            mstore(0xe0, round)
            mstore(0xc0, keccak256(0x80, 0xa0))
            mstore(0x80, 0x1901)
            mstore(0xa0, separator)
            mstore(0x80, keccak256(0x9e, 0x42))

            t := sload(s_transmission.slot)
            if shr(248, t) {
                mstore(0, ERR_PAUSED)
                revert(0x1c, 0x04)
            }
            let n := and(shr(224, t), 0xff)
            // The blob is 0x00 || configDigest || signers || transmitters || group key || table.
            extcodecopy(and(t, ADDRESS_MASK), 0x120, 1, add(add(32, KEY_BYTES), mul(40, n)))
            if push {
                let q := add(0x140, mul(20, n))
                let end := add(q, mul(20, n))
                for {} 1 { q := add(q, 20) } {
                    if eq(q, end) {
                        mstore(0, ERR_UNAUTHORIZED_TRANSMITTER)
                        mstore(0x20, caller())
                        revert(0x1c, 0x24)
                    }
                    if eq(shr(96, mload(q)), caller()) { break }
                }
            }
            if iszero(eq(mload(0x120), configDigest)) {
                mstore(0x40, configDigest)
                mstore(0x20, mload(0x120))
                mstore(0, ERR_CONFIG_DIGEST_MISMATCH)
                revert(0x1c, 0x44)
            }
            if push {
                // (epoch, round) compared as one 64-bit number: strictly rising, lexicographically.
                let lastEpoch := and(shr(160, t), 0xffffffff)
                let lastRound := and(shr(192, t), 0xffffffff)
                if iszero(gt(or(shl(32, epoch), round), or(shl(32, lastEpoch), lastRound))) {
                    mstore(0, ERR_STALE_ROUND)
                    mstore(0x20, lastEpoch)
                    mstore(0x40, lastRound)
                    revert(0x1c, 0x44)
                }
            }
            // Scheme 0x0002: one Schnorr signature (R, z) under the group key, checked with one
            // ecrecover as FrostVerifier does (its comment has the algebra); no bitmask. The
            // count stored beside the values is the threshold: a valid signature took at
            // least that many members.
            switch eq(shr(240, configDigest), THRESHOLD_SCHNORR_SCHEME)
            case 1 {
                if or(signerBitmask, iszero(eq(slen, 0x60))) {
                    mstore(0, ERR_MALFORMED_SCHNORR_SIGNATURE)
                    mstore(0x20, signerBitmask)
                    mstore(0x40, slen)
                    revert(0x1c, 0x44)
                }
                let rX := calldataload(sigStart)
                let rY := calldataload(add(sigStart, 0x20))
                let z := calldataload(add(sigStart, 0x40))
                // The key: its SEC1 prefix byte, then x (checked below the order at install).
                let key := add(0x140, mul(40, n))
                let keyPrefix := byte(0, mload(key))
                let keyX := mload(add(key, 1))
                // z a nonzero scalar, R a point of the curve given by both coordinates.
                let ok := and(
                    and(lt(z, CURVE_N), iszero(iszero(z))),
                    and(
                        and(lt(rX, CURVE_P), lt(rY, CURVE_P)),
                        eq(mulmod(rY, rY, CURVE_P), addmod(mulmod(mulmod(rX, rX, CURVE_P), rX, CURVE_P), 7, CURVE_P))
                    )
                )
                // c = H2(compressed(R) || compressed(PK) || report digest), after the blob copy.
                let m := add(key, 0x40)
                mstore(m, 0)
                mstore(add(m, 0x20), 0)
                mstore8(add(m, 0x40), add(2, and(rY, 1)))
                mstore(add(m, 0x41), rX)
                mstore8(add(m, 0x61), keyPrefix)
                mstore(add(m, 0x62), keyX)
                mstore(add(m, 0x82), mload(0x80))
                mstore(add(m, 0xa2), CHALLENGE_B0_TAIL)
                mstore8(add(m, 0xc2), 0x1d)
                ok := and(ok, staticcall(gas(), 2, m, 0xc3, 0, 0x20))
                let b0 := mload(0)
                mstore(m, b0)
                mstore8(add(m, 0x20), 1)
                mstore(add(m, 0x21), CHALLENGE_DST_PRIME)
                ok := and(ok, staticcall(gas(), 2, m, 0x3f, 0, 0x20))
                let b1 := mload(0)
                mstore(m, xor(b0, b1))
                mstore8(add(m, 0x20), 2)
                ok := and(ok, staticcall(gas(), 2, m, 0x3f, 0, 0x20))
                let c := addmod(mulmod(b1, shl(128, 1), CURVE_N), shr(128, mload(0)), CURVE_N)
                // ecrecover(-z x, v of PK, x, -c x) is the address of z*G - c*PK.
                let s := mulmod(sub(CURVE_N, c), keyX, CURVE_N)
                mstore(0x80, mulmod(sub(CURVE_N, z), keyX, CURVE_N))
                mstore(0xa0, add(25, keyPrefix))
                mstore(0xc0, keyX)
                mstore(0xe0, s)
                mstore(0x100, 0)
                ok := and(ok, staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                mstore(0, rX)
                mstore(0x20, rY)
                if iszero(and(and(ok, iszero(iszero(s))), eq(mload(0x100), and(keccak256(0, 0x40), ADDRESS_MASK)))) {
                    mstore(0, ERR_INVALID_SCHNORR_SIGNATURE)
                    revert(0x1c, 0x04)
                }
                count := and(shr(232, t), 0xff)
            }
            default {
                if shr(n, signerBitmask) {
                    mstore(0, ERR_UNKNOWN_SIGNER)
                    mstore(0x20, signerBitmask)
                    revert(0x1c, 0x24)
                }
                // Popcount of a mask below 2^31 (n <= MAX_SIGNERS, checked just above).
                count := sub(signerBitmask, and(shr(1, signerBitmask), 0x55555555))
                count := add(and(count, 0x33333333), and(shr(2, count), 0x33333333))
                count := byte(28, mul(and(add(count, shr(4, count)), 0x0f0f0f0f), 0x01010101))
                if iszero(eq(slen, shl(6, count))) {
                    mstore(0, ERR_SIGNATURE_COUNT_MISMATCH)
                    mstore(0x20, count)
                    mstore(0x40, slen)
                    revert(0x1c, 0x44)
                }
                if lt(count, and(shr(232, t), 0xff)) {
                    mstore(0, ERR_INSUFFICIENT_SIGNATURES)
                    mstore(0x20, count)
                    mstore(0x40, and(shr(232, t), 0xff))
                    revert(0x1c, 0x44)
                }
                // Each EIP-2098 signature (r, vs: the top bit of vs is the y parity, the rest is
                // s), in bitmask order, must recover to the signer at its index. Mismatches are
                // OR-ed together and located afterwards. A failed ecrecover returns no data and
                // leaves 0x100 as it was: zero, or the previous (matching) signer, who is not this
                // one since setConfig rejects duplicate signers; so a failure is a mismatch too.
                //
                // Generated (scripts/gen_transmit_unrolled.py is not kept: the pattern is this):
                // for index i, `if and(signerBitmask, 1 << i) { ... signer at 0x140 + 20 i ... }`;
                // after every 4 indexes, the rest is skipped when no higher bit is set.
                mstore(0x100, 0)
                let sig := sigStart
                let bad := 0
                    if and(signerBitmask, 0x1) {
                        let vs := calldataload(add(sig, 0x20))
                        mstore(0xa0, add(27, shr(255, vs)))
                        mstore(0xc0, calldataload(sig))
                        mstore(0xe0, and(vs, S_MASK))
                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x140))))
                        sig := add(sig, 0x40)
                    }
                    if and(signerBitmask, 0x2) {
                        let vs := calldataload(add(sig, 0x20))
                        mstore(0xa0, add(27, shr(255, vs)))
                        mstore(0xc0, calldataload(sig))
                        mstore(0xe0, and(vs, S_MASK))
                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x154))))
                        sig := add(sig, 0x40)
                    }
                    if and(signerBitmask, 0x4) {
                        let vs := calldataload(add(sig, 0x20))
                        mstore(0xa0, add(27, shr(255, vs)))
                        mstore(0xc0, calldataload(sig))
                        mstore(0xe0, and(vs, S_MASK))
                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x168))))
                        sig := add(sig, 0x40)
                    }
                    if and(signerBitmask, 0x8) {
                        let vs := calldataload(add(sig, 0x20))
                        mstore(0xa0, add(27, shr(255, vs)))
                        mstore(0xc0, calldataload(sig))
                        mstore(0xe0, and(vs, S_MASK))
                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x17c))))
                        sig := add(sig, 0x40)
                    }
                    if shr(4, signerBitmask) {
                        if and(signerBitmask, 0x10) {
                            let vs := calldataload(add(sig, 0x20))
                            mstore(0xa0, add(27, shr(255, vs)))
                            mstore(0xc0, calldataload(sig))
                            mstore(0xe0, and(vs, S_MASK))
                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x190))))
                            sig := add(sig, 0x40)
                        }
                        if and(signerBitmask, 0x20) {
                            let vs := calldataload(add(sig, 0x20))
                            mstore(0xa0, add(27, shr(255, vs)))
                            mstore(0xc0, calldataload(sig))
                            mstore(0xe0, and(vs, S_MASK))
                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x1a4))))
                            sig := add(sig, 0x40)
                        }
                        if and(signerBitmask, 0x40) {
                            let vs := calldataload(add(sig, 0x20))
                            mstore(0xa0, add(27, shr(255, vs)))
                            mstore(0xc0, calldataload(sig))
                            mstore(0xe0, and(vs, S_MASK))
                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x1b8))))
                            sig := add(sig, 0x40)
                        }
                        if and(signerBitmask, 0x80) {
                            let vs := calldataload(add(sig, 0x20))
                            mstore(0xa0, add(27, shr(255, vs)))
                            mstore(0xc0, calldataload(sig))
                            mstore(0xe0, and(vs, S_MASK))
                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x1cc))))
                            sig := add(sig, 0x40)
                        }
                        if shr(8, signerBitmask) {
                            if and(signerBitmask, 0x100) {
                                let vs := calldataload(add(sig, 0x20))
                                mstore(0xa0, add(27, shr(255, vs)))
                                mstore(0xc0, calldataload(sig))
                                mstore(0xe0, and(vs, S_MASK))
                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x1e0))))
                                sig := add(sig, 0x40)
                            }
                            if and(signerBitmask, 0x200) {
                                let vs := calldataload(add(sig, 0x20))
                                mstore(0xa0, add(27, shr(255, vs)))
                                mstore(0xc0, calldataload(sig))
                                mstore(0xe0, and(vs, S_MASK))
                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x1f4))))
                                sig := add(sig, 0x40)
                            }
                            if and(signerBitmask, 0x400) {
                                let vs := calldataload(add(sig, 0x20))
                                mstore(0xa0, add(27, shr(255, vs)))
                                mstore(0xc0, calldataload(sig))
                                mstore(0xe0, and(vs, S_MASK))
                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x208))))
                                sig := add(sig, 0x40)
                            }
                            if and(signerBitmask, 0x800) {
                                let vs := calldataload(add(sig, 0x20))
                                mstore(0xa0, add(27, shr(255, vs)))
                                mstore(0xc0, calldataload(sig))
                                mstore(0xe0, and(vs, S_MASK))
                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x21c))))
                                sig := add(sig, 0x40)
                            }
                            if shr(12, signerBitmask) {
                                if and(signerBitmask, 0x1000) {
                                    let vs := calldataload(add(sig, 0x20))
                                    mstore(0xa0, add(27, shr(255, vs)))
                                    mstore(0xc0, calldataload(sig))
                                    mstore(0xe0, and(vs, S_MASK))
                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x230))))
                                    sig := add(sig, 0x40)
                                }
                                if and(signerBitmask, 0x2000) {
                                    let vs := calldataload(add(sig, 0x20))
                                    mstore(0xa0, add(27, shr(255, vs)))
                                    mstore(0xc0, calldataload(sig))
                                    mstore(0xe0, and(vs, S_MASK))
                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x244))))
                                    sig := add(sig, 0x40)
                                }
                                if and(signerBitmask, 0x4000) {
                                    let vs := calldataload(add(sig, 0x20))
                                    mstore(0xa0, add(27, shr(255, vs)))
                                    mstore(0xc0, calldataload(sig))
                                    mstore(0xe0, and(vs, S_MASK))
                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x258))))
                                    sig := add(sig, 0x40)
                                }
                                if and(signerBitmask, 0x8000) {
                                    let vs := calldataload(add(sig, 0x20))
                                    mstore(0xa0, add(27, shr(255, vs)))
                                    mstore(0xc0, calldataload(sig))
                                    mstore(0xe0, and(vs, S_MASK))
                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x26c))))
                                    sig := add(sig, 0x40)
                                }
                                if shr(16, signerBitmask) {
                                    if and(signerBitmask, 0x10000) {
                                        let vs := calldataload(add(sig, 0x20))
                                        mstore(0xa0, add(27, shr(255, vs)))
                                        mstore(0xc0, calldataload(sig))
                                        mstore(0xe0, and(vs, S_MASK))
                                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x280))))
                                        sig := add(sig, 0x40)
                                    }
                                    if and(signerBitmask, 0x20000) {
                                        let vs := calldataload(add(sig, 0x20))
                                        mstore(0xa0, add(27, shr(255, vs)))
                                        mstore(0xc0, calldataload(sig))
                                        mstore(0xe0, and(vs, S_MASK))
                                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x294))))
                                        sig := add(sig, 0x40)
                                    }
                                    if and(signerBitmask, 0x40000) {
                                        let vs := calldataload(add(sig, 0x20))
                                        mstore(0xa0, add(27, shr(255, vs)))
                                        mstore(0xc0, calldataload(sig))
                                        mstore(0xe0, and(vs, S_MASK))
                                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x2a8))))
                                        sig := add(sig, 0x40)
                                    }
                                    if and(signerBitmask, 0x80000) {
                                        let vs := calldataload(add(sig, 0x20))
                                        mstore(0xa0, add(27, shr(255, vs)))
                                        mstore(0xc0, calldataload(sig))
                                        mstore(0xe0, and(vs, S_MASK))
                                        pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                        bad := or(bad, xor(mload(0x100), shr(96, mload(0x2bc))))
                                        sig := add(sig, 0x40)
                                    }
                                    if shr(20, signerBitmask) {
                                        if and(signerBitmask, 0x100000) {
                                            let vs := calldataload(add(sig, 0x20))
                                            mstore(0xa0, add(27, shr(255, vs)))
                                            mstore(0xc0, calldataload(sig))
                                            mstore(0xe0, and(vs, S_MASK))
                                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x2d0))))
                                            sig := add(sig, 0x40)
                                        }
                                        if and(signerBitmask, 0x200000) {
                                            let vs := calldataload(add(sig, 0x20))
                                            mstore(0xa0, add(27, shr(255, vs)))
                                            mstore(0xc0, calldataload(sig))
                                            mstore(0xe0, and(vs, S_MASK))
                                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x2e4))))
                                            sig := add(sig, 0x40)
                                        }
                                        if and(signerBitmask, 0x400000) {
                                            let vs := calldataload(add(sig, 0x20))
                                            mstore(0xa0, add(27, shr(255, vs)))
                                            mstore(0xc0, calldataload(sig))
                                            mstore(0xe0, and(vs, S_MASK))
                                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x2f8))))
                                            sig := add(sig, 0x40)
                                        }
                                        if and(signerBitmask, 0x800000) {
                                            let vs := calldataload(add(sig, 0x20))
                                            mstore(0xa0, add(27, shr(255, vs)))
                                            mstore(0xc0, calldataload(sig))
                                            mstore(0xe0, and(vs, S_MASK))
                                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                            bad := or(bad, xor(mload(0x100), shr(96, mload(0x30c))))
                                            sig := add(sig, 0x40)
                                        }
                                        if shr(24, signerBitmask) {
                                            if and(signerBitmask, 0x1000000) {
                                                let vs := calldataload(add(sig, 0x20))
                                                mstore(0xa0, add(27, shr(255, vs)))
                                                mstore(0xc0, calldataload(sig))
                                                mstore(0xe0, and(vs, S_MASK))
                                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x320))))
                                                sig := add(sig, 0x40)
                                            }
                                            if and(signerBitmask, 0x2000000) {
                                                let vs := calldataload(add(sig, 0x20))
                                                mstore(0xa0, add(27, shr(255, vs)))
                                                mstore(0xc0, calldataload(sig))
                                                mstore(0xe0, and(vs, S_MASK))
                                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x334))))
                                                sig := add(sig, 0x40)
                                            }
                                            if and(signerBitmask, 0x4000000) {
                                                let vs := calldataload(add(sig, 0x20))
                                                mstore(0xa0, add(27, shr(255, vs)))
                                                mstore(0xc0, calldataload(sig))
                                                mstore(0xe0, and(vs, S_MASK))
                                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x348))))
                                                sig := add(sig, 0x40)
                                            }
                                            if and(signerBitmask, 0x8000000) {
                                                let vs := calldataload(add(sig, 0x20))
                                                mstore(0xa0, add(27, shr(255, vs)))
                                                mstore(0xc0, calldataload(sig))
                                                mstore(0xe0, and(vs, S_MASK))
                                                pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                bad := or(bad, xor(mload(0x100), shr(96, mload(0x35c))))
                                                sig := add(sig, 0x40)
                                            }
                                            if shr(28, signerBitmask) {
                                                if and(signerBitmask, 0x10000000) {
                                                    let vs := calldataload(add(sig, 0x20))
                                                    mstore(0xa0, add(27, shr(255, vs)))
                                                    mstore(0xc0, calldataload(sig))
                                                    mstore(0xe0, and(vs, S_MASK))
                                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x370))))
                                                    sig := add(sig, 0x40)
                                                }
                                                if and(signerBitmask, 0x20000000) {
                                                    let vs := calldataload(add(sig, 0x20))
                                                    mstore(0xa0, add(27, shr(255, vs)))
                                                    mstore(0xc0, calldataload(sig))
                                                    mstore(0xe0, and(vs, S_MASK))
                                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x384))))
                                                    sig := add(sig, 0x40)
                                                }
                                                if and(signerBitmask, 0x40000000) {
                                                    let vs := calldataload(add(sig, 0x20))
                                                    mstore(0xa0, add(27, shr(255, vs)))
                                                    mstore(0xc0, calldataload(sig))
                                                    mstore(0xe0, and(vs, S_MASK))
                                                    pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                                                    bad := or(bad, xor(mload(0x100), shr(96, mload(0x398))))
                                                    sig := add(sig, 0x40)
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                if bad {
                    // Cold path: the first mismatching index and what it recovered to (0 if none).
                    sig := sigStart
                    let i := 0
                    for { let m := signerBitmask } m { m := shr(1, m) i := add(i, 1) } {
                        if and(m, 1) {
                            let vs := calldataload(add(sig, 0x20))
                            mstore(0xa0, add(27, shr(255, vs)))
                            mstore(0xc0, calldataload(sig))
                            mstore(0xe0, and(vs, S_MASK))
                            mstore(0x100, 0)
                            pop(staticcall(gas(), 1, 0x80, 0x80, 0x100, 0x20))
                            let got := mload(0x100)
                            if iszero(eq(got, shr(96, mload(add(0x140, mul(20, i)))))) {
                                mstore(0, ERR_SIGNER_MISMATCH)
                                mstore(0x20, i)
                                mstore(0x40, got)
                                revert(0x1c, 0x44)
                            }
                            sig := add(sig, 0x40)
                        }
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- internals: transmit

    /// Checks (and, but in MODE_VERIFY, stores) every update word: feedIndex u16 |
    /// observedAt u32 | numSources u8 | reserved u8 | value i192, indexes strictly ascending;
    /// returns how many feeds were stored. A feed's table entry (one word) is decimals u8 |
    /// historyDepth u8 | quiet u1 | breakerBps u15 | heartbeat u32 | min i64 | max i64 |
    /// breakerFloor u64. Feeds that share a storage slot are
    /// read and written once. When the indexes span at most 8 entries per feed, their table
    /// entries come from one EXTCODECOPY (to 0x80). Restores 0x40 and 0x60 (used as scratch).
    function _applyUpdates(uint256 t, uint256 mode) private returns (uint256 stored) {
        assembly {
            // blob | table offset << 160 at 0x60, for an entry outside the copied range.
            mstore(0x60, or(and(t, ADDRESS_MASK), shl(160, add(TABLE_BASE, mul(40, and(shr(224, t), 0xff))))))
            t := or(and(t, ADDRESS_MASK), shl(248, mode)) // the blob and the mode: one stack slot
            let o := CD_UPDATES
            let end := calldataload(CD_UPDATES_LENGTH)
            if or(iszero(end), and(end, 31)) {
                mstore(0, ERR_INVALID_UPDATES)
                revert(0x1c, 0x04)
            }
            end := add(o, end)
            let first := shr(240, calldataload(o))
            let span := add(sub(shr(240, calldataload(sub(end, 32))), first), 1) // huge if not ascending
            switch gt(span, shr(3, sub(end, o)))
            case 0 {
                extcodecopy(and(t, ADDRESS_MASK), 0x80, add(shr(160, mload(0x60)), shl(5, first)), shl(5, span))
            }
            default { span := 0 }
            let minIndex := 0
            let curSlot := 0 // no slot loaded yet (feed slots are never 0)
            let packed := 0
            // The refusals of an update word itself, in the order they are named: checked
            // together on the hot path (one branch per feed), located here when one fails.
            function refuseUpdate(w, e, least) {
                let i := shr(240, w)
                if or(lt(i, least), and(shr(192, w), 0xff)) {
                    mstore(0, ERR_INVALID_UPDATES)
                    revert(0x1c, 0x04)
                }
                if iszero(and(shr(192, e), 0xffffffff)) {
                    // heartbeat 0: no such feed
                    mstore(0, ERR_UNKNOWN_FEED)
                    mstore(0x20, i)
                    revert(0x1c, 0x24)
                }
                let v := signextend(23, w)
                if or(slt(v, signextend(7, shr(128, e))), sgt(v, signextend(7, shr(64, e)))) {
                    mstore(0, ERR_VALUE_OUT_OF_BOUNDS)
                    mstore(0x20, i)
                    mstore(0x40, v)
                    revert(0x1c, 0x44)
                }
                let at := and(shr(208, w), 0xffffffff)
                if gt(at, add(timestamp(), MAX_FUTURE_SKEW)) {
                    mstore(0, ERR_OBSERVATION_IN_FUTURE)
                    mstore(0x20, i)
                    mstore(0x40, at)
                    revert(0x1c, 0x44)
                }
                mstore(0, ERR_OBSERVATION_EXPIRED)
                mstore(0x20, i)
                mstore(0x40, at)
                mstore(0x60, and(shr(192, e), 0xffffffff))
                revert(0x1c, 0x64)
            }
            for {} lt(o, end) { o := add(o, 32) } {
                let word := calldataload(o)
                let index := shr(240, word)
                let entry
                switch lt(sub(index, first), span)
                case 1 { entry := mload(add(0x80, shl(5, sub(index, first)))) }
                default {
                    // Also for an index out of order: the copy then reads zeros, refused below.
                    let at := mload(0x60)
                    extcodecopy(and(at, ADDRESS_MASK), 0, add(shr(160, at), shl(5, index)), ENTRY_BYTES)
                    entry := mload(0)
                }
                let value := signextend(23, word)
                let observedAt := and(shr(208, word), 0xffffffff)
                // Ascending and reserved byte 0; a feed (heartbeat 0: none); within bounds; not
                // ahead of the block by more than the skew; not older than the heartbeat.
                if or(
                    or(or(lt(index, minIndex), and(shr(192, word), 0xff)), iszero(and(shr(192, entry), 0xffffffff))),
                    or(
                        or(slt(value, signextend(7, shr(128, entry))), sgt(value, signextend(7, shr(64, entry)))),
                        or(
                            gt(observedAt, add(timestamp(), MAX_FUTURE_SKEW)),
                            lt(add(observedAt, and(shr(192, entry), 0xffffffff)), timestamp())
                        )
                    )
                ) { refuseUpdate(word, entry, minIndex) }
                minIndex := add(index, 1)
                if eq(shr(248, t), MODE_VERIFY) { continue }
                {
                    let slot := add(s_feedPairs.slot, shr(1, index))
                    if iszero(eq(slot, curSlot)) {
                        if curSlot { sstore(curSlot, packed) }
                        curSlot := slot
                        packed := sload(slot)
                    }
                }
                // The feed's 128 bits: the high half for an odd index, the low for an even one.
                let half := shr(128, shl(shl(7, iszero(and(index, 1))), packed))
                // Older than stored, or a submit at or below the watermark: one branch on the
                // push path.
                if or(lt(observedAt, and(shr(32, half), 0xffffffff)), eq(shr(248, t), MODE_SUBMIT_LATE)) {
                    if lt(observedAt, and(shr(32, half), 0xffffffff)) {
                        if iszero(shr(248, t)) {
                            mstore(0, ERR_OBSERVATION_TOO_OLD)
                            mstore(0x20, index)
                            mstore(0x40, observedAt)
                            mstore(0x60, and(shr(32, half), 0xffffffff))
                            revert(0x1c, 0x64)
                        }
                        continue // submit: older than stored, skipped
                    }
                    // A report at or below the watermark: only strictly later observations;
                    // when the stored one was ahead of its block (so updatedAt is the block's),
                    // later than anything it may have been; a tripped feed moves only with
                    // reports in sequence, so a replay can neither clear nor prolong a trip.
                    if or(
                        and(half, 2),
                        iszero(gt(observedAt, add(and(shr(32, half), 0xffffffff), mul(and(shr(31, half), 1), MAX_FUTURE_SKEW))))
                    ) { continue }
                }
                let roundId := and(shr(2, half), MAX_ROUND_ID)
                if eq(roundId, MAX_ROUND_ID) {
                    mstore(0, ERR_ROUND_ID_EXHAUSTED)
                    mstore(0x20, index)
                    revert(0x1c, 0x24)
                }
                // Accepted unless the circuit breaker decides otherwise: value, updatedAt, ahead,
                // round + 1; tripped and flag cleared. updatedAt is min(observedAt, block time),
                // never after the block that stores it: readers' block.timestamp - updatedAt
                // cannot underflow, and it does not creep forward as later blocks pass.
                let next
                {
                    let ahead := gt(observedAt, timestamp())
                    next := or(
                        or(shr(128, shl(192, value)), shl(32, xor(observedAt, mul(ahead, xor(observedAt, timestamp()))))),
                        or(shl(31, ahead), shl(2, add(roundId, 1)))
                    )
                }
                // The breaker checks the jump from the last good value unless: first value
                // ever, breaker off (0 bps), or re-anchoring after a reset (tripped 0, flag 1).
                if and(and(iszero(iszero(roundId)), iszero(iszero(and(entry, BPS_MASK)))), iszero(eq(and(half, 3), 1))) {
                    let last := signextend(7, shr(64, half))
                    // |value|, |last| < 2^63: no overflow; absolute values without branches.
                    let delta := sub(value, last)
                    let sign := sar(255, delta)
                    delta := sub(xor(delta, sign), sign)
                    sign := sar(255, last)
                    // Beyond the limit: past breakerBps of the last good value and past the
                    // floor (so a last value of 0 does not make every move a jump).
                    let beyond := and(
                        gt(mul(delta, 10000), mul(shr(224, and(entry, BPS_MASK)), sub(xor(last, sign), sign))),
                        gt(delta, and(entry, FLOOR_MASK))
                    )
                    // In the limit and not tripped, the common case, passes with this one test.
                    if or(beyond, and(half, 2)) {
                        switch beyond
                        case 1 {
                            switch and(half, 2)
                            case 0 {
                                // trips: not stored
                                mstore(0, last)
                                mstore(0x20, value)
                                mstore(0x40, observedAt)
                                log2(0, 0x60, BREAKER_TRIPPED_TOPIC, index)
                                next := or(half, 2)
                            }
                            default { next := and(half, not(1)) } // tripped: the streak is broken
                        }
                        default {
                            // tripped, in the limit
                            switch and(half, 1)
                            case 0 { next := or(half, 1) } // first in-limit report: counted
                            default {
                                // second one: stored, breaker cleared
                                mstore(0, 0)
                                log2(0, 0x20, BREAKER_CLEARED_TOPIC, index)
                            }
                        }
                    }
                }
                if iszero(and(next, 2)) {
                    stored := add(stored, 1)
                    // History (opt-in): the ring slot of every stored value.
                    if and(shr(240, entry), 0xff) {
                        mstore(0, index)
                        mstore(0x20, s_history.slot)
                        mstore(0x20, keccak256(0, 0x40))
                        mstore(0, mod(add(roundId, 1), and(shr(240, entry), 0xff)))
                        sstore(keccak256(0, 0x40), next)
                    }
                    if iszero(and(entry, QUIET_BIT)) {
                        mstore(0, value)
                        mstore(0x20, and(shr(32, next), 0xffffffff))
                        mstore(0x40, add(roundId, 1))
                        log2(0, 0x60, FEED_UPDATED_TOPIC, index)
                    }
                }
                // half is what the feed's bits hold: xor-ing half ^ next into them leaves next.
                packed := xor(packed, shl(shl(7, and(index, 1)), xor(half, next)))
            }
            if curSlot { sstore(curSlot, packed) }
            mstore(0x40, 0x80) // the free memory pointer and the zero slot, used as scratch
            mstore(0x60, 0)
        }
    }

    // ---------------------------------------------------------------- internals: storage

    function _half(uint16 index) private view returns (uint256) {
        return (s_feedPairs[index >> 1] >> ((uint256(index) & 1) * 128)) & MASK_128;
    }

    /// The feed's table entry (one word); reverts UnknownFeed for a bad index.
    function _readEntry(Transmission memory t, uint16 index) private view returns (uint256 entry) {
        address blob = t.blob;
        uint256 offset = TABLE_BASE + 40 * uint256(t.n) + uint256(index) * ENTRY_BYTES;
        assembly ("memory-safe") {
            mstore(0, 0)
            extcodecopy(blob, 0, offset, ENTRY_BYTES)
            entry := mload(0)
        }
        if (uint32(entry >> 192) == 0) revert UnknownFeed(index);
    }

    function _entry(uint16 index, uint8 decimals, FeedParameters calldata p) private returns (uint256) {
        // Bounds outside the stored width would wrap when narrowed (2^63 becomes -2^63).
        if (p.minValue < type(int64).min || p.maxValue > type(int64).max || p.minValue > p.maxValue) {
            revert InvalidBounds(p.minValue, p.maxValue);
        }
        if (p.heartbeat == 0 || p.breakerBps > 10_000) revert InvalidFeedParameters(p.breakerBps, p.heartbeat);
        if (index == type(uint16).max) revert TooManyFeeds();
        emit FeedParametersSet(index, p);
        return (uint256(decimals) << 248) | (uint256(p.historyDepth) << 240) | (p.updateEvents ? 0 : 1 << 239)
            | (uint256(p.breakerBps) << 224) | (uint256(p.heartbeat) << 192)
            | (uint256(uint64(int64(p.minValue))) << 128) | (uint256(uint64(int64(p.maxValue))) << 64)
            | uint256(p.breakerFloor);
    }

    /// A copy of the feed table with room for `extra` more entries.
    function _feedTable(Transmission memory t, uint256 count, uint256 extra) private view returns (bytes memory table) {
        table = new bytes((count + extra) * ENTRY_BYTES);
        address blob = t.blob;
        uint256 offset = TABLE_BASE + 40 * uint256(t.n);
        uint256 size = count * ENTRY_BYTES;
        if (size != 0) {
            assembly ("memory-safe") {
                extcodecopy(blob, add(table, 32), offset, size)
            }
        }
    }

    function _putEntry(bytes memory table, uint256 index, uint256 entry) private pure {
        assembly ("memory-safe") {
            mstore(add(add(table, 32), mul(index, ENTRY_BYTES)), entry)
        }
    }

    /// Deploys `0x00 || digest || committee || table` as the code of a new data contract (the
    /// committee: signers, transmitters, group key).
    function _storeBlob(bytes32 digest, bytes memory committee, bytes memory table) private returns (address pointer) {
        bytes memory runtime = abi.encodePacked(hex"00", digest, committee, table);
        if (runtime.length > MAX_BLOB_BYTES) revert TooManyFeeds();
        // Init code: PUSH4 len, DUP1, PUSH1 14, PUSH1 0, CODECOPY, PUSH1 0, RETURN (14 bytes),
        // i.e. copy the runtime that follows the 14-byte header into memory and return it.
        bytes memory initCode = abi.encodePacked(hex"63", uint32(runtime.length), hex"80600e6000396000f3", runtime);
        assembly ("memory-safe") {
            pointer := create(0, add(initCode, 32), mload(initCode))
        }
        if (pointer == address(0)) revert CommitteeStoreFailed();
    }

    function _validateConfig(
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold
    ) private pure {
        uint256 n = signers.length;
        if (transmitters.length != n) revert LengthMismatch(n, transmitters.length);
        if (n > MAX_SIGNERS) revert TooManySigners(n, MAX_SIGNERS);
        if (f == 0) revert ZeroFaultTolerance();
        if (n < 3 * uint256(f) + 1) revert FaultToleranceTooHigh(n, f);
        if (threshold <= f || threshold > n) revert InvalidThreshold(threshold, f, n);
        _requireDistinctNonZero(signers);
        _requireDistinctNonZero(transmitters);
    }

    function _requireDistinctNonZero(address[] calldata accounts) private pure {
        for (uint256 i; i < accounts.length; ++i) {
            if (accounts[i] == address(0)) revert ZeroAddress();
            for (uint256 j; j < i; ++j) {
                if (accounts[i] == accounts[j]) revert DuplicateAddress(accounts[i]);
            }
        }
    }

    /// keccak of (chainId, contract, configCount, signers, transmitters, f, threshold,
    /// offchainConfig), ABI-encoded, then under scheme 0x0002 the group key (x, y parity,
    /// transcript hash) encoded after it; the scheme in the top two bytes.
    function _configDigest(
        uint64 configCount,
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig,
        GroupKey memory key
    ) private view returns (bytes32) {
        bytes memory encoded =
            abi.encode(block.chainid, address(this), configCount, signers, transmitters, f, threshold, offchainConfig);
        uint256 scheme = SIGNATURE_SCHEME;
        if (key.x != 0) {
            encoded = bytes.concat(encoded, abi.encode(key.x, key.yParity, key.transcriptHash));
            scheme = THRESHOLD_SCHNORR_SCHEME;
        }
        return bytes32((uint256(keccak256(encoded)) & DIGEST_PREFIX_MASK) | (scheme << 240));
    }

    function _writeAddress(bytes memory buffer, uint256 offset, address account) private pure {
        bytes20 raw = bytes20(account);
        for (uint256 k; k < 20; ++k) {
            buffer[offset + k] = raw[k];
        }
    }

    /// signers at [0, 20n), transmitters at [20n, 40n), the group key at [40n, 40n + 33).
    function _loadCommittee(address pointer, uint256 n) private view returns (bytes memory committee) {
        committee = new bytes(40 * n + KEY_BYTES);
        if (pointer != address(0)) {
            assembly ("memory-safe") {
                extcodecopy(pointer, add(committee, 32), 33, add(mul(40, n), KEY_BYTES))
            }
        }
    }

    function _addressAt(bytes memory committee, uint256 slot) private pure returns (address account) {
        assembly ("memory-safe") {
            account := shr(96, mload(add(add(committee, 32), mul(slot, 20))))
        }
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }
}

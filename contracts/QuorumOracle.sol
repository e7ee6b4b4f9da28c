// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Governed} from "./Governed.sol";

/// @title QuorumOracle
/// @notice Stores multi-feed reports attested by a threshold of an on-chain committee
/// (DESIGN.md §6). A report is `updates` (one 32-byte word per feed) signed with EIP-712 by
/// at least `threshold` committee signers; signatures travel as EIP-2098 compact pairs in
/// ascending signer order plus a signer bitmask, which makes signer distinctness free.
///
/// Storage is laid out for the transmit hot path (docs/contracts.md has the gas budget):
///  - one slot (`s_transmission`) holds the config blob pointer, the (epoch, round)
///    watermark, n, threshold, the latest signer count and the pause flag;
///  - everything transmit reads but never writes lives in the code of a data contract
///    (SSTORE2): config digest, signers, transmitters and the feed table (bounds, breaker
///    limit, heartbeat, history depth). One cold EXTCODECOPY (2.6k gas) replaces a cold
///    SLOAD per signer and per feed; it is redeployed when the owner changes any of it;
///  - the latest answer of a feed is 128 bits (value int64, observedAt, roundId, breaker
///    state), two feeds per slot: a 10-feed report writes five slots, not ten. The price of
///    that is the value range: stored values are int64 (as Pyth's), so feed bounds are
///    clamped to int64 and decimals must be chosen accordingly (8 for USD prices);
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
    /// Consecutive in-limit reports that clear a tripped breaker by themselves.
    uint256 public constant BREAKER_CLEAR_REPORTS = 2;
    /// Bytes per feed in the code-stored feed table.
    uint256 private constant ENTRY_BYTES = 24;
    /// EIP-170: the most code a data contract may hold.
    uint256 private constant MAX_BLOB_BYTES = 24_576;
    uint256 private constant MAX_ROUND_ID = (1 << 30) - 1;

    uint256 private constant DIGEST_PREFIX_MASK = type(uint256).max >> 16;
    uint256 private constant MASK_128 = (1 << 128) - 1;
    uint256 private constant ADDRESS_MASK = (1 << 160) - 1;
    /// EIP-2098: vs without its top (y parity) bit is s.
    uint256 private constant S_MASK = 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    /// Table entry bits of breakerBps.
    uint256 private constant BPS_MASK = 0xffff << 160;
    /// The hot slot without epoch (bits 160..191), round (192..223), signer count (240..247).
    uint256 private constant WATERMARK_CLEAR_MASK = 0xff00ffff0000000000000000ffffffffffffffffffffffffffffffffffffffff;
    /// Most feed indexes: the feed slots are a fixed array of 2^15 pairs.
    uint256 private constant FEED_PAIRS = 1 << 15;

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
    uint256 private constant REPORT_TYPEHASH_WORD = 0x20fa91086326136eb7ca711ac4b00478a7dd88e600c59d619f355a8ae8ba306f;
    uint256 private constant NEW_TRANSMISSION_TOPIC = 0xd3affd46d3660297c4b7189ba15673d28634924551b5a61ae7fb676b1e3467bb;
    uint256 private constant BREAKER_TRIPPED_TOPIC = 0xec95ae040e9e69716540543e0d56b4715250ab657d9048d3e1e4282079c05755;
    uint256 private constant BREAKER_CLEARED_TOPIC = 0xf0e50bbc7d3b2dbef2ed9a6aceeea80888578e86df1aeae3795320ac7f21ac6e;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant REPORT_TYPEHASH =
        keccak256("Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)");
    bytes32 private constant NAME_HASH = keccak256("QuorumOracle");
    bytes32 private constant VERSION_HASH = keccak256("1");

    // ---------------------------------------------------------------- errors

    // Administration (NotOwner, NotPendingOwner, NotGuardian, ZeroAddress: Governed)
    error LengthMismatch(uint256 signers, uint256 transmitters);
    error TooManySigners(uint256 n, uint256 max);
    error FaultToleranceTooHigh(uint256 n, uint8 f);
    error InvalidThreshold(uint8 threshold, uint8 f, uint256 n);
    error DuplicateAddress(address account);
    error CommitteeStoreFailed();
    error InvalidFeedId();
    error InvalidBounds(int192 minValue, int192 maxValue);
    error InvalidFeedParameters(uint16 breakerBps, uint32 heartbeat);
    error FeedExists(bytes32 feedId);
    error TooManyFeeds();
    error UnknownFeedId(bytes32 feedId);

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
    event FeedAdded(
        uint16 indexed feedIndex,
        bytes32 indexed feedId,
        uint8 decimals,
        string description,
        int192 minValue,
        int192 maxValue
    );
    event FeedParametersSet(
        uint16 indexed feedIndex, int64 minValue, int64 maxValue, uint16 breakerBps, uint32 heartbeat, uint8 historyDepth
    );
    /// A report's value for the feed jumped beyond the breaker limit: it was not stored.
    event BreakerTripped(uint16 indexed feedIndex, int64 lastGoodValue, int192 rejectedValue, uint32 observedAt);
    /// The breaker cleared: by BREAKER_CLEAR_REPORTS consecutive in-limit reports (byGuardian
    /// false, the value is stored), or by an owner/guardian reset (the next report re-anchors).
    event BreakerCleared(uint16 indexed feedIndex, bool byGuardian);
    /// Values are not in the event (they are in the transaction input: decode `updates`).
    event NewTransmission(uint32 epoch, uint32 round, uint256 signerBitmask);

    // ---------------------------------------------------------------- storage

    /// The transmit hot slot (256 bits).
    struct Transmission {
        address blob; // code = 0x00 || configDigest || signers || transmitters || feed table
        uint32 epoch;
        uint32 round;
        uint8 n;
        uint8 threshold;
        uint8 latestSignerCount;
        bool paused;
    }

    struct ConfigMeta {
        uint64 configCount;
        uint32 blockNumber;
        uint8 f;
        uint16 feedCount;
    }

    struct FeedInfo {
        bytes32 feedId;
        uint8 decimals;
        string description;
    }

    /// What a reader needs to judge a value (FeedProxy.latestStatus, RiskGate).
    struct FeedStatus {
        int256 value;
        uint32 observedAt;
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
    /// Feed 2k in the low 128 bits, 2k+1 in the high: value int64 | observedAt u32 |
    /// roundId u30 | tripped u1 | flag u1 (flag: tripped -> one in-limit report seen;
    /// not tripped -> re-anchor on the next report after a reset).
    /// A fixed array, not a mapping: transmit finds a pair's slot by an addition, no hashing.
    uint256[FEED_PAIRS] private s_feedPairs;
    mapping(uint256 => mapping(uint256 => uint256)) private s_history; // feed => roundId % depth => half
    mapping(uint256 => FeedInfo) private s_feedInfo;
    mapping(bytes32 => uint256) private s_feedIndexPlusOne;

    uint256 private immutable i_cachedChainId;
    bytes32 private immutable i_cachedDomainSeparator;

    constructor() {
        i_cachedChainId = block.chainid;
        i_cachedDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- pause (Governed)

    function paused() external view override returns (bool) {
        return s_transmission.paused;
    }

    function _setPaused(bool value) internal override {
        s_transmission.paused = value;
    }

    // ---------------------------------------------------------------- configuration

    function setConfig(
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig
    ) external onlyOwner {
        _validateConfig(signers, transmitters, f, threshold);
        bytes32 previous = s_configDigest;
        ConfigMeta memory meta = s_configMeta;
        uint64 configCount = meta.configCount + 1;
        bytes32 digest = _configDigest(configCount, signers, transmitters, f, threshold, offchainConfig);
        s_configDigest = digest;
        s_configMeta = ConfigMeta(configCount, uint32(block.number), f, meta.feedCount);
        s_offchainConfig = offchainConfig;
        _commitCommittee(digest, signers, transmitters, threshold, meta.feedCount);
        emit ConfigSet(previous, configCount, digest, signers, transmitters, f, threshold, offchainConfig);
    }

    function _commitCommittee(
        bytes32 digest,
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 threshold,
        uint16 count
    ) private {
        bytes memory committee = new bytes(40 * signers.length);
        for (uint256 i; i < signers.length; ++i) {
            _writeAddress(committee, 20 * i, signers[i]);
            _writeAddress(committee, 20 * (signers.length + i), transmitters[i]);
        }
        Transmission memory t = s_transmission;
        bytes memory table = _feedTable(t, count, 0);
        // A new committee starts a new (epoch, round) sequence: the watermark resets.
        s_transmission = Transmission(
            _storeBlob(digest, committee, table), 0, 0, uint8(signers.length), threshold, 0, t.paused
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

    /// Registers a feed. Bounds are clamped to int64 (the stored width). breakerBps = 0
    /// disables the circuit breaker; heartbeat (> 0) is the age after which readers call the
    /// value stale; historyDepth > 0 keeps that many past rounds for getRoundData.
    function addFeed(
        bytes32 feedId,
        uint8 decimals,
        string calldata description,
        int192 minValue,
        int192 maxValue,
        uint16 breakerBps,
        uint32 heartbeat,
        uint8 historyDepth
    ) external onlyOwner returns (uint16 index) {
        if (feedId == bytes32(0)) revert InvalidFeedId();
        if (s_feedIndexPlusOne[feedId] != 0) revert FeedExists(feedId);
        index = s_configMeta.feedCount;
        _storeEntry(index, 1, _entry(index, decimals, minValue, maxValue, breakerBps, heartbeat, historyDepth));
        s_feedInfo[index] = FeedInfo(feedId, decimals, description);
        s_feedIndexPlusOne[feedId] = uint256(index) + 1;
        s_configMeta.feedCount = index + 1;
        emit FeedAdded(index, feedId, decimals, description, minValue, maxValue);
    }

    /// Changes a feed's bounds, breaker limit and heartbeat (history depth is fixed).
    function setFeedParameters(uint16 index, int192 minValue, int192 maxValue, uint16 breakerBps, uint32 heartbeat)
        external
        onlyOwner
    {
        Transmission memory t = s_transmission;
        uint256 old = _readEntry(t, index);
        _storeEntry(index, 0, _entry(index, uint8(old >> 184), minValue, maxValue, breakerBps, heartbeat, uint8(old >> 176)));
    }

    /// Redeploys the blob with `entry` at `index` (extra = 1: appended as a new feed).
    function _storeEntry(uint16 index, uint256 extra, uint256 entry) private {
        Transmission memory t = s_transmission;
        bytes memory table = _feedTable(t, s_configMeta.feedCount, extra);
        _putEntry(table, index, entry);
        s_transmission.blob = _storeBlob(s_configDigest, _loadCommittee(t.blob, t.n), table);
    }

    /// Clears a tripped breaker; the next attested value is stored whatever its jump and
    /// becomes the new reference. For a market that really moved beyond the limit.
    function resetBreaker(uint16 index) external onlyGuardianOrOwner {
        _readEntry(s_transmission, index);
        uint256 shift = (uint256(index) & 1) * 128;
        uint256 packed = s_feedPairs[index >> 1];
        uint256 half = (packed >> shift) & MASK_128;
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
        uint256 e = _readEntry(s_transmission, index);
        FeedInfo storage info = s_feedInfo[index];
        return (info.feedId, info.decimals, info.description, int64(uint64(e >> 64)), int64(uint64(e)));
    }

    function feedParameters(uint16 index)
        external
        view
        returns (uint16 breakerBps, uint32 heartbeat, uint8 historyDepth)
    {
        uint256 e = _readEntry(s_transmission, index);
        return (uint16(e >> 160), uint32(e >> 128), uint8(e >> 176));
    }

    function feedDecimals(uint16 index) external view returns (uint8) {
        return uint8(_readEntry(s_transmission, index) >> 184);
    }

    function latestFeed(uint16 index) external view returns (int192 value, uint32 observedAt, uint32 roundId) {
        _readEntry(s_transmission, index);
        uint256 half = _half(index);
        return (int64(uint64(half >> 64)), uint32(half >> 32), uint32((half >> 2) & MAX_ROUND_ID));
    }

    function feedStatus(uint16 index) public view returns (FeedStatus memory status) {
        Transmission memory t = s_transmission;
        uint256 e = _readEntry(t, index);
        uint256 half = _half(index);
        status.value = int64(uint64(half >> 64));
        status.observedAt = uint32(half >> 32);
        status.roundId = uint32((half >> 2) & MAX_ROUND_ID);
        status.tripped = (half >> 1) & 1 == 1;
        status.heartbeat = uint32(e >> 128);
        status.stale = t.paused || status.roundId == 0 || block.timestamp > uint256(status.observedAt) + status.heartbeat;
        status.signerCount = t.latestSignerCount;
        status.threshold = t.threshold;
    }

    /// A past round of a feed (the latest, or one of the last historyDepth ones).
    function roundData(uint16 index, uint80 roundId) external view returns (int192 value, uint32 observedAt) {
        uint256 e = _readEntry(s_transmission, index);
        uint256 half = _half(index);
        uint256 latest = (half >> 2) & MAX_ROUND_ID;
        if (roundId == 0 || roundId > latest) revert RoundNotAvailable(index, roundId);
        if (roundId != latest) {
            uint256 depth = uint8(e >> 176);
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

    /// Verifies and stores a report. The checks and their order are those of docs/contracts.md.
    /// The body is assembly because it is the hot path (bench/gas.py). Memory map, all of it
    /// scratch (transmit allocates no Solidity memory and restores 0x40 and 0x60 at the end):
    ///   0x80..0xff  the ecrecover input (digest, v, r, s); 0x100 its output;
    ///   0x120..     the updates while they are hashed, then 0x00 || the config digest ||
    ///               signers || transmitters from the blob: config digest at 0x120, signer i
    ///               at 0x140 + 20 i, transmitter j at 0x140 + 20 (n + j).
    /// The signature checks are unrolled, one block per committee index (MAX_SIGNERS = 31),
    /// so each index is a constant: generated, see the comment at the first block.
    function transmit(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures
    ) external {
        bytes32 separator = block.chainid == i_cachedChainId ? i_cachedDomainSeparator : _buildDomainSeparator();
        uint256 t;
        uint256 count;
        assembly {
            // The EIP-712 digest, exactly as reportDigest computes it (no side effect, so it
            // may run before the checks), left at 0x80 as the first word of the ecrecover input.
            calldatacopy(0x120, updates.offset, updates.length)
            mstore(0x100, keccak256(0x120, updates.length))
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
            // The blob is 0x00 || configDigest || signers || transmitters || feed table.
            extcodecopy(and(t, ADDRESS_MASK), 0x120, 1, add(32, mul(40, n)))
            {
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
            {
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
            if shr(n, signerBitmask) {
                mstore(0, ERR_UNKNOWN_SIGNER)
                mstore(0x20, signerBitmask)
                revert(0x1c, 0x24)
            }
            // Popcount of a mask below 2^31 (n <= MAX_SIGNERS, checked just above).
            count := sub(signerBitmask, and(shr(1, signerBitmask), 0x55555555))
            count := add(and(count, 0x33333333), and(shr(2, count), 0x33333333))
            count := byte(28, mul(and(add(count, shr(4, count)), 0x0f0f0f0f), 0x01010101))
            if iszero(eq(signatures.length, shl(6, count))) {
                mstore(0, ERR_SIGNATURE_COUNT_MISMATCH)
                mstore(0x20, count)
                mstore(0x40, signatures.length)
                revert(0x1c, 0x44)
            }
            if lt(count, and(shr(232, t), 0xff)) {
                mstore(0, ERR_INSUFFICIENT_SIGNATURES)
                mstore(0x20, count)
                mstore(0x40, and(shr(232, t), 0xff))
                revert(0x1c, 0x44)
            }
        }
        assembly {
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
            let sig := signatures.offset
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
                sig := signatures.offset
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
        _applyUpdates(t, updates);
        assembly {
            // One SSTORE of the hot slot (still warm): epoch (bits 160..191), round (192..223)
            // and the signer count (240..247) replaced, the rest kept.
            sstore(
                s_transmission.slot,
                or(and(t, WATERMARK_CLEAR_MASK), or(or(shl(160, epoch), shl(192, round)), shl(240, count)))
            )
            mstore(0x80, epoch)
            mstore(0xa0, round)
            mstore(0xc0, signerBitmask)
            log1(0x80, 0x60, NEW_TRANSMISSION_TOPIC)
            mstore(0x40, 0x80) // the free memory pointer and the zero slot, used as scratch
            mstore(0x60, 0)
        }
    }

    // ---------------------------------------------------------------- internals: transmit

    /// Checks and stores every update word: feedIndex u16 | observedAt u32 | numSources u8 |
    /// reserved u8 | value i192, indexes strictly ascending. A feed's table entry is
    /// decimals u8 | historyDepth u8 | breakerBps u16 | heartbeat u32 | min i64 | max i64.
    /// Feeds that share a storage slot are read and written once. When the indexes span at
    /// most 8 entries per feed, their table entries come from one EXTCODECOPY (to 0x80).
    function _applyUpdates(uint256 t, bytes calldata updates) private {
        assembly {
            let len := updates.length
            if or(iszero(len), and(len, 31)) {
                mstore(0, ERR_INVALID_UPDATES)
                revert(0x1c, 0x04)
            }
            let o := updates.offset
            let end := add(o, len)
            // blob | table offset << 160 at 0x60, for an entry outside the copied range.
            mstore(0x60, or(and(t, ADDRESS_MASK), shl(160, add(33, mul(40, and(shr(224, t), 0xff))))))
            let first := shr(240, calldataload(o))
            let span := add(sub(shr(240, calldataload(sub(end, 32))), first), 1) // huge if not ascending
            switch gt(span, shr(3, len))
            case 0 {
                extcodecopy(and(t, ADDRESS_MASK), 0x80, add(shr(160, mload(0x60)), mul(first, ENTRY_BYTES)), mul(span, ENTRY_BYTES))
            }
            default { span := 0 }
            let horizon := add(timestamp(), MAX_FUTURE_SKEW)
            let minIndex := 0
            let curSlot := 0 // no slot loaded yet (feed slots are never 0)
            let packed := 0
            for {} lt(o, end) { o := add(o, 32) } {
                let word := calldataload(o)
                let index := shr(240, word)
                if or(lt(index, minIndex), and(shr(192, word), 0xff)) {
                    mstore(0, ERR_INVALID_UPDATES)
                    revert(0x1c, 0x04)
                }
                minIndex := add(index, 1)
                let e
                switch lt(sub(index, first), span)
                case 1 { e := shr(64, mload(add(0x80, mul(sub(index, first), ENTRY_BYTES)))) }
                default {
                    let at := mload(0x60)
                    extcodecopy(and(at, ADDRESS_MASK), 0, add(shr(160, at), mul(index, ENTRY_BYTES)), ENTRY_BYTES)
                    e := shr(64, mload(0))
                }
                if iszero(and(shr(128, e), 0xffffffff)) {
                    // heartbeat 0: no such feed
                    mstore(0, ERR_UNKNOWN_FEED)
                    mstore(0x20, index)
                    revert(0x1c, 0x24)
                }
                let value := signextend(23, word)
                if or(slt(value, signextend(7, shr(64, e))), sgt(value, signextend(7, e))) {
                    mstore(0, ERR_VALUE_OUT_OF_BOUNDS)
                    mstore(0x20, index)
                    mstore(0x40, value)
                    revert(0x1c, 0x44)
                }
                let observedAt := and(shr(208, word), 0xffffffff)
                if gt(observedAt, horizon) {
                    mstore(0, ERR_OBSERVATION_IN_FUTURE)
                    mstore(0x20, index)
                    mstore(0x40, observedAt)
                    revert(0x1c, 0x44)
                }
                {
                    let slot := add(s_feedPairs.slot, shr(1, index))
                    if iszero(eq(slot, curSlot)) {
                        if curSlot { sstore(curSlot, packed) }
                        curSlot := slot
                        packed := sload(slot)
                    }
                }
                let shift := shl(7, and(index, 1))
                let half := and(shr(shift, packed), MASK_128)
                if lt(observedAt, and(shr(32, half), 0xffffffff)) {
                    mstore(0, ERR_OBSERVATION_TOO_OLD)
                    mstore(0x20, index)
                    mstore(0x40, observedAt)
                    mstore(0x60, and(shr(32, half), 0xffffffff))
                    revert(0x1c, 0x64)
                }
                let roundId := and(shr(2, half), MAX_ROUND_ID)
                if eq(roundId, MAX_ROUND_ID) {
                    mstore(0, ERR_ROUND_ID_EXHAUSTED)
                    mstore(0x20, index)
                    revert(0x1c, 0x24)
                }
                // Accepted unless the circuit breaker decides otherwise: value, time, round + 1;
                // tripped and flag cleared.
                let next := or(or(shl(64, and(value, 0xffffffffffffffff)), shl(32, observedAt)), shl(2, add(roundId, 1)))
                // The breaker checks the jump from the last good value unless: first value
                // ever, breaker off (0 bps), or re-anchoring after a reset (tripped 0, flag 1).
                if and(and(iszero(iszero(roundId)), iszero(iszero(and(e, BPS_MASK)))), iszero(eq(and(half, 3), 1))) {
                    let last := signextend(7, shr(64, half))
                    let delta := sub(value, last) // |value|, |last| < 2^63: no overflow below
                    if slt(delta, 0) { delta := sub(0, delta) }
                    let magnitude := last
                    if slt(magnitude, 0) { magnitude := sub(0, magnitude) }
                    switch gt(mul(delta, 10000), mul(shr(160, and(e, BPS_MASK)), magnitude))
                    case 1 {
                        // beyond the limit
                        switch and(half, 2)
                        case 0 {
                            // trips: not stored
                            mstore(0, last)
                            mstore(0x20, value)
                            mstore(0x40, observedAt) // restored by transmit
                            log2(0, 0x60, BREAKER_TRIPPED_TOPIC, index)
                            next := or(half, 2)
                        }
                        default { next := and(half, not(1)) } // tripped: the streak is broken
                    }
                    default {
                        if and(half, 2) {
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
                // History (opt-in): the ring slot of every stored value.
                if and(shr(176, e), 0xff) {
                    if iszero(and(next, 2)) {
                        mstore(0, index)
                        mstore(0x20, s_history.slot)
                        mstore(0x20, keccak256(0, 0x40))
                        mstore(0, mod(and(shr(2, next), MAX_ROUND_ID), and(shr(176, e), 0xff)))
                        sstore(keccak256(0, 0x40), next)
                    }
                }
                packed := or(and(packed, not(shl(shift, MASK_128))), shl(shift, next))
            }
            sstore(curSlot, packed)
        }
    }

    // ---------------------------------------------------------------- internals: storage

    function _half(uint16 index) private view returns (uint256) {
        return (s_feedPairs[index >> 1] >> ((uint256(index) & 1) * 128)) & MASK_128;
    }

    /// The feed's table entry as a 192-bit number; reverts UnknownFeed for a bad index.
    function _readEntry(Transmission memory t, uint16 index) private view returns (uint256 e) {
        address blob = t.blob;
        uint256 offset = 33 + 40 * uint256(t.n) + uint256(index) * ENTRY_BYTES;
        assembly ("memory-safe") {
            mstore(0, 0)
            extcodecopy(blob, 0, offset, ENTRY_BYTES)
            e := shr(64, mload(0))
        }
        if (uint32(e >> 128) == 0) revert UnknownFeed(index);
    }

    function _entry(
        uint16 index,
        uint8 decimals,
        int192 minValue,
        int192 maxValue,
        uint16 breakerBps,
        uint32 heartbeat,
        uint8 historyDepth
    ) private returns (uint256) {
        if (minValue > maxValue) revert InvalidBounds(minValue, maxValue);
        // Clamp to the stored width: a value outside int64 is out of bounds anyway.
        int64 lo = minValue < type(int64).min ? type(int64).min : int64(minValue);
        int64 hi = maxValue > type(int64).max ? type(int64).max : int64(maxValue);
        if (lo > hi) revert InvalidBounds(minValue, maxValue);
        if (heartbeat == 0 || breakerBps > 10_000) revert InvalidFeedParameters(breakerBps, heartbeat);
        if (index == type(uint16).max) revert TooManyFeeds();
        emit FeedParametersSet(index, lo, hi, breakerBps, heartbeat, historyDepth);
        return (uint256(decimals) << 184) | (uint256(historyDepth) << 176) | (uint256(breakerBps) << 160)
            | (uint256(heartbeat) << 128) | (uint256(uint64(lo)) << 64) | uint256(uint64(hi));
    }

    /// A copy of the feed table with room for `extra` more entries.
    function _feedTable(Transmission memory t, uint256 count, uint256 extra) private view returns (bytes memory table) {
        table = new bytes((count + extra) * ENTRY_BYTES);
        address blob = t.blob;
        uint256 offset = 33 + 40 * uint256(t.n);
        uint256 size = count * ENTRY_BYTES;
        if (size != 0) {
            assembly ("memory-safe") {
                extcodecopy(blob, add(table, 32), offset, size)
            }
        }
    }

    function _putEntry(bytes memory table, uint256 index, uint256 entry) private pure {
        uint256 start = index * ENTRY_BYTES;
        for (uint256 k; k < ENTRY_BYTES; ++k) {
            table[start + k] = bytes1(uint8(entry >> (8 * (ENTRY_BYTES - 1 - k))));
        }
    }

    /// Deploys `0x00 || digest || committee || table` as the code of a new data contract.
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

    function _configDigest(
        uint64 configCount,
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig
    ) private view returns (bytes32) {
        uint256 h = uint256(
            keccak256(
                abi.encode(block.chainid, address(this), configCount, signers, transmitters, f, threshold, offchainConfig)
            )
        );
        return bytes32((h & DIGEST_PREFIX_MASK) | (SIGNATURE_SCHEME << 240));
    }

    function _writeAddress(bytes memory buffer, uint256 offset, address account) private pure {
        bytes20 raw = bytes20(account);
        for (uint256 k; k < 20; ++k) {
            buffer[offset + k] = raw[k];
        }
    }

    /// signers at [0, 20n), transmitters at [20n, 40n).
    function _loadCommittee(address pointer, uint256 n) private view returns (bytes memory committee) {
        committee = new bytes(40 * n);
        if (n != 0) {
            assembly ("memory-safe") {
                extcodecopy(pointer, add(committee, 32), 33, mul(40, n))
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

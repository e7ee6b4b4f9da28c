// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

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
contract QuorumOracle {
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

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant REPORT_TYPEHASH =
        keccak256("Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)");
    bytes32 private constant NAME_HASH = keccak256("QuorumOracle");
    bytes32 private constant VERSION_HASH = keccak256("1");

    // ---------------------------------------------------------------- errors

    // Administration
    error NotOwner();
    error NotPendingOwner();
    error NotGuardian();
    error ZeroAddress();
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

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event GuardianSet(address indexed previousGuardian, address indexed newGuardian);
    event PausedSet(bool paused, address indexed by);
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

    address public owner;
    address public pendingOwner;
    address public guardian;
    Transmission private s_transmission;
    bytes32 private s_configDigest; // for reads; transmit reads the blob's copy
    ConfigMeta private s_configMeta;
    bytes private s_offchainConfig;
    /// Feed 2k in the low 128 bits, 2k+1 in the high: value int64 | observedAt u32 |
    /// roundId u30 | tripped u1 | flag u1 (flag: tripped -> one in-limit report seen;
    /// not tripped -> re-anchor on the next report after a reset).
    mapping(uint256 => uint256) private s_feedPairs;
    mapping(uint256 => mapping(uint256 => uint256)) private s_history; // feed => roundId % depth => half
    mapping(uint256 => FeedInfo) private s_feedInfo;
    mapping(bytes32 => uint256) private s_feedIndexPlusOne;

    uint256 private immutable i_cachedChainId;
    bytes32 private immutable i_cachedDomainSeparator;

    constructor() {
        owner = msg.sender;
        i_cachedChainId = block.chainid;
        i_cachedDomainSeparator = _buildDomainSeparator();
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    modifier onlyGuardianOrOwner() {
        if (msg.sender != guardian && msg.sender != owner) revert NotGuardian();
        _;
    }

    // ---------------------------------------------------------------- roles

    /// Two-step: the new owner must call acceptOwnership, so a typo cannot brick the oracle.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(owner, newOwner);
    }

    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        pendingOwner = address(0);
    }

    function setGuardian(address newGuardian) external onlyOwner {
        emit GuardianSet(guardian, newGuardian);
        guardian = newGuardian;
    }

    function pause() external onlyGuardianOrOwner {
        s_transmission.paused = true;
        emit PausedSet(true, msg.sender);
    }

    function unpause() external onlyGuardianOrOwner {
        s_transmission.paused = false;
        emit PausedSet(false, msg.sender);
    }

    function paused() external view returns (bool) {
        return s_transmission.paused;
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

    function transmit(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures
    ) external {
        Transmission memory t = s_transmission;
        if (t.paused) revert Paused();
        uint256 n = t.n;
        bytes memory committee = _loadDigestAndCommittee(t.blob, n);
        _checkReportHeader(t, committee, configDigest, epoch, round);
        bytes32 digest = reportDigest(configDigest, epoch, round, updates);
        uint256 signerCount = _verifySignatures(t, committee, digest, signerBitmask, signatures);
        _applyUpdates(t.blob, 33 + 40 * n, updates);

        // One SSTORE of the packed slot: epoch (bits 160..191), round (192..223) and the
        // signer count (240..247) replaced, the rest kept.
        assembly ("memory-safe") {
            let word := sload(s_transmission.slot)
            word := and(word, not(or(shl(160, 0xffffffffffffffff), shl(240, 0xff))))
            sstore(s_transmission.slot, or(word, or(or(shl(160, epoch), shl(192, round)), shl(240, signerCount))))
        }
        emit NewTransmission(epoch, round, signerBitmask);
    }

    // ---------------------------------------------------------------- internals: transmit

    function _checkReportHeader(
        Transmission memory t,
        bytes memory committee,
        bytes32 configDigest,
        uint32 epoch,
        uint32 round
    ) private view {
        uint256 n = t.n;
        bool isTransmitter;
        for (uint256 j; j < n; ++j) {
            if (_addressAt32(committee, n + j) == msg.sender) {
                isTransmitter = true;
                break;
            }
        }
        if (!isTransmitter) revert UnauthorizedTransmitter(msg.sender);
        bytes32 expected;
        assembly ("memory-safe") {
            expected := mload(add(committee, 32))
        }
        if (configDigest != expected) revert ConfigDigestMismatch(expected, configDigest);
        // (epoch, round) compared as one 64-bit number: strictly rising, lexicographically.
        if ((uint64(epoch) << 32 | round) <= (uint64(t.epoch) << 32 | t.round)) revert StaleRound(t.epoch, t.round);
    }

    function _verifySignatures(
        Transmission memory t,
        bytes memory committee,
        bytes32 digest,
        uint256 signerBitmask,
        bytes calldata signatures
    ) private view returns (uint8) {
        if (signerBitmask >> t.n != 0) revert UnknownSigner(signerBitmask);
        uint256 count;
        for (uint256 m = signerBitmask; m != 0; m &= m - 1) {
            unchecked {
                ++count;
            }
        }
        if (signatures.length != count * 64) revert SignatureCountMismatch(count, signatures.length);
        if (count < t.threshold) revert InsufficientSignatures(count, t.threshold);

        uint256 badPlusOne;
        address recovered;
        assembly ("memory-safe") {
            let p := mload(0x40) // ecrecover input: digest, v, r, s
            mstore(p, digest)
            let sig := signatures.offset
            let signersBase := add(committee, 64) // skip length word and config digest
            for { let m := signerBitmask let i := 0 } m { } {
                if and(m, 1) {
                    let vs := calldataload(add(sig, 32))
                    // EIP-2098: the top bit of vs is the y parity, the rest is s.
                    mstore(add(p, 0x20), add(27, shr(255, vs)))
                    mstore(add(p, 0x40), calldataload(sig))
                    mstore(add(p, 0x60), shr(1, shl(1, vs)))
                    mstore(0, 0)
                    pop(staticcall(gas(), 1, p, 0x80, 0, 0x20))
                    let got := mload(0)
                    if iszero(eq(got, shr(96, mload(add(signersBase, mul(i, 20)))))) {
                        badPlusOne := add(i, 1)
                        recovered := got
                        m := 0
                    }
                    sig := add(sig, 64)
                }
                m := shr(1, m)
                i := add(i, 1)
            }
        }
        if (badPlusOne != 0) revert SignerMismatch(badPlusOne - 1, recovered);
        return uint8(count); // count <= n <= MAX_SIGNERS
    }

    function _applyUpdates(address blob, uint256 tableOffset, bytes calldata updates) private {
        uint256 length = updates.length;
        if (length == 0 || length % 32 != 0) revert InvalidUpdates();
        uint256 horizon = block.timestamp + MAX_FUTURE_SKEW;
        uint256 minIndex; // strictly ascending feed indexes: the next one must be at least this
        for (uint256 offset; offset < length; offset += 32) {
            uint256 word;
            uint256 e;
            assembly ("memory-safe") {
                word := calldataload(add(updates.offset, offset))
                extcodecopy(blob, 0, add(tableOffset, mul(shr(240, word), ENTRY_BYTES)), ENTRY_BYTES)
                e := shr(64, mload(0))
            }
            _applyOne(word, e, minIndex, horizon);
            unchecked {
                minIndex = (word >> 240) + 1;
            }
        }
    }

    /// One update word. Layout: feedIndex u16 | observedAt u32 | numSources u8 | reserved u8 |
    /// value i192. Entry: decimals u8 | historyDepth u8 | breakerBps u16 | heartbeat u32 |
    /// min i64 | max i64.
    function _applyOne(uint256 word, uint256 e, uint256 minIndex, uint256 horizon) private {
        uint256 slot;
        uint256 packed;
        uint256 half;
        uint256 failure; // 0 = checks passed; else which check failed (see _revertUpdate)
        uint256 next; // the feed's new state when the fast path decides it, else 0
        assembly ("memory-safe") {
            let value := signextend(23, word)
            mstore(0, shr(241, word))
            mstore(0x20, s_feedPairs.slot)
            slot := keccak256(0, 0x40)
            packed := sload(slot)
            half := and(shr(mul(and(shr(240, word), 1), 128), packed), MASK_128)
            for {} 1 {} {
                if or(lt(shr(240, word), minIndex), and(shr(192, word), 0xff)) { failure := 1 break }
                if iszero(and(shr(128, e), 0xffffffff)) { failure := 2 break } // heartbeat 0: no feed
                if or(slt(value, signextend(7, shr(64, e))), sgt(value, signextend(7, e))) { failure := 3 break }
                if gt(and(shr(208, word), 0xffffffff), horizon) { failure := 4 break }
                if lt(and(shr(208, word), 0xffffffff), and(shr(32, half), 0xffffffff)) { failure := 5 break }
                let roundId := and(shr(2, half), MAX_ROUND_ID)
                if eq(roundId, MAX_ROUND_ID) { failure := 6 break }
                // Fast path: not tripped, not re-anchoring, and (first value, breaker off, or
                // the jump within the limit). Everything else goes to _nextHalf.
                if and(half, 3) { break }
                if and(iszero(iszero(roundId)), iszero(iszero(and(shr(160, e), 0xffff)))) {
                    let last := signextend(7, shr(64, half))
                    let delta := sub(value, last)
                    if slt(delta, 0) { delta := sub(0, delta) }
                    if slt(last, 0) { last := sub(0, last) }
                    if gt(mul(delta, 10000), mul(and(shr(160, e), 0xffff), last)) { break }
                }
                next := or(or(shl(64, and(value, 0xffffffffffffffff)), shl(32, and(shr(208, word), 0xffffffff))), shl(2, add(roundId, 1)))
                break
            }
        }
        uint16 index = uint16(word >> 240);
        if (failure != 0) _revertUpdate(failure, index, word, half);
        if (next == 0) next = _nextHalf(index, half, int192(uint192(word)), uint32(word >> 208), uint16(e >> 160));
        if (next & 2 == 0 && uint8(e >> 176) != 0) {
            s_history[index][((next >> 2) & MAX_ROUND_ID) % uint8(e >> 176)] = next;
        }
        assembly ("memory-safe") {
            let shift := mul(and(shr(240, word), 1), 128)
            sstore(slot, or(and(packed, not(shl(shift, MASK_128))), shl(shift, next)))
        }
    }

    function _revertUpdate(uint256 failure, uint16 index, uint256 word, uint256 half) private pure {
        if (failure == 1) revert InvalidUpdates();
        if (failure == 2) revert UnknownFeed(index);
        if (failure == 3) revert ValueOutOfBounds(index, int192(uint192(word)));
        uint32 observedAt = uint32(word >> 208);
        if (failure == 4) revert ObservationInFuture(index, observedAt);
        if (failure == 5) revert ObservationTooOld(index, observedAt, uint32(half >> 32));
        revert RoundIdExhausted(index);
    }

    /// The circuit breaker: the new 128-bit state of a feed given an attested value.
    function _nextHalf(uint16 index, uint256 half, int192 value, uint32 observedAt, uint16 breakerBps)
        private
        returns (uint256)
    {
        uint256 roundId = (half >> 2) & MAX_ROUND_ID;
        // Checked unless: first value ever, breaker disabled, or re-anchoring after a reset.
        if (roundId != 0 && breakerBps != 0 && half & 3 != 1) {
            // Reference: the last good value (a tripped feed keeps it).
            int256 last = int64(uint64(half >> 64));
            int256 jump = int256(value) - last;
            bool within = uint256(jump < 0 ? -jump : jump) * 10_000
                <= uint256(breakerBps) * uint256(last < 0 ? -last : last);
            if (half & 2 == 0) {
                if (!within) {
                    emit BreakerTripped(index, int64(last), value, observedAt);
                    return half | 2;
                }
            } else {
                if (!within) return half & ~uint256(1); // streak broken
                if (half & 1 == 0) return half | 1; // first in-limit report: count it
                emit BreakerCleared(index, false);
            }
        }
        if (roundId == MAX_ROUND_ID) revert RoundIdExhausted(index);
        // Accepted: value, time, round + 1; tripped and flag cleared.
        return (uint256(uint64(int64(value))) << 64) | (uint256(observedAt) << 32) | ((roundId + 1) << 2);
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

    /// The config digest (32 bytes), then the committee as in _loadCommittee.
    function _loadDigestAndCommittee(address pointer, uint256 n) private view returns (bytes memory blob) {
        blob = new bytes(32 + 40 * n);
        assembly ("memory-safe") {
            extcodecopy(pointer, add(blob, 32), 1, add(32, mul(40, n)))
        }
    }

    function _addressAt(bytes memory committee, uint256 slot) private pure returns (address account) {
        assembly ("memory-safe") {
            account := shr(96, mload(add(add(committee, 32), mul(slot, 20))))
        }
    }

    /// Like _addressAt for a buffer that starts with the 32-byte config digest.
    function _addressAt32(bytes memory blob, uint256 slot) private pure returns (address account) {
        assembly ("memory-safe") {
            account := shr(96, mload(add(add(blob, 64), mul(slot, 20))))
        }
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }
}

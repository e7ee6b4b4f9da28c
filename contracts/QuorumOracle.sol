// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title QuorumOracle
/// @notice Stores multi-feed reports attested by a threshold of an on-chain committee
/// (DESIGN.md §6). A report is `updates` (one 32-byte word per feed) signed with EIP-712 by
/// at least `threshold` committee signers; signatures travel as EIP-2098 compact pairs in
/// ascending signer order plus a signer bitmask, which makes signer distinctness free.
///
/// Storage is laid out for the transmit hot path:
///  - one slot (`s_transmission`) holds the committee pointer, the (epoch, round) watermark,
///    n, threshold and the latest signer count, so transmit reads and writes it once;
///  - the committee addresses live in the code of a data contract (SSTORE2 pattern): one
///    EXTCODECOPY (2.6k gas) replaces one cold SLOAD (2.1k gas) per signature plus a
///    transmitter lookup;
///  - per feed, value + observedAt + roundId share one slot; bounds, decimals and an
///    existence flag share a second one (bounds are int120, see addFeed).
contract QuorumOracle {
    // ---------------------------------------------------------------- constants

    /// The bitmask is uint256 on the wire; 31 keeps n in a uint8 with headroom and the
    /// committee blob small. Raise together with the gas budget if larger committees appear.
    uint256 public constant MAX_SIGNERS = 31;

    /// Clock skew tolerated between a node's observation time and the block timestamp.
    /// Block timestamps may lag wall clock by a slot or two; more than this is a lie or a
    /// broken clock.
    uint256 public constant MAX_FUTURE_SKEW = 60;

    /// Signature scheme, written into the top two bytes of every config digest so that a
    /// report signed for one scheme can never verify under another (DESIGN.md §6).
    /// 0x0001 = per-signer secp256k1 ECDSA over EIP-712, EIP-2098 compact on the wire.
    uint256 public constant SIGNATURE_SCHEME = 0x0001;

    uint256 private constant DIGEST_PREFIX_MASK = type(uint256).max >> 16;
    uint256 private constant LOW_255_BITS = type(uint256).max >> 1;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant REPORT_TYPEHASH =
        keccak256("Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)");
    bytes32 private constant NAME_HASH = keccak256("QuorumOracle");
    bytes32 private constant VERSION_HASH = keccak256("1");

    // ---------------------------------------------------------------- errors

    // Administration
    error NotOwner();
    error ZeroAddress();
    error LengthMismatch(uint256 signers, uint256 transmitters);
    error TooManySigners(uint256 n, uint256 max);
    error FaultToleranceTooHigh(uint256 n, uint8 f);
    error InvalidThreshold(uint8 threshold, uint8 f, uint256 n);
    error DuplicateAddress(address account);
    error CommitteeStoreFailed();
    error InvalidFeedId();
    error InvalidBounds(int192 minValue, int192 maxValue);
    error FeedExists(bytes32 feedId);
    error TooManyFeeds();
    error UnknownFeedId(bytes32 feedId);

    // Transmission
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

    // ---------------------------------------------------------------- events

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
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
    event NewTransmission(
        bytes32 configDigest, uint32 epoch, uint32 round, uint256 signerBitmask, address transmitter
    );
    event FeedUpdated(uint16 indexed feedIndex, int192 value, uint32 observedAt, uint32 roundId);

    // ---------------------------------------------------------------- storage

    /// The transmit hot slot (248 bits).
    struct Transmission {
        address committee; // data contract: code = 0x00 || signers (20 B each) || transmitters
        uint32 epoch;
        uint32 round;
        uint8 n;
        uint8 threshold;
        uint8 latestSignerCount;
    }

    struct ConfigMeta {
        uint64 configCount;
        uint32 blockNumber;
        uint8 f;
        uint16 feedCount;
    }

    /// One slot per feed: the whole latest answer.
    struct FeedState {
        int192 value;
        uint32 observedAt;
        uint32 roundId;
    }

    /// The first slot (bounds, decimals, exists) is the only one transmit reads.
    struct FeedConfig {
        int120 minValue;
        int120 maxValue;
        uint8 decimals;
        bool exists;
        bytes32 feedId;
        string description;
    }

    address public owner;
    Transmission private s_transmission;
    bytes32 private s_configDigest;
    ConfigMeta private s_configMeta;
    bytes private s_offchainConfig;
    mapping(uint256 => FeedState) private s_feedState;
    mapping(uint256 => FeedConfig) private s_feedConfig;
    mapping(bytes32 => uint256) private s_feedIndexPlusOne;

    // EIP-712 domain separator, cached; recomputed only if the chain id changes (fork).
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

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
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
        uint64 configCount = _commitConfig(signers, transmitters, f, threshold, offchainConfig);
        emit ConfigSet(previous, configCount, s_configDigest, signers, transmitters, f, threshold, offchainConfig);
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
        bytes memory committee = _loadCommittee(t.committee, n);
        signers = new address[](n);
        transmitters = new address[](n);
        for (uint256 i; i < n; ++i) {
            signers[i] = _addressAt(committee, i);
            transmitters[i] = _addressAt(committee, n + i);
        }
        return (signers, transmitters, s_configMeta.f, t.threshold, s_offchainConfig);
    }

    // ---------------------------------------------------------------- feeds

    function addFeed(
        bytes32 feedId,
        uint8 decimals,
        string calldata description,
        int192 minValue,
        int192 maxValue
    ) external onlyOwner returns (uint16 index) {
        if (feedId == bytes32(0)) revert InvalidFeedId();
        // Bounds are stored as int120 (|bound| < 6.6e35, ample for any scaled price) so both
        // fit one slot with decimals: transmit reads one cold slot per feed instead of two.
        if (minValue > maxValue || minValue < type(int120).min || maxValue > type(int120).max) {
            revert InvalidBounds(minValue, maxValue);
        }
        if (s_feedIndexPlusOne[feedId] != 0) revert FeedExists(feedId);
        uint16 count = s_configMeta.feedCount;
        if (count == type(uint16).max) revert TooManyFeeds();

        index = count;
        s_feedConfig[index] = FeedConfig(int120(minValue), int120(maxValue), decimals, true, feedId, description);
        s_feedIndexPlusOne[feedId] = uint256(index) + 1;
        s_configMeta.feedCount = count + 1;
        emit FeedAdded(index, feedId, decimals, description, minValue, maxValue);
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
        FeedConfig storage cfg = _feedConfig(index);
        return (cfg.feedId, cfg.decimals, cfg.description, cfg.minValue, cfg.maxValue);
    }

    /// Cheap read for proxies, which need decimals without copying the description.
    function feedDecimals(uint16 index) external view returns (uint8) {
        return _feedConfig(index).decimals;
    }

    function latestFeed(uint16 index) external view returns (int192 value, uint32 observedAt, uint32 roundId) {
        _feedConfig(index);
        FeedState memory s = s_feedState[index];
        return (s.value, s.observedAt, s.roundId);
    }

    // ---------------------------------------------------------------- reports

    function latestEpochAndRound() external view returns (uint32 epoch, uint32 round) {
        Transmission memory t = s_transmission;
        return (t.epoch, t.round);
    }

    /// The latest report's signer count; its full bitmask is in the NewTransmission event.
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
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(REPORT_TYPEHASH, configDigest, epoch, round, keccak256(updates)));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
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
        bytes memory committee = _loadCommittee(t.committee, t.n);
        _checkReportHeader(t, committee, configDigest, epoch, round);
        bytes32 digest = reportDigest(configDigest, epoch, round, updates);
        t.latestSignerCount = _verifySignatures(t, committee, digest, signerBitmask, signatures);
        _applyUpdates(updates);

        t.epoch = epoch;
        t.round = round;
        s_transmission = t;
        emit NewTransmission(configDigest, epoch, round, signerBitmask, msg.sender);
    }

    // ---------------------------------------------------------------- internals

    function _checkReportHeader(
        Transmission memory t,
        bytes memory committee,
        bytes32 configDigest,
        uint32 epoch,
        uint32 round
    ) private view {
        if (!_isTransmitter(committee, t.n, msg.sender)) revert UnauthorizedTransmitter(msg.sender);
        bytes32 expected = s_configDigest;
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
    ) private pure returns (uint8) {
        uint256 count;
        if (signerBitmask >> t.n != 0) revert UnknownSigner(signerBitmask);
        for (uint256 m = signerBitmask; m != 0; m &= m - 1) {
            unchecked {
                ++count;
            }
        }
        if (signatures.length != count * 64) revert SignatureCountMismatch(count, signatures.length);
        if (count < t.threshold) revert InsufficientSignatures(count, t.threshold);

        uint256 offset;
        for (uint256 i; signerBitmask >> i != 0; ) {
            if ((signerBitmask >> i) & 1 == 1) {
                bytes32 r;
                uint256 vs;
                assembly ("memory-safe") {
                    let p := add(signatures.offset, offset)
                    r := calldataload(p)
                    vs := calldataload(add(p, 32))
                }
                // EIP-2098: the top bit of vs is the y parity, the rest is s.
                address recovered = ecrecover(digest, uint8(27 + (vs >> 255)), r, bytes32(vs & LOW_255_BITS));
                if (recovered != _addressAt(committee, i)) revert SignerMismatch(i, recovered);
                unchecked {
                    offset += 64;
                }
            }
            unchecked {
                ++i;
            }
        }
        return uint8(count); // count <= n <= MAX_SIGNERS
    }

    function _applyUpdates(bytes calldata updates) private {
        uint256 length = updates.length;
        if (length == 0 || length % 32 != 0) revert InvalidUpdates();
        uint256 horizon = block.timestamp + MAX_FUTURE_SKEW;
        uint256 minIndex; // strictly ascending feed indexes: the next one must be at least this
        for (uint256 offset; offset < length; ) {
            uint256 word;
            assembly ("memory-safe") {
                word := calldataload(add(updates.offset, offset))
            }
            // Layout: feedIndex u16 | observedAt u32 | numSources u8 | reserved u8 | value i192.
            uint16 index = uint16(word >> 240);
            if (index < minIndex || uint8(word >> 192) != 0) revert InvalidUpdates();
            uint32 observedAt = uint32(word >> 208);
            int192 value = int192(uint192(word));

            FeedConfig storage cfg = s_feedConfig[index];
            if (!cfg.exists) revert UnknownFeed(index);
            if (value < cfg.minValue || value > cfg.maxValue) revert ValueOutOfBounds(index, value);
            if (observedAt > horizon) revert ObservationInFuture(index, observedAt);
            FeedState memory previous = s_feedState[index];
            if (observedAt < previous.observedAt) revert ObservationTooOld(index, observedAt, previous.observedAt);

            uint32 roundId = previous.roundId + 1;
            s_feedState[index] = FeedState(value, observedAt, roundId);
            emit FeedUpdated(index, value, observedAt, roundId);
            unchecked {
                minIndex = uint256(index) + 1;
                offset += 32;
            }
        }
    }

    function _feedConfig(uint16 index) private view returns (FeedConfig storage cfg) {
        cfg = s_feedConfig[index];
        if (!cfg.exists) revert UnknownFeed(index);
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

    function _commitConfig(
        address[] calldata signers,
        address[] calldata transmitters,
        uint8 f,
        uint8 threshold,
        bytes calldata offchainConfig
    ) private returns (uint64 configCount) {
        ConfigMeta memory meta = s_configMeta;
        configCount = meta.configCount + 1;
        s_configDigest = _configDigest(configCount, signers, transmitters, f, threshold, offchainConfig);
        s_configMeta = ConfigMeta(configCount, uint32(block.number), f, meta.feedCount);
        // A new committee starts a new (epoch, round) sequence: the watermark resets.
        s_transmission = Transmission(
            _storeCommittee(signers, transmitters), 0, 0, uint8(signers.length), threshold, 0
        );
        s_offchainConfig = offchainConfig;
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

    /// Writes signers then transmitters, 20 bytes each, as the code of a new data contract.
    function _storeCommittee(address[] calldata signers, address[] calldata transmitters)
        private
        returns (address pointer)
    {
        uint256 n = signers.length;
        // Runtime code starts with STOP (0x00) so the data contract cannot be called.
        bytes memory runtime = new bytes(1 + 40 * n);
        for (uint256 i; i < n; ++i) {
            _writeAddress(runtime, 1 + 20 * i, signers[i]);
            _writeAddress(runtime, 1 + 20 * (n + i), transmitters[i]);
        }
        // Init code: PUSH4 len, DUP1, PUSH1 14, PUSH1 0, CODECOPY, PUSH1 0, RETURN (14 bytes),
        // i.e. copy the runtime that follows the 14-byte header into memory and return it.
        bytes memory initCode = abi.encodePacked(hex"63", uint32(runtime.length), hex"80600e6000396000f3", runtime);
        assembly ("memory-safe") {
            pointer := create(0, add(initCode, 32), mload(initCode))
        }
        if (pointer == address(0)) revert CommitteeStoreFailed();
    }

    function _writeAddress(bytes memory buffer, uint256 offset, address account) private pure {
        // Writes 20 bytes; the byte-wise copy keeps neighbours intact whatever the order.
        bytes20 raw = bytes20(account);
        for (uint256 k; k < 20; ++k) {
            buffer[offset + k] = raw[k];
        }
    }

    /// Committee blob: signers at [0, 20n), transmitters at [20n, 40n) (the leading STOP skipped).
    function _loadCommittee(address pointer, uint256 n) private view returns (bytes memory committee) {
        committee = new bytes(40 * n);
        if (n != 0) {
            assembly ("memory-safe") {
                extcodecopy(pointer, add(committee, 32), 1, mul(40, n))
            }
        }
    }

    function _addressAt(bytes memory committee, uint256 slot) private pure returns (address account) {
        assembly ("memory-safe") {
            account := shr(96, mload(add(add(committee, 32), mul(slot, 20))))
        }
    }

    function _isTransmitter(bytes memory committee, uint256 n, address sender) private pure returns (bool) {
        for (uint256 j; j < n; ++j) {
            if (_addressAt(committee, n + j) == sender) return true;
        }
        return false;
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }
}

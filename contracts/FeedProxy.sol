// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";
import {QuorumOracle} from "./QuorumOracle.sol";

/// @title FeedProxy
/// @notice One feed of a QuorumOracle behind Chainlink's AggregatorV2V3 interface, so existing
/// consumers read it unchanged. The round id is the feed's own update counter (1, 2, ...).
/// `getRoundData` answers the latest round and, for feeds registered with a history depth,
/// the previous `historyDepth` rounds; older rounds revert `RoundNotAvailable`.
///
/// `updatedAt` is the oracle's: never after the block that stored the value (the oracle
/// stores min(observation time, block time)), so `block.timestamp - updatedAt` never
/// underflows and a value does not look fresher as blocks pass.
///
/// While the oracle is paused or the feed's breaker is tripped, the latest round is
/// **frozen**: the last good answer with `startedAt = updatedAt = 0` and `answeredInRound =
/// 0`, which every common staleness check refuses at once (`updatedAt == 0`, `block.timestamp
/// - updatedAt > maxAge`, `answeredInRound < roundId`). `latestAnswer` carries no time, so it
/// keeps the last good answer: consumers that read only `latestAnswer` (and any consumer that
/// must never see a held-back value) use StrictFeedProxy, which reverts instead.
/// The AggregatorV2 members (`latestAnswer`, `latestTimestamp`, `latestRound`, `getAnswer`,
/// `getTimestamp`) answer 0 where there is no data, as Chainlink's do, instead of reverting.
contract FeedProxy is AggregatorV3Interface {
    error NoDataPresent();
    error RoundNotAvailable(uint80 roundId);

    uint256 public constant override version = 1;

    QuorumOracle public immutable oracle;
    uint16 public immutable feedIndex;
    // The oracle has no way to change a feed's decimals, so caching them is exact.
    uint8 public immutable override decimals;

    constructor(QuorumOracle oracle_, uint16 feedIndex_) {
        oracle = oracle_;
        feedIndex = feedIndex_;
        decimals = oracle_.feedDecimals(feedIndex_); // reverts UnknownFeed for a bad index
    }

    function description() external view override returns (string memory text) {
        (, , text, , ) = oracle.feedInfo(feedIndex);
    }

    function latestRoundData()
        external
        view
        override
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        (int192 value, uint32 time, uint32 feedRound, bool usable) = _latest();
        if (feedRound == 0) revert NoDataPresent();
        return _answer(feedRound, value, time, usable);
    }

    function getRoundData(uint80 requestedRoundId)
        external
        view
        override
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        (bool found, int192 value, uint32 time, bool usable) = _round(requestedRoundId);
        if (!found) revert RoundNotAvailable(requestedRoundId);
        return _answer(requestedRoundId, value, time, usable);
    }

    // --- AggregatorV2 members, for consumers written before V3 ---------------------------

    function latestAnswer() external view returns (int256) {
        (int192 value, , uint32 feedRound, ) = _latest();
        return feedRound == 0 ? int256(0) : int256(value);
    }

    function latestTimestamp() external view returns (uint256) {
        (, uint32 time, , bool usable) = _latest();
        return usable ? time : 0; // 0 also before the first value
    }

    function latestRound() external view returns (uint256) {
        (, , uint32 feedRound, , ) = oracle.latestFeedState(feedIndex);
        return feedRound;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        if (roundId > type(uint80).max) return 0;
        (, int192 value, , ) = _round(uint80(roundId));
        return value;
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        if (roundId > type(uint80).max) return 0;
        (, , uint32 time, bool usable) = _round(uint80(roundId));
        return usable ? time : 0;
    }

    /// The latest answer with what a careful consumer needs to judge it: value, time, round,
    /// stale (never written, older than the heartbeat, or oracle paused), tripped (breaker
    /// holding the last good value), signer count of the latest report and the threshold.
    function latestStatus() external view returns (QuorumOracle.FeedStatus memory) {
        return oracle.feedStatus(feedIndex);
    }

    // --- internals ------------------------------------------------------------------------

    /// Called when the latest value is held back (oracle paused or breaker tripped): the
    /// frozen answer follows; StrictFeedProxy reverts here instead.
    function _whenUnusable(bool isPaused) internal view virtual {}

    /// The latest value, its time, its round (0: none) and whether it may be used.
    function _latest() internal view returns (int192 value, uint32 time, uint32 feedRound, bool usable) {
        bool tripped;
        bool isPaused;
        (value, time, feedRound, tripped, isPaused) = oracle.latestFeedState(feedIndex);
        usable = feedRound != 0 && !tripped && !isPaused;
        if (feedRound != 0 && !usable) _whenUnusable(isPaused);
    }

    /// A round: the latest one as _latest presents it, an earlier one from the history.
    function _round(uint80 roundId) internal view returns (bool found, int192 value, uint32 time, bool usable) {
        uint32 latest;
        (value, time, latest, usable) = _latest();
        if (roundId == latest && latest != 0) return (true, value, time, usable);
        try oracle.roundData(feedIndex, roundId) returns (int192 pastValue, uint32 pastTime) {
            return (true, pastValue, pastTime, true);
        } catch {
            return (false, 0, 0, false);
        }
    }

    function _answer(uint80 roundId, int192 value, uint32 time, bool usable)
        private
        pure
        returns (uint80, int256, uint256, uint256, uint80)
    {
        return usable ? (roundId, value, time, time, roundId) : (roundId, value, 0, 0, 0);
    }
}

/// @title StrictFeedProxy
/// @notice FeedProxy that reverts instead of answering while the oracle is paused
/// (`OraclePaused`) or the feed's breaker is tripped (`FeedBreakerTripped`), from every member
/// that would present the latest value (`latestRoundData`, `latestAnswer`, `latestTimestamp`,
/// and `getRoundData` / `getAnswer` / `getTimestamp` of the latest round). For consumers that
/// read `latestAnswer` without a time, and for any that must stop rather than hold a value.
contract StrictFeedProxy is FeedProxy {
    error OraclePaused();
    error FeedBreakerTripped();

    constructor(QuorumOracle oracle_, uint16 feedIndex_) FeedProxy(oracle_, feedIndex_) {}

    function _whenUnusable(bool isPaused) internal pure override {
        if (isPaused) revert OraclePaused();
        revert FeedBreakerTripped();
    }
}

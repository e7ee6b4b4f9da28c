// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";
import {QuorumOracle} from "./QuorumOracle.sol";

/// @title FeedProxy
/// @notice One feed of a QuorumOracle behind Chainlink's AggregatorV2V3 interface, so existing
/// consumers read it unchanged. The round id is the feed's own update counter (1, 2, ...).
/// `getRoundData` answers the latest round and, for feeds registered with a history depth,
/// the previous `historyDepth` rounds; older rounds revert `RoundNotAvailable`.
/// A tripped breaker freezes the value and its time at the last good report, so a consumer
/// that checks `updatedAt` sees the feed age and stop; `latestStatus` says why explicitly.
///
/// `updatedAt` is never later than the block being read: the oracle accepts observation
/// times slightly ahead of its block (clock skew between venues, nodes and the chain), and
/// the common `block.timestamp - updatedAt` staleness check would underflow on them.
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
        (int192 value, uint32 observedAt, uint32 feedRound) = oracle.latestFeed(feedIndex);
        if (feedRound == 0) revert NoDataPresent();
        uint256 at = _notAhead(observedAt);
        return (feedRound, value, at, at, feedRound);
    }

    function getRoundData(uint80 requestedRoundId)
        external
        view
        override
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        try oracle.roundData(feedIndex, requestedRoundId) returns (int192 value, uint32 observedAt) {
            uint256 at = _notAhead(observedAt);
            return (requestedRoundId, value, at, at, requestedRoundId);
        } catch {
            revert RoundNotAvailable(requestedRoundId);
        }
    }

    // --- AggregatorV2 members, for consumers written before V3 ---------------------------

    function latestAnswer() external view returns (int256 answer) {
        (int192 value, , uint32 feedRound) = oracle.latestFeed(feedIndex);
        return feedRound == 0 ? int256(0) : int256(value);
    }

    function latestTimestamp() external view returns (uint256) {
        (, uint32 observedAt, uint32 feedRound) = oracle.latestFeed(feedIndex);
        return feedRound == 0 ? 0 : _notAhead(observedAt);
    }

    function latestRound() external view returns (uint256) {
        (, , uint32 feedRound) = oracle.latestFeed(feedIndex);
        return feedRound;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        if (roundId > type(uint80).max) return 0;
        try oracle.roundData(feedIndex, uint80(roundId)) returns (int192 value, uint32) {
            return value;
        } catch {
            return 0;
        }
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        if (roundId > type(uint80).max) return 0;
        try oracle.roundData(feedIndex, uint80(roundId)) returns (int192, uint32 observedAt) {
            return _notAhead(observedAt);
        } catch {
            return 0;
        }
    }

    function _notAhead(uint32 observedAt) private view returns (uint256) {
        return observedAt > block.timestamp ? block.timestamp : observedAt;
    }

    /// The latest answer with what a careful consumer needs to judge it: value, time, round,
    /// stale (never written, older than the heartbeat, or oracle paused), tripped (breaker
    /// holding the last good value), signer count of the latest report and the threshold.
    function latestStatus() external view returns (QuorumOracle.FeedStatus memory) {
        return oracle.feedStatus(feedIndex);
    }
}

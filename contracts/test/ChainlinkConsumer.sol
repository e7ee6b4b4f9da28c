// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../AggregatorV3Interface.sol";

/// @notice A consumer written only against AggregatorV3Interface, reading the way lending
/// protocols read Chainlink feeds (positive answer, fresh updatedAt, complete round), and
/// scaling to 18 decimals. Test-only: proves FeedProxy works for such code unchanged.
contract ChainlinkConsumer {
    error InvalidPrice(int256 answer);
    error StalePrice(uint256 updatedAt, uint256 maxAge);
    error IncompleteRound(uint80 roundId, uint80 answeredInRound);

    AggregatorV3Interface public immutable feed;
    uint256 public immutable maxAge;

    constructor(AggregatorV3Interface feed_, uint256 maxAge_) {
        feed = feed_;
        maxAge = maxAge_;
    }

    /// The price with 18 decimals, or a revert naming why it cannot be trusted.
    function price() external view returns (uint256) {
        (uint80 roundId, int256 answer, , uint256 updatedAt, uint80 answeredInRound) = feed.latestRoundData();
        if (answer <= 0) revert InvalidPrice(answer);
        if (updatedAt == 0 || block.timestamp - updatedAt > maxAge) revert StalePrice(updatedAt, maxAge);
        if (answeredInRound < roundId) revert IncompleteRound(roundId, answeredInRound);
        uint8 decimals = feed.decimals();
        return decimals <= 18 ? uint256(answer) * 10 ** (18 - decimals) : uint256(answer) / 10 ** (decimals - 18);
    }

    function priceAt(uint80 roundId) external view returns (int256 answer, uint256 updatedAt) {
        (, answer, , updatedAt, ) = feed.getRoundData(roundId);
    }
}

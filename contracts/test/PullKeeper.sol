// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../AggregatorV3Interface.sol";
import {QuorumOracle} from "../QuorumOracle.sol";

/// @notice Test-only: a keeper (a liquidator, a perps settlement bot) that brings a node's
/// signed report into its own transaction, the pull path: it submits the report to the
/// oracle, then reads the feed through its proxy in the same call and acts only on a value
/// fresh enough. A refused report reverts with the oracle's own error.
contract PullKeeper {
    error StalePrice(uint256 updatedAt, uint256 maxAge);

    event PriceUsed(uint80 roundId, int256 answer, uint256 updatedAt, uint256 feedsStored);

    QuorumOracle public immutable oracle;
    AggregatorV3Interface public immutable feed;
    uint256 public immutable maxAge;

    constructor(QuorumOracle oracle_, AggregatorV3Interface feed_, uint256 maxAge_) {
        oracle = oracle_;
        feed = feed_;
        maxAge = maxAge_;
    }

    function submitAndRead(
        bytes32 configDigest,
        uint32 epoch,
        uint32 round,
        bytes calldata updates,
        uint256 signerBitmask,
        bytes calldata signatures
    ) external returns (int256 answer, uint256 updatedAt) {
        uint256 stored = oracle.submit(configDigest, epoch, round, updates, signerBitmask, signatures);
        uint80 roundId;
        (roundId, answer, , updatedAt, ) = feed.latestRoundData();
        if (updatedAt == 0 || block.timestamp - updatedAt > maxAge) revert StalePrice(updatedAt, maxAge);
        emit PriceUsed(roundId, answer, updatedAt, stored);
    }
}

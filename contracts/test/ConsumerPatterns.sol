// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../AggregatorV3Interface.sol";

/// Test-only consumers, each written the way a widely used kind of Chainlink consumer reads a
/// feed, and only against Chainlink's interfaces: they prove FeedProxy works for such code
/// unchanged (tests/relayer/chain/test_consumers.py), including with observations ahead of
/// the chain's clock, while the oracle is paused and while a breaker is tripped.

/// Chainlink's AggregatorV2 members, restated as consumers written before V3 call them.
interface AggregatorV2Like {
    function latestAnswer() external view returns (int256);

    function latestTimestamp() external view returns (uint256);
}

/// The maxStaleness check of Chainlink's docs and most price adapters: positive answer, and
/// `block.timestamp - updatedAt` (checked arithmetic: a future updatedAt would underflow and
/// revert with a panic) within the allowed age.
contract StalenessCheckedConsumer {
    error InvalidAnswer(int256 answer);
    error StaleAnswer(uint256 updatedAt, uint256 maxStaleness);

    AggregatorV3Interface public immutable feed;
    uint256 public immutable maxStaleness;

    constructor(AggregatorV3Interface feed_, uint256 maxStaleness_) {
        feed = feed_;
        maxStaleness = maxStaleness_;
    }

    function read() external view returns (int256 answer, uint256 updatedAt) {
        (, answer, , updatedAt, ) = feed.latestRoundData();
        if (answer <= 0) revert InvalidAnswer(answer);
        if (block.timestamp - updatedAt > maxStaleness) revert StaleAnswer(updatedAt, maxStaleness);
    }
}

/// The round-completeness checks of the FluxAggregator era, still in many lending forks:
/// `updatedAt != 0` ("round not complete") and `answeredInRound >= roundId` ("stale price"),
/// with no age limit of its own.
contract RoundCompleteConsumer {
    error RoundNotComplete(uint80 roundId);
    error AnswerCarriedOver(uint80 roundId, uint80 answeredInRound);
    error InvalidAnswer(int256 answer);

    AggregatorV3Interface public immutable feed;

    constructor(AggregatorV3Interface feed_) {
        feed = feed_;
    }

    function read() external view returns (int256 answer, uint80 roundId) {
        uint256 updatedAt;
        uint80 answeredInRound;
        (roundId, answer, , updatedAt, answeredInRound) = feed.latestRoundData();
        if (updatedAt == 0) revert RoundNotComplete(roundId);
        if (answeredInRound < roundId) revert AnswerCarriedOver(roundId, answeredInRound);
        if (answer <= 0) revert InvalidAnswer(answer);
    }
}

/// A consumer of the AggregatorV2 members: latestAnswer, and latestTimestamp for its age.
contract LatestAnswerConsumer {
    error InvalidAnswer(int256 answer);
    error StaleAnswer(uint256 updatedAt, uint256 maxStaleness);

    AggregatorV2Like public immutable feed;
    uint256 public immutable maxStaleness;

    constructor(AggregatorV2Like feed_, uint256 maxStaleness_) {
        feed = feed_;
        maxStaleness = maxStaleness_;
    }

    /// What a V2 reader that trusts latestAnswer alone uses.
    function answer() external view returns (int256 value) {
        value = feed.latestAnswer();
        if (value <= 0) revert InvalidAnswer(value);
    }

    /// The same with the age check V2 readers make through latestTimestamp.
    function freshAnswer() external view returns (int256 value) {
        value = feed.latestAnswer();
        uint256 updatedAt = feed.latestTimestamp();
        if (value <= 0) revert InvalidAnswer(value);
        if (block.timestamp - updatedAt > maxStaleness) revert StaleAnswer(updatedAt, maxStaleness);
    }
}

/// A lending market's price oracle in the manner of Aave's: one source per asset, price =
/// the source's latestAnswer when positive, else the fallback the governance configured
/// (reverting when there is none), in the base currency's units.
contract LendingOracleWrapper {
    error NoSource(address asset);
    error NoPrice(address asset);

    address public immutable governance;
    mapping(address => AggregatorV2Like) public sources;
    mapping(address => uint256) public fallbackPrices;

    constructor() {
        governance = msg.sender;
    }

    function setSource(address asset, AggregatorV2Like source, uint256 fallbackPrice) external {
        require(msg.sender == governance);
        sources[asset] = source;
        fallbackPrices[asset] = fallbackPrice;
    }

    function getAssetPrice(address asset) public view returns (uint256) {
        AggregatorV2Like source = sources[asset];
        if (address(source) == address(0)) revert NoSource(asset);
        int256 price = source.latestAnswer();
        if (price > 0) return uint256(price);
        if (fallbackPrices[asset] == 0) revert NoPrice(asset);
        return fallbackPrices[asset];
    }

    /// Collateral value of `amount` (18 decimals) of `asset`, as a borrow check computes it.
    function collateralValue(address asset, uint256 amount) external view returns (uint256) {
        return getAssetPrice(asset) * amount / 1e18;
    }
}

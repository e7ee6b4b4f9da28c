// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Governed.sol";

/// @notice The part of QuorumOracle the registry needs: which feeds it serves.
interface IFeedDirectory {
    function feedIndexOf(bytes32 feedId) external view returns (uint16);
}

/// @title SubscriptionRegistry
/// @notice A protocol (msg.sender) registers the feeds it needs with its tolerance: a
/// deviation threshold (bps) and a heartbeat (s). Nodes read every subscription and serve,
/// per feed, the tightest of the catalog default and the subscriptions, never tighter than
/// the governance floors. Every change emits an event, so nodes follow the registry by logs.
///
/// Every subscription makes every operator pay gas for as long as it stands, so the registry
/// is gated: only subscribers the owner approved may subscribe, each up to the number of
/// subscriptions it was approved for; only feeds the oracle serves are accepted; no
/// subscription may ask for less than the floors (per feed, or the default floors).
contract SubscriptionRegistry is Owned {
    struct Subscription {
        address subscriber;
        bytes32 feedId;
        uint16 deviationBps;
        uint32 heartbeat;
    }

    struct Floors {
        uint16 minDeviationBps;
        uint32 minHeartbeat;
    }

    error InvalidSubscription(bytes32 feedId, uint16 deviationBps, uint32 heartbeat);
    error NotSubscribed(address subscriber, bytes32 feedId);
    error NotApproved(address subscriber);
    error TooManySubscriptions(address subscriber, uint16 limit);
    error UnknownFeed(bytes32 feedId);
    error BelowFloor(bytes32 feedId, uint16 minDeviationBps, uint32 minHeartbeat);
    error InvalidFloors(uint16 minDeviationBps, uint32 minHeartbeat);

    event Subscribed(address indexed subscriber, bytes32 indexed feedId, uint16 deviationBps, uint32 heartbeat);
    event SubscriptionUpdated(address indexed subscriber, bytes32 indexed feedId, uint16 deviationBps, uint32 heartbeat);
    event Unsubscribed(address indexed subscriber, bytes32 indexed feedId);
    event SubscriberApproved(address indexed subscriber, uint16 maxSubscriptions);
    event SubscriberRevoked(address indexed subscriber);
    event FloorsSet(bytes32 indexed feedId, uint16 minDeviationBps, uint32 minHeartbeat);

    /// The feed id under which the default floors are kept.
    bytes32 public constant DEFAULT_FLOORS = bytes32(0);

    IFeedDirectory public immutable oracle;

    Subscription[] private s_subscriptions;
    mapping(address => mapping(bytes32 => uint256)) private s_positionPlusOne;
    mapping(address => uint16) private s_limit;
    mapping(address => uint16) private s_count;
    mapping(address => bytes32[]) private s_feedsOf;
    mapping(bytes32 => Floors) private s_floors;

    constructor(IFeedDirectory oracle_, uint16 minDeviationBps, uint32 minHeartbeat) {
        if (address(oracle_) == address(0)) revert ZeroAddress();
        oracle = oracle_;
        _setFloors(DEFAULT_FLOORS, minDeviationBps, minHeartbeat);
    }

    // --- governance -----------------------------------------------------------------

    /// Lets `subscriber` hold up to `maxSubscriptions` subscriptions (0 revokes).
    function approve(address subscriber, uint16 maxSubscriptions) external onlyOwner {
        if (subscriber == address(0)) revert ZeroAddress();
        if (maxSubscriptions == 0) {
            _revoke(subscriber);
            return;
        }
        s_limit[subscriber] = maxSubscriptions;
        emit SubscriberApproved(subscriber, maxSubscriptions);
    }

    /// Takes the approval away and removes every subscription of `subscriber`.
    function revoke(address subscriber) external onlyOwner {
        _revoke(subscriber);
    }

    /// Floors for one feed; `feedId` DEFAULT_FLOORS sets the floors of every feed without its own.
    function setFloors(bytes32 feedId, uint16 minDeviationBps, uint32 minHeartbeat) external onlyOwner {
        if (feedId != DEFAULT_FLOORS) _requireServed(feedId);
        _setFloors(feedId, minDeviationBps, minHeartbeat);
    }

    // --- subscribers ----------------------------------------------------------------

    /// Creates or replaces msg.sender's subscription to `feedId`.
    function subscribe(bytes32 feedId, uint16 deviationBps, uint32 heartbeat) external {
        uint16 limit = s_limit[msg.sender];
        if (limit == 0) revert NotApproved(msg.sender);
        if (feedId == bytes32(0) || deviationBps == 0 || deviationBps > 10_000 || heartbeat == 0) {
            revert InvalidSubscription(feedId, deviationBps, heartbeat);
        }
        _requireServed(feedId);
        Floors memory floors = floorsOf(feedId);
        if (deviationBps < floors.minDeviationBps || heartbeat < floors.minHeartbeat) {
            revert BelowFloor(feedId, floors.minDeviationBps, floors.minHeartbeat);
        }
        uint256 plusOne = s_positionPlusOne[msg.sender][feedId];
        if (plusOne == 0) {
            if (s_count[msg.sender] >= limit) revert TooManySubscriptions(msg.sender, limit);
            s_count[msg.sender] += 1;
            s_feedsOf[msg.sender].push(feedId);
            s_subscriptions.push(Subscription(msg.sender, feedId, deviationBps, heartbeat));
            s_positionPlusOne[msg.sender][feedId] = s_subscriptions.length;
            emit Subscribed(msg.sender, feedId, deviationBps, heartbeat);
        } else {
            Subscription storage s = s_subscriptions[plusOne - 1];
            s.deviationBps = deviationBps;
            s.heartbeat = heartbeat;
            emit SubscriptionUpdated(msg.sender, feedId, deviationBps, heartbeat);
        }
    }

    function unsubscribe(bytes32 feedId) external {
        if (s_positionPlusOne[msg.sender][feedId] == 0) revert NotSubscribed(msg.sender, feedId);
        _remove(msg.sender, feedId);
        bytes32[] storage feeds = s_feedsOf[msg.sender];
        for (uint256 i = 0; i < feeds.length; ++i) {
            if (feeds[i] == feedId) {
                feeds[i] = feeds[feeds.length - 1];
                feeds.pop();
                break;
            }
        }
    }

    // --- reads ----------------------------------------------------------------------

    function floorsOf(bytes32 feedId) public view returns (Floors memory floors) {
        floors = s_floors[feedId];
        if (floors.minDeviationBps == 0) floors = s_floors[DEFAULT_FLOORS];
    }

    /// How many subscriptions `subscriber` may hold (0: not approved) and holds.
    function allowanceOf(address subscriber) external view returns (uint16 limit, uint16 used) {
        return (s_limit[subscriber], s_count[subscriber]);
    }

    function subscriptionCount() external view returns (uint256) {
        return s_subscriptions.length;
    }

    function subscriptionOf(address subscriber, bytes32 feedId) external view returns (Subscription memory) {
        uint256 plusOne = s_positionPlusOne[subscriber][feedId];
        if (plusOne == 0) revert NotSubscribed(subscriber, feedId);
        return s_subscriptions[plusOne - 1];
    }

    /// A page of subscriptions, [offset, offset + limit) clipped to the list.
    function subscriptions(uint256 offset, uint256 limit) external view returns (Subscription[] memory page) {
        uint256 total = s_subscriptions.length;
        if (offset >= total) return new Subscription[](0);
        // limit > total - offset, not offset + limit > total: the sum may overflow.
        uint256 end = limit > total - offset ? total : offset + limit;
        page = new Subscription[](end - offset);
        for (uint256 i = offset; i < end; ++i) page[i - offset] = s_subscriptions[i];
    }

    // --- internals ------------------------------------------------------------------

    function _requireServed(bytes32 feedId) private view {
        try oracle.feedIndexOf(feedId) returns (uint16) {
            return;
        } catch {
            revert UnknownFeed(feedId);
        }
    }

    function _setFloors(bytes32 feedId, uint16 minDeviationBps, uint32 minHeartbeat) private {
        if (minDeviationBps == 0 || minDeviationBps > 10_000 || minHeartbeat == 0) {
            revert InvalidFloors(minDeviationBps, minHeartbeat);
        }
        s_floors[feedId] = Floors(minDeviationBps, minHeartbeat);
        emit FloorsSet(feedId, minDeviationBps, minHeartbeat);
    }

    function _revoke(address subscriber) private {
        bytes32[] storage feeds = s_feedsOf[subscriber];
        // Bounded by the subscriber's approved limit (a uint16).
        while (feeds.length > 0) {
            _remove(subscriber, feeds[feeds.length - 1]);
            feeds.pop();
        }
        delete s_limit[subscriber];
        emit SubscriberRevoked(subscriber);
    }

    function _remove(address subscriber, bytes32 feedId) private {
        uint256 plusOne = s_positionPlusOne[subscriber][feedId];
        // Swap-and-pop keeps the list dense, so readers page over it without gaps.
        uint256 last = s_subscriptions.length - 1;
        if (plusOne - 1 != last) {
            Subscription memory moved = s_subscriptions[last];
            s_subscriptions[plusOne - 1] = moved;
            s_positionPlusOne[moved.subscriber][moved.feedId] = plusOne;
        }
        s_subscriptions.pop();
        delete s_positionPlusOne[subscriber][feedId];
        s_count[subscriber] -= 1;
        emit Unsubscribed(subscriber, feedId);
    }
}

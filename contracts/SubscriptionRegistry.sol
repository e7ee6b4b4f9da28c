// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title SubscriptionRegistry
/// @notice A protocol (msg.sender) registers the feeds it needs with its tolerance:
/// a deviation threshold (bps) and a heartbeat (s). Nodes read every subscription and serve
/// the union: per feed the tightest deviation and the shortest heartbeat. Every change emits
/// an event, so a node can also follow the registry by logs.
contract SubscriptionRegistry {
    struct Subscription {
        address subscriber;
        bytes32 feedId;
        uint16 deviationBps;
        uint32 heartbeat;
    }

    error InvalidSubscription(bytes32 feedId, uint16 deviationBps, uint32 heartbeat);
    error NotSubscribed(address subscriber, bytes32 feedId);

    event Subscribed(address indexed subscriber, bytes32 indexed feedId, uint16 deviationBps, uint32 heartbeat);
    event SubscriptionUpdated(address indexed subscriber, bytes32 indexed feedId, uint16 deviationBps, uint32 heartbeat);
    event Unsubscribed(address indexed subscriber, bytes32 indexed feedId);

    Subscription[] private s_subscriptions;
    mapping(address => mapping(bytes32 => uint256)) private s_positionPlusOne;

    /// Creates or replaces msg.sender's subscription to `feedId`.
    function subscribe(bytes32 feedId, uint16 deviationBps, uint32 heartbeat) external {
        if (feedId == bytes32(0) || deviationBps == 0 || deviationBps > 10_000 || heartbeat == 0) {
            revert InvalidSubscription(feedId, deviationBps, heartbeat);
        }
        uint256 plusOne = s_positionPlusOne[msg.sender][feedId];
        if (plusOne == 0) {
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
        uint256 plusOne = s_positionPlusOne[msg.sender][feedId];
        if (plusOne == 0) revert NotSubscribed(msg.sender, feedId);
        // Swap-and-pop keeps the list dense, so readers page over it without gaps.
        uint256 last = s_subscriptions.length - 1;
        if (plusOne - 1 != last) {
            Subscription memory moved = s_subscriptions[last];
            s_subscriptions[plusOne - 1] = moved;
            s_positionPlusOne[moved.subscriber][moved.feedId] = plusOne;
        }
        s_subscriptions.pop();
        delete s_positionPlusOne[msg.sender][feedId];
        emit Unsubscribed(msg.sender, feedId);
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
        uint256 end = offset + limit > total ? total : offset + limit;
        if (offset >= end) return new Subscription[](0);
        page = new Subscription[](end - offset);
        for (uint256 i = offset; i < end; ++i) page[i - offset] = s_subscriptions[i];
    }
}

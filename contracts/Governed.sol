// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Owned
/// @notice Two-step ownership, the governance root of every contract here that has one.
/// The deployer is the first owner; a new owner must call `acceptOwnership` itself, so a
/// mistyped address can never take (or strand) a contract.
/// Storage: `owner` then `pendingOwner`, the first two slots of every heir.
abstract contract Owned {
    error NotOwner();
    error NotPendingOwner();
    error ZeroAddress();

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    address public owner;
    address public pendingOwner;

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

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
}

/// @title Governed
/// @notice Owned, plus a guardian: an account the owner names that may, like the owner,
/// pause and unpause, and run whatever else an heir marks `onlyGuardianOrOwner` (emergency
/// actions that must not wait for the owner's slower process).
/// A pause remembers who set it: the guardian cannot lift a pause the owner set (the owner
/// may have paused because the guardian is in doubt); the owner lifts any pause, and an
/// owner's pause over a guardian's makes it the owner's.
/// Storage: `guardian` in the slot after Owned's. Where the pause level lives is the heir's
/// choice (`_setPauseLevel`, `_pauseLevel`): QuorumOracle packs it into the slot its hot path
/// loads anyway, so checking it costs transmit nothing.
abstract contract Governed is Owned {
    error NotGuardian();
    error PausedByOwner();

    event GuardianSet(address indexed previousGuardian, address indexed newGuardian);
    event PausedSet(bool paused, address indexed by);

    uint8 internal constant PAUSED_BY_GUARDIAN = 1;
    uint8 internal constant PAUSED_BY_OWNER = 2;

    address public guardian;

    modifier onlyGuardianOrOwner() {
        if (msg.sender != guardian && msg.sender != owner) revert NotGuardian();
        _;
    }

    /// address(0) removes the guardian: the owner alone keeps these powers.
    function setGuardian(address newGuardian) external onlyOwner {
        emit GuardianSet(guardian, newGuardian);
        guardian = newGuardian;
    }

    function pause() external onlyGuardianOrOwner {
        uint8 level = msg.sender == owner ? PAUSED_BY_OWNER : PAUSED_BY_GUARDIAN;
        if (level > _pauseLevel()) _setPauseLevel(level);
        emit PausedSet(true, msg.sender);
    }

    function unpause() external onlyGuardianOrOwner {
        if (msg.sender != owner && _pauseLevel() == PAUSED_BY_OWNER) revert PausedByOwner();
        _setPauseLevel(0);
        emit PausedSet(false, msg.sender);
    }

    function paused() external view returns (bool) {
        return _pauseLevel() != 0;
    }

    /// 0 running, PAUSED_BY_GUARDIAN or PAUSED_BY_OWNER.
    function _pauseLevel() internal view virtual returns (uint8);

    function _setPauseLevel(uint8 level) internal virtual;
}

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {FrostVerifier} from "../FrostVerifier.sol";

/// @notice Test-only: exposes FrostVerifier so tests can check it against the Python
/// implementation, and measure its gas in a transaction.
contract FrostVerifierHarness {
    event Verified(bool ok);

    function verify(uint256 pkX, uint8 pkYParity, bytes32 message, uint256 rX, uint256 rY, uint256 z)
        external
        pure
        returns (bool)
    {
        return FrostVerifier.verify(pkX, pkYParity, message, rX, rY, z);
    }

    function challenge(uint256 pkX, uint8 pkYParity, bytes32 message, uint256 rX, uint256 rY)
        external
        pure
        returns (uint256)
    {
        return FrostVerifier.challenge(pkX, pkYParity, message, rX, rY);
    }

    /// The same check in a transaction, for gas measurements.
    function verifyInTransaction(uint256 pkX, uint8 pkYParity, bytes32 message, uint256 rX, uint256 rY, uint256 z)
        external
    {
        emit Verified(FrostVerifier.verify(pkX, pkYParity, message, rX, rY, z));
    }
}

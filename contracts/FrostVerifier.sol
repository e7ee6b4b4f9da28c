// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Verifies a FROST(secp256k1, SHA-256) signature (RFC 9591) over a 32-byte message
/// with one ecrecover, whatever the size of the committee that made it.
///
/// A Schnorr signature (R, z) is valid under the group key PK when z*G == R + c*PK, with
/// c = H2(compressed(R) || compressed(PK) || message). ecrecover(h, v, r, s) returns the address
/// of r^-1 * (s*X - h*G), X being the point with x-coordinate r and parity v. With X = PK,
/// r = PK.x, s = -c * PK.x and h = -z * PK.x that point is z*G - c*PK, which equals R exactly
/// when the signature is valid; comparing addresses compares the points.
///
/// R travels uncompressed (its y is needed for its address) and is checked to be on the curve;
/// the challenge hashes its compressed form, as the RFC does. A group key must have x below
/// the group order (ecrecover's r must be): the installer checks it once.
library FrostVerifier {
    /// The order of secp256k1's group.
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// The field prime of secp256k1.
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;

    /// Whether (rX, rY, z) is a FROST signature over `message` by the group key with
    /// x-coordinate `pkX` and y parity `pkYParity` (0 even, 1 odd).
    function verify(uint256 pkX, uint8 pkYParity, bytes32 message, uint256 rX, uint256 rY, uint256 z)
        internal
        pure
        returns (bool)
    {
        if (z == 0 || z >= N || pkX == 0 || pkX >= N || pkYParity > 1) return false;
        if (rX >= P || rY >= P || mulmod(rY, rY, P) != addmod(mulmod(mulmod(rX, rX, P), rX, P), 7, P)) return false;
        uint256 c = challenge(pkX, pkYParity, message, rX, rY);
        uint256 s = mulmod(N - c, pkX, N);
        if (s == 0) return false;
        uint256 h = mulmod(N - z, pkX, N);
        address recovered = ecrecover(bytes32(h), 27 + pkYParity, bytes32(pkX), bytes32(s));
        return recovered != address(0) && recovered == address(uint160(uint256(keccak256(abi.encodePacked(rX, rY)))));
    }

    /// H2 of RFC 9591 for this ciphersuite: hash_to_field (RFC 9380, expand_message_xmd with
    /// SHA-256, 48 bytes) of compressed(R) || compressed(PK) || message, reduced mod N.
    function challenge(uint256 pkX, uint8 pkYParity, bytes32 message, uint256 rX, uint256 rY)
        internal
        pure
        returns (uint256)
    {
        // DST = "FROST-secp256k1-SHA256-v1chal" (29 bytes), DST' = DST || 0x1d.
        bytes memory dstPrime = "FROST-secp256k1-SHA256-v1chal\x1d";
        bytes32 b0 = sha256(
            abi.encodePacked(
                bytes32(0), bytes32(0), // Z_pad: one SHA-256 block of zeros
                uint8(2 + (rY & 1)), rX,
                uint8(2 + pkYParity), pkX,
                message,
                uint16(48), uint8(0), dstPrime
            )
        );
        bytes32 b1 = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        bytes32 b2 = sha256(abi.encodePacked(b0 ^ b1, uint8(2), dstPrime));
        // The 48 uniform bytes are b1 || first 16 bytes of b2: b1 * 2^128 + (b2 >> 128), mod N.
        return addmod(mulmod(uint256(b1), 1 << 128, N), uint256(b2) >> 128, N);
    }
}

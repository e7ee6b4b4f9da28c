"""Signature primitives beyond the node's ECDSA: threshold Schnorr (FROST)."""

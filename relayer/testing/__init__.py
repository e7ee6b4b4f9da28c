"""Test-only parts: a clock tests step by hand, and faults a local devnet can start on purpose."""

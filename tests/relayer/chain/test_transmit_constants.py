"""transmit's assembly hard-codes error selectors, event topics and the report typehash:
they must be exactly those of the declarations (a wrong one would rename a revert)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relayer.chain.codec import keccak
from relayer.chain.oracle import load_artifact

pytestmark = pytest.mark.unit

SOURCE = Path(__file__).resolve().parents[3] / "contracts" / "QuorumOracle.sol"


def _signature(entry: dict) -> str:
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_assembly_constants_match_the_abi() -> None:
    constants = {
        name: int(value, 16)
        for name, value in re.findall(r"uint256 private constant (\w+) = (0x[0-9a-fA-F]+);", SOURCE.read_text())
    }
    abi = load_artifact("QuorumOracle")["abi"]
    checked = 0
    for entry in abi:
        if entry["type"] == "error" and f"ERR_{_snake(entry['name'])}" in constants:
            assert constants[f"ERR_{_snake(entry['name'])}"] == int.from_bytes(keccak(_signature(entry).encode())[:4], "big")
            checked += 1
        if entry["type"] == "event" and f"{_snake(entry['name'])}_TOPIC" in constants:
            assert constants[f"{_snake(entry['name'])}_TOPIC"] == int.from_bytes(keccak(_signature(entry).encode()), "big")
            checked += 1
    assert checked == 18 + 4
    typehash = keccak(b"Report(bytes32 configDigest,uint32 epoch,uint32 round,bytes updates)")
    assert constants["REPORT_TYPEHASH_WORD"] == int.from_bytes(typehash, "big")

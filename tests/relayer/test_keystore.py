"""Encrypted keystores: a round trip, the wrong password, and where the password comes from."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from relayer.keystore import KeystoreError, read_keystore, resolve_password, write_keystore

pytestmark = pytest.mark.unit

KEY = bytes(range(1, 33))
FAST = 1024  # scrypt work factor for tests; `relayer init` uses eth-account's default


def test_round_trip_is_scrypt_and_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    address = write_keystore(path, KEY, "correct horse", scrypt_n=FAST)
    data = json.loads(path.read_text())
    assert data["crypto"]["kdf"] == "scrypt"
    assert KEY.hex() not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keystore(path, "correct horse") == KEY
    assert address.lower() == "0x" + data["address"].lower().removeprefix("0x")


def test_wrong_password_is_named_and_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    write_keystore(path, KEY, "correct horse", scrypt_n=FAST)
    with pytest.raises(KeystoreError, match="wrong password") as err:
        read_keystore(path, "battery staple")
    assert "battery" not in str(err.value) and KEY.hex() not in str(err.value)


def test_missing_and_malformed_keystores(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="relayer init"):
        read_keystore(tmp_path / "nope.json", "x")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KeystoreError, match="not JSON"):
        read_keystore(bad, "x")


def test_password_file_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("RELAYER_KEYSTORE_PASSWORD", "from-env")
    assert resolve_password() == "from-env"
    monkeypatch.setenv("RELAYER_KEYSTORE_PASSWORD_FILE", str(secret))
    assert resolve_password() == "from-file"
    assert resolve_password(password_file=secret) == "from-file"


def test_no_password_anywhere_says_where_to_put_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAYER_KEYSTORE_PASSWORD", raising=False)
    monkeypatch.delenv("RELAYER_KEYSTORE_PASSWORD_FILE", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    with pytest.raises(KeystoreError, match="RELAYER_KEYSTORE_PASSWORD"):
        resolve_password()

"""Encrypted keystores: a round trip, the wrong password, and where the password comes from."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from relayer.crypto import frost
from relayer.keystore import (
    KeystoreError,
    ThresholdShareRecord,
    read_keystore,
    read_threshold_share,
    resolve_password,
    write_keystore,
    write_threshold_share,
)

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


# --- the share of a FROST group key -----------------------------------------------------

SIGNERS = ("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20)
ORACLE = "0x" + "aa" * 20


def _share_record(member: int = 1, **changes: object) -> ThresholdShareRecord:
    shares, _ = frost.trusted_dealer_keygen(123456789, n=4, threshold=3, coefficients=[987, 654321])
    fields: dict[str, object] = dict(
        member=member, secret=shares[member].secret, group_public_key=shares[0].group_public_key,
        verification_shares={m: frost.base_mul(s.secret) for m, s in enumerate(shares)},
        transcript_hash=bytes(range(32)), chain_id=31337, oracle=ORACLE, signers=SIGNERS, threshold=3)
    fields.update(changes)
    return ThresholdShareRecord(**fields)  # type: ignore[arg-type]


def test_a_threshold_share_round_trips_encrypted_with_its_committee(tmp_path: Path) -> None:
    path = tmp_path / "threshold-share.json"
    record = _share_record()
    write_threshold_share(path, record, "correct horse", scrypt_n=FAST)
    text = path.read_text()
    assert frost.serialize_scalar(record.secret).hex() not in text
    assert json.loads(text)["secret_share"]["crypto"]["kdf"] == "scrypt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = read_threshold_share(path, "correct horse")
    assert loaded.secret == record.secret and loaded.member == 1 and loaded.key_share().identifier == 2
    assert loaded.transcript_hash == record.transcript_hash
    assert frost.serialize_element(loaded.group_public_key) == frost.serialize_element(record.group_public_key)
    loaded.for_committee(31337, ORACLE.upper().replace("0X", "0x"), SIGNERS, 3)
    with pytest.raises(KeystoreError, match="relayer dkg"):
        loaded.for_committee(31337, ORACLE, SIGNERS[:3] + ("0x" + "55" * 20,), 3)
    with pytest.raises(KeystoreError, match="wrong password"):
        read_threshold_share(path, "battery staple")
    write_keystore(tmp_path / "ecdsa.json", KEY, "pw", scrypt_n=FAST)
    with pytest.raises(KeystoreError, match="not a threshold key share"):
        read_threshold_share(tmp_path / "ecdsa.json", "pw")


def test_a_threshold_share_whose_public_parts_were_altered_is_refused(tmp_path: Path) -> None:
    good = _share_record()
    with pytest.raises(KeystoreError, match="verifying share"):
        _share_record(member=2, secret=good.secret)
    altered = dict(good.verification_shares)
    altered[3] = frost.base_mul(7)
    with pytest.raises(KeystoreError, match="one polynomial"):
        _share_record(verification_shares=altered)
    with pytest.raises(KeystoreError, match="one polynomial"):
        _share_record(group_public_key=frost.base_mul(5))
    path = tmp_path / "share.json"
    write_threshold_share(path, good, "pw-pw-pw", scrypt_n=FAST)
    data = json.loads(path.read_text())
    data["group_public_key"] = frost.serialize_element(frost.base_mul(5)).hex()
    path.write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="one polynomial"):
        read_threshold_share(path, "pw-pw-pw")

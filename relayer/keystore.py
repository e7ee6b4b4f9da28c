"""Encrypted key files (Web3 Secret Storage v3, scrypt) and where their password comes from.

Two kinds: the node's ECDSA signing key, and its share of the committee's FROST group key
(scheme 0x0002) with the public outcome of the key generation that made it. A key is
decrypted once at start and lives only in the node's memory. Neither the key nor the
password is ever logged or echoed in an error message.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PublicKey
from eth_account import Account

from relayer.crypto import frost

PASSWORD_ENV = "RELAYER_KEYSTORE_PASSWORD"
PASSWORD_FILE_ENV = "RELAYER_KEYSTORE_PASSWORD_FILE"
MIN_PASSWORD_LEN = 8


class KeystoreError(Exception):
    """The keystore is missing, malformed, or the password does not open it."""


def new_key() -> bytes:
    return secrets.token_bytes(32)


def encrypt_key(key: bytes, password: str, *, scrypt_n: int | None = None) -> dict[str, Any]:
    """Encrypt with scrypt; ``scrypt_n`` lowers the work factor for tests only."""
    return dict(Account.encrypt(key, password, kdf="scrypt", iterations=scrypt_n))


def write_keystore(path: Path, key: bytes, password: str, *, scrypt_n: int | None = None) -> str:
    """Write an encrypted keystore readable by its owner only; returns the key's address."""
    _write_owner_only(path, encrypt_key(key, password, scrypt_n=scrypt_n))
    return str(Account.from_key(key).address)


def _write_owner_only(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(path, 0o600)


def keystore_address(path: Path) -> str | None:
    """The address a keystore declares, without decrypting it (None if it declares none)."""
    try:
        raw = json.loads(path.read_text()).get("address")
    except (OSError, ValueError, AttributeError):
        return None
    return "0x" + str(raw).removeprefix("0x") if raw else None


def read_keystore(path: Path, password: str) -> bytes:
    return _decrypt(_read_json(path, "create one with `relayer init`"), path, password)


def _read_json(path: Path, create: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(f"keystore file {path} does not exist; {create}") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore file {path}: {exc.strerror}") from None
    except ValueError:
        raise KeystoreError(f"keystore file {path} is not JSON; expected a Web3 Secret Storage (v3) file") from None


def _decrypt(data: Any, path: Path, password: str) -> bytes:
    try:
        return bytes(Account.decrypt(data, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise KeystoreError(
                f"wrong password for keystore {path}; set {PASSWORD_ENV} or {PASSWORD_FILE_ENV} "
                "to the password given to `relayer init`"
            ) from None
        raise KeystoreError(f"keystore file {path} is malformed: expected a v3 keystore with scrypt or pbkdf2") from None
    except (KeyError, TypeError):
        raise KeystoreError(f"keystore file {path} is malformed: expected a v3 keystore with scrypt or pbkdf2") from None


def password_from_env(env: dict[str, str] | None = None) -> str | None:
    """The password from ``RELAYER_KEYSTORE_PASSWORD_FILE`` (preferred) or ``RELAYER_KEYSTORE_PASSWORD``."""
    env = dict(os.environ) if env is None else env
    file = env.get(PASSWORD_FILE_ENV)
    if file:
        try:
            return Path(file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"{PASSWORD_FILE_ENV}={file}: cannot read the password file: {exc.strerror}") from None
    return env.get(PASSWORD_ENV)


def resolve_password(
    *, password_file: Path | None = None, password: str | None = None, confirm: bool = False,
    prompt: str = "Keystore password: ",
) -> str:
    """File setting, then env var, then an interactive prompt (twice with ``confirm``)."""
    if password_file is not None:
        try:
            return password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"keystore_password_file {password_file}: cannot read it: {exc.strerror}") from None
    if password is not None:
        return password
    from_env = password_from_env()
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise KeystoreError(
            f"no keystore password: set {PASSWORD_ENV}, or {PASSWORD_FILE_ENV} to a file holding it, "
            "or run in a terminal to be prompted"
        )
    first = getpass.getpass(prompt)
    if confirm:
        if getpass.getpass("Repeat password: ") != first:
            raise KeystoreError("the two passwords differ; run again")
    return first


def keystore_password(settings: Any) -> str:
    """The keystores' password as the settings give it (file, value, environment, prompt)."""
    return resolve_password(
        password_file=settings.keystore_password_file,
        password=settings.keystore_password.get_secret_value() if settings.keystore_password else None,
    )


def load_signing_key(settings: Any) -> tuple[bytes, bool]:
    """The node's signing key and whether this is a dry run.

    `keystore_file` (password from `keystore_password_file`, `keystore_password`, the
    environment or a prompt) or `signing_key_file` (hex). With neither, a throwaway key:
    the node is in no committee, so it follows the network and signs nothing.
    """
    if settings.keystore_file is not None:
        return read_keystore(settings.keystore_file, keystore_password(settings)), False
    if settings.signing_key_file is not None:
        from relayer.settings import read_key_file

        return read_key_file(settings.signing_key_file), False
    return new_key(), True


# --- the share of a FROST group key (scheme 0x0002) ------------------------------------

THRESHOLD_SHARE_KIND = "frost-secp256k1-sha256-share"
THRESHOLD_SHARE_VERSION = 1


@dataclass(frozen=True)
class ThresholdShareRecord:
    """What a member keeps from a key generation: its secret share (encrypted on disk), the
    group key, every member's verifying share (by 0-based member index), the transcript hash
    the committee approves, and the committee the run was for (chain, oracle, signers in
    order, threshold) so a share is never used for another committee."""

    member: int
    secret: int
    group_public_key: PublicKey
    verification_shares: Mapping[int, PublicKey]
    transcript_hash: bytes
    chain_id: int
    oracle: str
    signers: tuple[str, ...]
    threshold: int

    def __post_init__(self) -> None:
        _check_share_consistency(self)

    def key_share(self) -> frost.KeyShare:
        return frost.KeyShare(self.member + 1, self.secret, self.group_public_key)

    def for_committee(self, chain_id: int, oracle: str, signers: tuple[str, ...], threshold: int) -> None:
        """Raise KeystoreError unless this share was made for exactly this committee."""
        mine = (self.chain_id, self.oracle.lower(), tuple(s.lower() for s in self.signers), self.threshold)
        theirs = (chain_id, oracle.lower(), tuple(s.lower() for s in signers), threshold)
        if mine != theirs:
            raise KeystoreError(
                f"the threshold key share is for chain {self.chain_id}, oracle {self.oracle}, {len(self.signers)} "
                f"signers, threshold {self.threshold}; the committee is chain {chain_id}, oracle {oracle}, "
                f"{len(signers)} signers, threshold {threshold} (or other signers): run `relayer dkg` for this "
                "committee")


def _check_share_consistency(record: ThresholdShareRecord) -> None:
    """The public parts agree with each other and with the secret: secret * G is this member's
    verifying share, and every verifying share lies on one polynomial of degree threshold-1
    whose value at 0 is the group key (checked by interpolating from the first `threshold`)."""
    n, t = len(record.signers), record.threshold
    if sorted(record.verification_shares) != list(range(n)) or not 0 <= record.member < n or not 2 <= t <= n:
        raise KeystoreError(
            f"threshold key share is inconsistent: member {record.member}, threshold {t}, {n} signers, verifying "
            f"shares for members {sorted(record.verification_shares)}; expected one per signer: run `relayer dkg` again")
    if not 0 < record.secret < frost.ORDER or len(record.transcript_hash) != 32:
        raise KeystoreError("threshold key share holds no valid secret or transcript hash: run `relayer dkg` again")
    image = frost.serialize_element(frost.base_mul(record.secret))
    if image != frost.serialize_element(record.verification_shares[record.member]):
        raise KeystoreError(f"the secret share does not match member {record.member}'s verifying share: the file "
                            "was altered or mixed with another; run `relayer dkg` again")
    base = list(range(1, t + 1))

    def interpolated(x: int) -> bytes:
        terms = []
        for j in base:
            lam = 1
            for m in base:
                if m != j:
                    lam = lam * (x - m) * pow(j - m, -1, frost.ORDER) % frost.ORDER
            terms.append(frost.point_mul(record.verification_shares[j - 1], lam))
        return frost.serialize_element(frost.point_sum(terms))

    if interpolated(0) != frost.serialize_element(record.group_public_key) or any(
        interpolated(x) != frost.serialize_element(record.verification_shares[x - 1]) for x in range(t + 1, n + 1)
    ):
        raise KeystoreError("the verifying shares and the group key do not lie on one polynomial of the threshold's "
                            "degree: the file was altered; run `relayer dkg` again")


def write_threshold_share(path: Path, record: ThresholdShareRecord, password: str, *,
                          scrypt_n: int | None = None) -> None:
    """The share encrypted as the signing key is (scrypt), the public outcome beside it."""
    data = {
        "kind": THRESHOLD_SHARE_KIND,
        "version": THRESHOLD_SHARE_VERSION,
        "member": record.member,
        "group_public_key": frost.serialize_element(record.group_public_key).hex(),
        "verification_shares": [frost.serialize_element(record.verification_shares[m]).hex()
                                for m in range(len(record.signers))],
        "transcript_hash": record.transcript_hash.hex(),
        "chain_id": record.chain_id,
        "oracle": record.oracle,
        "signers": list(record.signers),
        "threshold": record.threshold,
        "secret_share": encrypt_key(frost.serialize_scalar(record.secret), password, scrypt_n=scrypt_n),
    }
    _write_owner_only(path, data)


def read_threshold_share(path: Path, password: str) -> ThresholdShareRecord:
    data = _read_json(path, "run `relayer dkg` to create it")
    if not isinstance(data, dict) or data.get("kind") != THRESHOLD_SHARE_KIND:
        raise KeystoreError(f"{path} is not a threshold key share (kind {THRESHOLD_SHARE_KIND!r}); give the file "
                            "`relayer dkg` wrote")
    if data.get("version") != THRESHOLD_SHARE_VERSION:
        raise KeystoreError(f"threshold key share {path} is version {data.get('version')}, this release reads "
                            f"version {THRESHOLD_SHARE_VERSION}")
    secret = _decrypt(data.get("secret_share"), path, password)
    try:
        return ThresholdShareRecord(
            member=int(data["member"]),
            secret=int.from_bytes(secret, "big"),
            group_public_key=frost.deserialize_element(bytes.fromhex(data["group_public_key"])),
            verification_shares={m: frost.deserialize_element(bytes.fromhex(h))
                                 for m, h in enumerate(data["verification_shares"])},
            transcript_hash=bytes.fromhex(data["transcript_hash"]),
            chain_id=int(data["chain_id"]),
            oracle=str(data["oracle"]),
            signers=tuple(str(s) for s in data["signers"]),
            threshold=int(data["threshold"]),
        )
    except (KeyError, TypeError, ValueError, frost.FrostError) as exc:
        raise KeystoreError(f"threshold key share {path} is malformed ({type(exc).__name__}); run `relayer dkg` "
                            "again") from None

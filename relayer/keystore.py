"""Encrypted key files (Web3 Secret Storage v3, scrypt) and where their password comes from.

A key is decrypted once at start and lives only in the node's memory. Neither the key
nor the password is ever logged or echoed in an error message.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from eth_account import Account

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
    data = encrypt_key(key, password, scrypt_n=scrypt_n)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(path, 0o600)
    return str(Account.from_key(key).address)


def keystore_address(path: Path) -> str | None:
    """The address a keystore declares, without decrypting it (None if it declares none)."""
    try:
        raw = json.loads(path.read_text()).get("address")
    except (OSError, ValueError, AttributeError):
        return None
    return "0x" + str(raw).removeprefix("0x") if raw else None


def read_keystore(path: Path, password: str) -> bytes:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(f"keystore file {path} does not exist; create one with `relayer init`") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore file {path}: {exc.strerror}") from None
    except ValueError:
        raise KeystoreError(f"keystore file {path} is not JSON; expected a Web3 Secret Storage (v3) file") from None
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


def load_signing_key(settings: Any) -> tuple[bytes, bool]:
    """The node's signing key and whether this is a dry run.

    `keystore_file` (password from `keystore_password_file`, `keystore_password`, the
    environment or a prompt) or `signing_key_file` (hex). With neither, a throwaway key:
    the node is in no committee, so it follows the network and signs nothing.
    """
    if settings.keystore_file is not None:
        password = resolve_password(
            password_file=settings.keystore_password_file,
            password=settings.keystore_password.get_secret_value() if settings.keystore_password else None,
        )
        return read_keystore(settings.keystore_file, password), False
    if settings.signing_key_file is not None:
        from relayer.settings import read_key_file

        return read_key_file(settings.signing_key_file), False
    return new_key(), True

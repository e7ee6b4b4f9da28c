"""Node settings: one validated object from a JSON file plus `RELAYER_*` environment variables.

Environment variables win over the file, so one file can serve several nodes. Secrets
never sit in the file in clear: keys come from `*_file` paths.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from feeds.catalog import FeedDefinition
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(Exception):
    """Settings are missing or malformed; the message names the setting and the expected form."""


class FeedSpec(FeedDefinition):
    """One served feed: the catalog's definition (kind, sources, method, bounds...)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAYER_", extra="forbid")

    name: str = "relayer"
    data_dir: Path
    # The signing key: an encrypted keystore (`relayer init`) or a hex key file; neither = dry run.
    signing_key_file: Path | None = None
    keystore_file: Path | None = None
    # RELAYER_KEYSTORE_PASSWORD / RELAYER_KEYSTORE_PASSWORD_FILE; never in the config file.
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    # This member's share of the committee's FROST group key (scheme 0x0002), written by
    # `relayer dkg`, encrypted with the keystore's password.
    threshold_share_file: Path | None = None
    transmitter_key_file: Path | None = None
    rpc_urls: list[str] = Field(min_length=1)
    oracle_address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    # A deployed RiskGate reading this oracle: the dashboard and /api/feeds show the margins it sets.
    risk_gate_address: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    # The SubscriptionRegistry for this oracle: subscribers' deviation and heartbeat wishes.
    subscription_registry_address: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=0, ge=0, le=65535)
    peers: list[str] = Field(default_factory=list)
    feeds: list[FeedSpec] = Field(min_length=1)
    source_urls: dict[str, str] = Field(default_factory=dict)
    # WebSocket URL per streaming source (feeds.stream). A source on its default REST URL
    # streams from the venue's own feed unless given one here; "" turns its stream off.
    stream_urls: dict[str, str] = Field(default_factory=dict)
    poll_interval: float = Field(default=1.0, gt=0)
    source_timeout: float = Field(default=2.0, gt=0)
    rpc_timeout: float = Field(default=5.0, gt=0)
    config_poll_interval: float = Field(default=2.0, gt=0)
    max_message_bytes: int = Field(default=1 << 20, ge=1024)
    # "full": every signature is fsynced before it leaves (survives power loss); "normal":
    # written to the OS only (survives a killed process, not a power cut), several ms faster
    # per round on a busy disk. Equivocation checks are the same in both.
    store_sync: Literal["full", "normal"] = "full"
    # "direct": long-lived streams to each committee peer; "gossip": gossipsub on one topic.
    transport: Literal["direct", "gossip"] = "direct"
    # Observer relay (`relayer relay`, relayer/relay.py over relayer.p2p.observers): a process
    # of its own beside the node, with a libp2p host of its own, publishing every attested
    # report it reads from this node's API on a read-only topic to peers outside the committee.
    # It needs a port (0: any free port) and its own key (`observer_key_file`, never the signing
    # key). `observer_peers` lists the peer ids it admits; empty admits anyone. Each observer
    # may send `observer_bytes_per_s` (bursts of `observer_burst_bytes`); over that it is cut
    # off for `observer_ban_s`. The node itself reads none of these.
    observer_listen_host: str = "127.0.0.1"
    observer_listen_port: int | None = Field(default=None, ge=0, le=65535)
    observer_key_file: Path | None = None
    observer_peers: list[str] = Field(default_factory=list)
    observer_max_peers: int = Field(default=128, ge=1)
    observer_bytes_per_s: float = Field(default=16 * 1024, gt=0)
    observer_burst_bytes: float = Field(default=64 * 1024, gt=0)
    observer_ban_s: float = Field(default=60.0, ge=0)
    log_json: bool = False
    log_level: str = "INFO"
    # HTTP API, dashboard and /metrics; loopback unless the operator says otherwise.
    api_enabled: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8788, ge=0, le=65535)
    # Bounds on the API's clients (relayer.http_guard): connections held at once (one more is
    # answered 503 and closed), event streams among them, seconds to send a request's headers
    # (or between requests on a kept-alive connection), seconds to send its body and be answered
    # (streams are exempt).
    api_max_connections: int = Field(default=256, ge=1)
    api_max_streams: int = Field(default=32, ge=1)
    api_header_timeout_s: float = Field(default=10.0, gt=0)
    api_body_timeout_s: float = Field(default=30.0, gt=0)
    chain_id: int | None = Field(default=None, ge=1)
    # Transactions: never pay more than this per gas (during a spike above it, wait at the cap);
    # re-broadcast or re-price a pending one after this many blocks; count a report landed after
    # this many blocks on top of its own (0 on a devnet).
    max_fee_per_gas_gwei: float = Field(default=500.0, gt=0)
    resend_after_blocks: int = Field(default=3, ge=1)
    confirmations: int = Field(default=0, ge=0)
    # Health: not ready below this transmitter balance (a warning from twice it), nor when no
    # RPC endpoint has answered for this long.
    min_balance_eth: float = Field(default=0.05, ge=0)
    rpc_stale_after_s: float = Field(default=15.0, gt=0)
    # The store forgets attested reports, transmissions and signatures older than this (the
    # highest signed round per committee is kept whatever its age: slashing protection).
    store_retention_hours: float = Field(default=72.0, gt=0)

    @model_validator(mode="after")
    def _one_key_source(self) -> "Settings":
        if self.signing_key_file is not None and self.keystore_file is not None:
            raise ValueError("give keystore_file or signing_key_file, not both")
        if self.api_max_streams > self.api_max_connections:
            raise ValueError(f"api_max_streams ({self.api_max_streams}) must not exceed api_max_connections "
                             f"({self.api_max_connections}): streams are connections too; lower api_max_streams")
        return self

    @field_validator("rpc_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        # RELAYER_RPC_URLS may be a comma-separated list as well as a JSON array.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    @classmethod
    def load(cls, path: Path | str | None) -> "Settings":
        data: dict[str, Any] = {}
        if path is not None:
            try:
                text = Path(path).read_text()
                data = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
            except FileNotFoundError:
                raise SettingsError(f"config file {path} does not exist; pass --config with the node's JSON config") from None
            except ValueError as exc:
                kind = "TOML" if Path(path).suffix == ".toml" else "JSON"
                raise SettingsError(f"config file {path} is not valid {kind}: {exc}") from None
        try:
            return cls(**data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "settings"
                shown = "" if "password" in where or "key" in where and "file" not in where else \
                    f" (got {str(err.get('input'))[:60]!r})"
                lines.append(f"  {where} (env RELAYER_{where.split('.')[0].upper()}): {err['msg']}{shown}")
            raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def read_key_file(path: Path) -> bytes:
    """A 32-byte secp256k1 key stored as hex; the error never echoes the file's content."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"cannot read key file {path}: {exc.strerror}") from None
    if text.startswith("0x"):
        text = text[2:]
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SettingsError(f"key file {path} must hold 64 hex characters") from None
    if len(key) != 32:
        raise SettingsError(f"key file {path} must hold a 32-byte key (64 hex characters), found {len(key)} bytes")
    return key

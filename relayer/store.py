"""The node's durable record: what it observed, signed, saw attested and transmitted.

The signing tables double as slashing protection (after EIP-3076): a row is committed
with `synchronous=FULL` before the signature it holds leaves the process, and a new
signature is refused when it would conflict with a row already there or sit below the
highest (epoch, round) already signed under the same config digest. Everything else
(attested reports, transmissions, state) commits with `synchronous=NORMAL`: in WAL mode
that survives a killed process, and the next signing commit syncs it to disk too.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from relayer.protocol.errors import EquivocationRefused


class StoreWriteError(sqlite3.OperationalError):
    """A write to the store failed (a full disk, a read-only or failing mount). Nothing that
    needed it was signed; the node goes on and signs again once writes succeed. Free disk
    space or fix the data directory."""


@dataclass(frozen=True)
class SignedReport:
    report_digest: bytes
    signature: bytes


@dataclass(frozen=True)
class AttestedRow:
    """One attested report as the store keeps it (the ``attested`` table)."""

    digest: str  # 0x-hex config digest
    epoch: int
    round: int
    updates: bytes
    signatures: tuple[tuple[int, bytes], ...]
    attested_at: float


@dataclass(frozen=True)
class ReportSignatureTiming:
    """A report signature this node gave, with when it signed its observation of that round."""

    seq: int  # rising with every signature: the position to read on from
    signed_at: float
    observed_at: float | None  # None when this node's observation of the round is not kept


class Store:
    """``sync="full"`` (the default) fsyncs every signing commit: a signature survives power
    loss. ``sync="normal"`` leaves that to the OS: it survives a killed process (SIGKILL, a
    crash) but not the machine losing power. The equivocation checks are the same in both."""

    def __init__(self, path: Path | str, *, sync: str = "full") -> None:
        if sync not in ("full", "normal"):
            raise ValueError(f"store sync must be 'full' or 'normal', got {sync!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        self._signing_sync = sync == "full"
        self._durable = True
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        # The last write's error while writes fail (a full disk, a read-only mount); None once
        # one succeeds again. Readiness reports it; `write_failures` counts them all.
        self.write_error: str | None = None
        self.write_failures = 0
        self._create()

    def _write(self, sql: str, params: tuple[Any, ...], *, durable: bool) -> None:
        """One statement in its own transaction; ``durable`` ones are fsynced before returning
        (unless the store was opened with ``sync="normal"``)."""
        durable = durable and self._signing_sync
        if durable != self._durable:
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        try:
            self.conn.execute(sql, params)
        except sqlite3.IntegrityError:
            raise  # a constraint said no (a raced duplicate): the store wrote fine
        except sqlite3.Error as exc:
            self.write_failures += 1
            self.write_error = f"{type(exc).__name__}: {exc}"
            raise StoreWriteError(f"the store at {self.path} could not write ({exc}); free disk space or fix the "
                                  "data directory; nothing that needed this write was signed") from exc
        self.write_error = None

    def _create(self) -> None:
        key = ("digest", "epoch", "round")
        self.db.table("signed_observations").create(
            {"digest": str, "epoch": int, "round": int, "envelope": str, "created_at": float},
            pk=key,
            if_not_exists=True,
        )
        self.db.table("signed_reports").create(
            {"digest": str, "epoch": int, "round": int, "report_digest": str, "updates": str,
             "signature": str, "created_at": float},
            pk=key,
            if_not_exists=True,
        )
        # Scheme 0x0002: one row per FROST nonce pair that has made (or was about to make) a
        # signature share. The row commits before the share is computed, so a nonce with a
        # row is spent whatever happens next; the nonces themselves are never stored.
        self.db.table("used_nonces").create(
            {"digest": str, "epoch": int, "round": int, "attempt": int, "commitment": str,
             "report_digest": str, "signing_set": str, "created_at": float},
            pk=("digest", "epoch", "round", "attempt"),
            if_not_exists=True,
        )
        self.db.table("attested").create(
            {"digest": str, "epoch": int, "round": int, "updates": str, "signatures": str,
             "observations": str, "started_at": float, "attested_at": float},
            pk=key,
            if_not_exists=True,
        )
        self.db.table("transmissions").create(
            {"digest": str, "epoch": int, "round": int, "status": str, "tx_hash": str,
             "block": int, "gas_used": int, "detail": str, "created_at": float},
            pk=key,
            if_not_exists=True,
        )
        self.db.table("state").create({"key": str, "value": str}, pk="key", if_not_exists=True)

    def close(self) -> None:
        self.db.conn.close()

    # --- slashing protection --------------------------------------------------------

    def _highest_signed(self, table: str, digest: str) -> tuple[int, int] | None:
        row = self.db.execute(
            f"SELECT epoch, round FROM {table} WHERE digest = ? ORDER BY epoch DESC, round DESC LIMIT 1",
            [digest],
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def _existing(self, table: str, digest: str, epoch: int, round: int) -> dict[str, Any] | None:
        cursor = self.conn.execute(f"SELECT * FROM {table} WHERE digest = ? AND epoch = ? AND round = ?",
                                   (digest, epoch, round))
        row = cursor.fetchone()
        return dict(zip([c[0] for c in cursor.description], row)) if row else None

    def signed_observation(self, digest: str, epoch: int, round: int) -> str | None:
        row = self._existing("signed_observations", digest, epoch, round)
        return str(row["envelope"]) if row else None

    def check_observation_allowed(self, digest: str, epoch: int, round: int) -> None:
        highest = self._highest_signed("signed_observations", digest)
        if highest is not None and (epoch, round) <= highest:
            raise EquivocationRefused(
                f"observation for epoch {epoch} round {round} refused: already signed up to "
                f"epoch {highest[0]} round {highest[1]} under digest {digest[:10]}"
            )

    def record_observation(self, digest: str, epoch: int, round: int, envelope: str) -> None:
        """Commit a signed observation; call before it is published."""
        self.check_observation_allowed(digest, epoch, round)
        self._write(
            "INSERT INTO signed_observations (digest, epoch, round, envelope, created_at) VALUES (?, ?, ?, ?, ?)",
            (digest, epoch, round, envelope, time.time()), durable=True,
        )

    def signed_report(self, digest: str, epoch: int, round: int) -> SignedReport | None:
        row = self._existing("signed_reports", digest, epoch, round)
        if row is None:
            return None
        return SignedReport(bytes.fromhex(row["report_digest"]), bytes.fromhex(row["signature"]))

    def check_report_allowed(self, digest: str, epoch: int, round: int, report_digest: bytes) -> SignedReport | None:
        """The earlier signature when this exact report was signed already; raises on any conflict."""
        existing = self.signed_report(digest, epoch, round)
        if existing is not None:
            if existing.report_digest != report_digest:
                raise EquivocationRefused(
                    f"report for epoch {epoch} round {round} refused: a different report "
                    f"(0x{existing.report_digest.hex()[:12]}) was signed for this round already"
                )
            return existing
        highest = self._highest_signed("signed_reports", digest)
        if highest is not None and (epoch, round) < highest:
            raise EquivocationRefused(
                f"report for epoch {epoch} round {round} refused: already signed epoch {highest[0]} round {highest[1]}"
            )
        return None

    def record_report_signature(
        self, digest: str, epoch: int, round: int, report_digest: bytes, updates: bytes, signature: bytes
    ) -> None:
        """Commit a report signature; call before it is published."""
        if self.check_report_allowed(digest, epoch, round, report_digest) is not None:
            return
        self._write(
            "INSERT INTO signed_reports (digest, epoch, round, report_digest, updates, signature, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (digest, epoch, round, report_digest.hex(), updates.hex(), signature.hex(), time.time()), durable=True,
        )

    def mark_nonce_used(self, digest: str, epoch: int, round: int, attempt: int, commitment: bytes,
                        report_digest: bytes, signing_set: list[int]) -> None:
        """Spend the nonce pair of (digest, epoch, round, attempt), durably, before its share is
        computed; raises EquivocationRefused if it was spent already (a second share under one
        nonce pair reveals the secret share)."""
        refusal = EquivocationRefused(
            f"nonce of epoch {epoch} round {round} attempt {attempt} refused: it made a signature share "
            "already; a nonce is never used twice"
        )
        if self.nonce_used(digest, epoch, round, attempt):
            raise refusal
        try:
            self._write(
                "INSERT INTO used_nonces (digest, epoch, round, attempt, commitment, report_digest, signing_set, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (digest, epoch, round, attempt, commitment.hex(), report_digest.hex(), json.dumps(signing_set),
                 time.time()), durable=True,
            )
        except sqlite3.IntegrityError:  # the primary key holds even if the check above was raced
            raise refusal from None

    def nonce_used(self, digest: str, epoch: int, round: int, attempt: int) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM used_nonces WHERE digest = ? AND epoch = ? AND round = ? AND attempt = ?",
            (digest, epoch, round, attempt)).fetchone() is not None

    def used_nonces(self, digest: str, epoch: int, round: int) -> list[dict[str, Any]]:
        """The spent nonce rows of one round, by attempt."""
        cursor = self.conn.execute(
            "SELECT attempt, commitment, report_digest, signing_set FROM used_nonces "
            "WHERE digest = ? AND epoch = ? AND round = ? ORDER BY attempt", (digest, epoch, round))
        return [dict(zip([c[0] for c in cursor.description], row)) for row in cursor.fetchall()]

    # --- attested reports and transmissions ----------------------------------------

    def record_attested(
        self,
        digest: str,
        epoch: int,
        round: int,
        updates: bytes,
        signatures: list[tuple[int, bytes]],
        observations: list[dict[str, Any]] | None,
        started_at: float | None,
    ) -> bool:
        """Keep an attested report; False when it was known already."""
        if self._existing("attested", digest, epoch, round) is not None:
            return False
        self._write(
            "INSERT INTO attested (digest, epoch, round, updates, signatures, observations, started_at, attested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (digest, epoch, round, updates.hex(), json.dumps([[i, s.hex()] for i, s in signatures]),
             json.dumps(observations) if observations is not None else None, started_at, time.time()),
            durable=False,
        )
        return True

    def record_transmission(
        self, digest: str, epoch: int, round: int, status: str, *, tx_hash: str = "", block: int = 0,
        gas_used: int = 0, detail: str = ""
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO transmissions (digest, epoch, round, status, tx_hash, block, gas_used, detail, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (digest, epoch, round, status, tx_hash, block, gas_used, detail, time.time()), durable=False,
        )

    def observation_signed_at(self, digest: str, epoch: int, round: int) -> float | None:
        """When this node signed its observation of (``digest``, epoch, round), if it did."""
        row = self.conn.execute(
            "SELECT created_at FROM signed_observations WHERE digest = ? AND epoch = ? AND round = ?",
            (digest, epoch, round),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def report_signatures_after(self, seq: int) -> list[ReportSignatureTiming]:
        """Report signatures given after position ``seq`` (0: all), in the order they were given."""
        rows = self.conn.execute(
            "SELECT r.rowid, r.created_at, o.created_at FROM signed_reports r LEFT JOIN signed_observations o "
            "ON o.digest = r.digest AND o.epoch = r.epoch AND o.round = r.round WHERE r.rowid > ? "
            "ORDER BY r.rowid", (seq,),
        ).fetchall()
        return [ReportSignatureTiming(int(rowid), float(signed_at), None if observed is None else float(observed))
                for rowid, signed_at, observed in rows]

    @staticmethod
    def round_started_at(path: Path, epoch: int, round: int) -> float | None:
        """When a running node's leader started (epoch, round), read from its store file
        without opening it for writing (the devnet's supervisor asks); None if unknown."""
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
                row = conn.execute(
                    "SELECT started_at FROM attested WHERE epoch = ? AND round = ?", [epoch, round]
                ).fetchone()
        except sqlite3.Error:
            return None
        return float(row[0]) if row and row[0] is not None else None

    _ATTESTED = "SELECT digest, epoch, round, updates, signatures, attested_at FROM attested"

    @staticmethod
    def _attested_row(row: tuple[Any, ...] | None) -> AttestedRow | None:
        if row is None:
            return None
        digest, epoch, round_, updates, signatures, attested_at = row
        return AttestedRow(str(digest), int(epoch), int(round_), bytes.fromhex(updates),
                           tuple((int(i), bytes.fromhex(s)) for i, s in json.loads(signatures)), float(attested_at))

    def attested_report(self, epoch: int, round: int, digest: str | None = None) -> AttestedRow | None:
        """The attested report of (epoch, round): under ``digest``, or, without one, the one
        attested last (a new committee counts its rounds from the start again)."""
        if digest is not None:
            row = self.conn.execute(f"{self._ATTESTED} WHERE digest = ? AND epoch = ? AND round = ?",
                                    (digest, epoch, round)).fetchone()
        else:
            row = self.conn.execute(f"{self._ATTESTED} WHERE epoch = ? AND round = ? ORDER BY rowid DESC LIMIT 1",
                                    (epoch, round)).fetchone()
        return self._attested_row(row)

    def latest_attested(self, *, with_feeds: bool = True) -> AttestedRow | None:
        """The report attested last; ``with_feeds``: the last one that carries a feed."""
        where = " WHERE updates != ''" if with_feeds else ""
        return self._attested_row(self.conn.execute(f"{self._ATTESTED}{where} ORDER BY rowid DESC LIMIT 1").fetchone())

    def oldest_attested(self) -> AttestedRow | None:
        """The oldest attested report still kept (retention prunes older ones)."""
        return self._attested_row(self.conn.execute(f"{self._ATTESTED} ORDER BY rowid LIMIT 1").fetchone())

    def attested_rows(self) -> list[dict[str, Any]]:
        return list(self.db.table("attested").rows_where(order_by="epoch, round"))

    # --- retention ------------------------------------------------------------------

    def prune(self, older_than: float) -> dict[str, int]:
        """Forget rows created before ``older_than`` (unix time); returns rows deleted per table.

        The slashing protection is never thinned below what it needs: per config digest the
        highest signed (epoch, round) of each signing table stays, whatever its age, so a
        signature at or below it is still refused after pruning.
        """
        deleted: dict[str, int] = {}
        for table, stamp in (("attested", "attested_at"), ("transmissions", "created_at")):
            cursor = self.conn.execute(f"DELETE FROM {table} WHERE {stamp} < ?", (older_than,))
            deleted[table] = cursor.rowcount
        for table in ("signed_observations", "signed_reports"):
            cursor = self.conn.execute(
                f"DELETE FROM {table} WHERE created_at < ? AND rowid NOT IN ("
                f"SELECT rowid FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM {table} u WHERE u.digest = t.digest "
                f"AND (u.epoch > t.epoch OR (u.epoch = t.epoch AND u.round > t.round))))",
                (older_than,),
            )
            deleted[table] = cursor.rowcount
        return deleted

    def size_bytes(self) -> int:
        """The database file and its write-ahead log, as they are on disk now."""
        total = 0
        for suffix in ("", "-wal"):
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                total += path.stat().st_size
        return total

    # --- small state ----------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        rows = list(self.db.table("state").rows_where("key = ?", [key]))
        return str(rows[0]["value"]) if rows else None

    def set_state(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value), durable=False)

"""The committee's key generation for scheme 0x0002, run over libp2p: phases, deadlines, outcome.

relayer/crypto/dkg.py holds the arithmetic of each step (`Participant`); this module carries
its messages between the members and decides when each phase ends. Every message goes over
the direct streams of a `P2PHost` (Noise: authenticated and encrypted, so a share is read by
its receiver alone, and the sender of every message is the authenticated peer, never a field
it wrote). The phases, each ended by all expected messages or its deadline:

    round1      each member's commitment and proof of knowledge, to all;
    echo        each member's transcript hash of the round-1 packages it accepted, to all:
                any difference stops the run (somebody was shown another commitment);
    share       f_i(l) to member l alone;
    complaints  each member's list of senders whose share was missing or wrong, to all;
    answers     an accused member's revealed shares, to all: a wrong or missing one excludes it;
    outcome     each member's digest of (transcript, qualified set, group key), to all: all
                must agree before the key is kept or approved.

`relayer dkg` (`keygen_command`) runs it for the committee of the next config, writes the
share to the keystore and prints this member's EIP-712 approval of the key, which the owner
collects for `setThresholdConfig` (`relayer committee install-threshold`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from relayer.chain.codec import ReportDomain, ThresholdKey, address_of, config_digest
from relayer.chain.errors import CodecError
from relayer.crypto import dkg, frost
from relayer.crypto.dkg import DkgOutcome, Misbehaviour, Participant, Round1Package
from relayer.keystore import (
    KeystoreError,
    ThresholdShareRecord,
    keystore_password,
    load_signing_key,
    read_threshold_share,
    write_threshold_share,
)
from relayer.p2p.errors import P2PError
from relayer.p2p.host import P2PHost
from relayer.p2p.identity import address_of_peer_id
from relayer.protocol.signer import approve_group_key
from relayer.settings import Settings

if TYPE_CHECKING:
    from relayer.chain.oracle import QuorumOracleClient

log = logging.getLogger(__name__)

PHASES = ("round1", "echo", "share", "complaints", "answers", "outcome")
DEFAULT_PHASE_TIMEOUT_S = 10.0


class KeygenError(Exception):
    """The key generation could not run or did not give a usable key; the message says why
    and what to do (usually: fix the named member, run it again)."""


@dataclass(frozen=True)
class NextConfig:
    """The config the new group key is made for, and installed with: members approve exactly
    its digest (`config_count` is the one it will have once installed)."""

    chain_id: int
    oracle: str
    config_count: int
    signers: tuple[str, ...]
    transmitters: tuple[str, ...]
    f: int
    threshold: int
    offchain_config: bytes

    @property
    def n(self) -> int:
        return len(self.signers)

    def context(self) -> bytes:
        """What every proof of knowledge and the transcript are bound to: this chain, oracle,
        config count, committee and threshold; a run for another config cannot be replayed."""
        h = hashlib.sha256(b"quorum-relayer dkg v1")
        h.update(self.chain_id.to_bytes(32, "big") + bytes.fromhex(self.oracle.removeprefix("0x").lower()))
        h.update(self.config_count.to_bytes(8, "big") + bytes([self.f, self.threshold, self.n]))
        for signer in self.signers:
            h.update(bytes.fromhex(signer.removeprefix("0x").lower()))
        return h.digest()

    def digest(self, key: ThresholdKey) -> bytes:
        """The config digest `setThresholdConfig` will give this config with `key`."""
        return config_digest(chain_id=self.chain_id, contract=self.oracle, config_count=self.config_count,
                             signers=self.signers, transmitters=self.transmitters, f=self.f,
                             threshold=self.threshold, offchain_config=self.offchain_config, group_key=key)

    def as_json(self) -> dict[str, Any]:
        """The config as the owner installs it (what `from_json` reads back)."""
        return {"chain_id": self.chain_id, "oracle": self.oracle, "config_count": self.config_count,
                "signers": list(self.signers), "transmitters": list(self.transmitters), "f": self.f,
                "threshold": self.threshold, "offchain_config": "0x" + self.offchain_config.hex()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NextConfig:
        try:
            return cls(chain_id=int(data["chain_id"]), oracle=str(data["oracle"]),
                       config_count=int(data["config_count"]), signers=tuple(str(a) for a in data["signers"]),
                       transmitters=tuple(str(a) for a in data["transmitters"]), f=int(data["f"]),
                       threshold=int(data["threshold"]),
                       offchain_config=bytes.fromhex(str(data["offchain_config"]).removeprefix("0x")))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeygenError(f"an approval's config is malformed ({type(exc).__name__}: {exc}); give the JSON "
                              "`relayer dkg` printed") from None

    def member_of(self, address: str) -> int:
        lowered = [s.lower() for s in self.signers]
        if address.lower() not in lowered:
            raise KeygenError(f"{address} is not a signer of the next config ({self.n} signers); only its "
                              "members run its key generation")
        return lowered.index(address.lower())


class Transport(Protocol):
    """Sends bytes to one member, by its signer address (`P2PHost.send`)."""

    def send(self, address: str, data: bytes) -> None: ...


@dataclass
class KeygenInbox:
    """Messages of one run, by phase and sender member, first one kept; fed by the host's
    `on_message` on the asyncio loop, read by the run as each phase waits."""

    config: NextConfig
    session: str = field(init=False)
    _by_phase: dict[str, dict[int, Any]] = field(init=False, default_factory=dict)
    _arrived: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    dropped: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.session = self.config.context().hex()[:32]

    def deliver(self, sender: str, data: bytes, opened: object = None) -> None:
        try:
            member = self.config.member_of(sender)
            message = json.loads(data)
            if message.get("dkg") != self.session or message.get("phase") not in PHASES:
                raise ValueError("another run or phase")
        except (KeygenError, ValueError, AttributeError) as exc:
            self.dropped += 1
            log.debug("dropped a key generation message from %s: %s", sender, exc)
            return
        self._by_phase.setdefault(message["phase"], {}).setdefault(member + 1, message.get("body"))
        self._arrived.set()

    async def collect(self, phase: str, expected: Iterable[int], timeout: float) -> dict[int, Any]:
        """The bodies of `phase` from the `expected` participants, once all came or at the deadline."""
        wanted = set(expected)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = self._by_phase.get(phase, {})
            if wanted <= set(got) or loop.time() >= deadline:
                return {i: got[i] for i in wanted if i in got}
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
            except TimeoutError:
                pass


def _encode(session: str, phase: str, body: Any) -> bytes:
    return json.dumps({"dkg": session, "phase": phase, "body": body}, separators=(",", ":")).encode()


def _scalar(text: Any) -> int:
    return frost.deserialize_scalar(bytes.fromhex(str(text)))


class KeyGeneration:
    """One member's run: drives its `Participant` through the phases over `transport`."""

    def __init__(self, config: NextConfig, member: int, transport: Transport, inbox: KeygenInbox, *,
                 phase_timeout: float = DEFAULT_PHASE_TIMEOUT_S,
                 outgoing: Callable[[str, int, Any], Any] | None = None) -> None:
        """`outgoing(phase, receiver, body)` may rewrite a body before it leaves (tests play a
        misbehaving member with it)."""
        self.config, self.member, self.transport, self.inbox = config, member, transport, inbox
        self.phase_timeout = phase_timeout
        self.participant = Participant(member + 1, config.n, config.threshold, config.context())
        self._outgoing = outgoing

    @property
    def me(self) -> int:
        return self.member + 1

    def _send(self, phase: str, receivers: Iterable[int], body: Any) -> None:
        for receiver in receivers:
            sent = self._outgoing(phase, receiver, body) if self._outgoing is not None else body
            self.transport.send(self.config.signers[receiver - 1], _encode(self.inbox.session, phase, sent))

    def _others(self) -> list[int]:
        return [i for i in self.participant.qualified() if i != self.me]

    async def _collect(self, phase: str, expected: Iterable[int]) -> dict[int, Any]:
        return await self.inbox.collect(phase, expected, self.phase_timeout)

    async def run(self) -> DkgOutcome:
        p = self.participant
        everyone = [i for i in range(1, self.config.n + 1) if i != self.me]
        self._send("round1", everyone, p.package.encode().hex())
        for sender, body in (await self._collect("round1", everyone)).items():
            try:
                p.receive_package(sender, Round1Package.decode(bytes.fromhex(str(body))))
            except (Misbehaviour, frost.InvalidEncoding, ValueError) as exc:
                p.refuse(sender, f"round-1 package refused: {exc}")
                log.warning("key generation: participant %d excluded in round 1: %s", sender, exc)
        transcript = p.close_round1()
        self._send("echo", self._others(), transcript.hex())
        echoes = await self._collect("echo", self._others())
        p.check_transcript_echoes({i: _hex_bytes(body) for i, body in echoes.items()})

        for receiver, share in p.outgoing_shares().items():
            self._send("share", [receiver], frost.serialize_scalar(share).hex())
        for sender, body in (await self._collect("share", self._others())).items():
            try:
                p.receive_share(sender, _scalar(body))
            except (frost.InvalidEncoding, ValueError):
                pass  # counted as no share: a complaint follows
        mine = p.complaints()
        if mine:
            log.warning("key generation: complaining about the shares of participants %s", mine)
        self._send("complaints", self._others(), mine)
        complaints = {self.me: mine, **await self._collect("complaints", self._others())}
        answers: dict[str, str] = {}
        for accuser, accused_list in complaints.items():
            for against in _ints(accused_list):
                try:
                    revealed = p.receive_complaint(accuser, against)
                except frost.InvalidInput:
                    continue
                if revealed is not None:
                    answers[str(accuser)] = frost.serialize_scalar(revealed).hex()
        accused = {a for lst in complaints.values() for a in _ints(lst)} - {self.me}
        self._send("answers", self._others(), answers)
        for sender, body in (await self._collect("answers", accused & set(self._others()))).items():
            for accuser, share in (body.items() if isinstance(body, dict) else ()):
                try:
                    p.receive_answer(sender, int(accuser), _scalar(share))
                except (frost.InvalidEncoding, ValueError):
                    continue  # an unreadable answer is no answer
        p.close_complaints()

        outcome = p.finish()
        digest = outcome.outcome_digest()
        others = [i for i in outcome.group.qualified if i != self.me]
        self._send("outcome", others, digest.hex())
        finals = await self._collect("outcome", others)
        dkg.check_echoes(digest, {i: _hex_bytes(body) for i, body in finals.items()}, others, "outcome")
        return outcome


def _hex_bytes(body: Any) -> bytes:
    try:
        return bytes.fromhex(str(body))
    except ValueError:
        return b""


def _ints(values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int)] if isinstance(values, list) else []


def threshold_key_of(outcome: DkgOutcome) -> ThresholdKey:
    """The key as the contract takes it; a key whose x is not below the group order (odds
    2^-128) cannot be checked with ecrecover and needs another run."""
    try:
        return ThresholdKey.from_point(outcome.group.group_public_key, outcome.transcript_hash)
    except CodecError as exc:
        raise KeygenError(f"the group key cannot be installed: {exc}") from None


def approval(private_key: bytes, config: NextConfig, outcome: DkgOutcome) -> dict[str, Any]:
    """This member's approval of the key it made, with what the owner needs to install it."""
    key = threshold_key_of(outcome)
    digest = config.digest(key)
    signature = approve_group_key(private_key, ReportDomain(config.chain_id, config.oracle), digest, key)
    return {
        "signer": address_of(private_key),
        "member": config.member_of(address_of(private_key)),
        "config": config.as_json(),
        "config_digest": "0x" + digest.hex(),
        "group_key": "0x" + frost.serialize_element(outcome.group.group_public_key).hex(),
        "transcript_hash": "0x" + outcome.transcript_hash.hex(),
        "qualified": [i - 1 for i in outcome.group.qualified],
        "excluded": {str(i - 1): reason for i, reason in outcome.excluded.items()},
        "approval": "0x" + signature.hex(),
    }


def check_approvals(config: NextConfig, approvals: Sequence[Mapping[str, Any]]) -> tuple[ThresholdKey, bytes]:
    """The group key and packed approvals to install: the approvals agree on one group key and
    transcript, are for `config`'s digest, come from distinct members, and each recovers to
    the member it names. Raises KeygenError naming the first that does not."""
    from relayer.chain.codec import pack_approvals, recover_address

    if len(approvals) < config.threshold:
        raise KeygenError(f"{len(approvals)} approvals, the threshold is {config.threshold}: collect more members' "
                          "`relayer dkg` output")
    first = approvals[0]
    try:
        point = frost.deserialize_element(bytes.fromhex(str(first["group_key"]).removeprefix("0x")))
        key = ThresholdKey.from_point(point, bytes.fromhex(str(first["transcript_hash"]).removeprefix("0x")))
    except (KeyError, ValueError, frost.FrostError, CodecError) as exc:
        raise KeygenError(f"the first approval holds no readable group key and transcript hash: {exc}") from None
    digest = config.digest(key)
    approval_digest = ReportDomain(config.chain_id, config.oracle).key_approval_digest(digest, key)
    seen: set[int] = set()
    signatures = []
    for a in approvals:
        who = a.get("signer")
        for name in ("group_key", "transcript_hash"):
            if a.get(name) != first.get(name):
                raise KeygenError(f"approval by {who} has {name} {a.get(name)}, the first one {first.get(name)}: "
                                  "these members ran different key generations; run it again")
        if a.get("config_digest") != "0x" + digest.hex():
            raise KeygenError(f"approval by {who} is for config digest {a.get('config_digest')}, the next config's "
                              f"is 0x{digest.hex()}: the config changed since the key generation; run it again")
        try:
            signature = bytes.fromhex(str(a["approval"]).removeprefix("0x"))
            signer = recover_address(approval_digest, signature)
        except (KeyError, ValueError, CodecError) as exc:
            raise KeygenError(f"approval by {who} is not a signature: {exc}") from None
        member = config.member_of(signer)
        if str(who).lower() != signer.lower():
            raise KeygenError(f"approval said to be by {who} is signed by {signer}")
        if member in seen:
            raise KeygenError(f"two approvals by member {member} ({signer}); give each member's once")
        seen.add(member)
        signatures.append(signature)
    return key, pack_approvals(signatures)


# --- over libp2p ---------------------------------------------------------------------------

# The node's rule: the member with the higher address dials; after this many passes without
# its call, the other dials too.
_DIAL_BACK_PASSES = 3
_DIAL_PASS_S = 0.25
# After the last phase (or a failure), queued frames still have to leave before the host stops.
_LINGER_S = 0.5


async def connect_members(host: P2PHost[Any], peers: Sequence[str], expected: int, timeout: float) -> None:
    """Dial the members' multiaddrs until `expected` members are connected, or raise KeygenError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    passes = 0

    async def dial(addr: str) -> None:
        try:
            await host.connect(addr)
        except P2PError as exc:  # not up yet: the next pass dials again
            log.debug("dial %s failed: %s", addr, exc)

    while len(host.connected_peers()) < expected:
        if loop.time() >= deadline:
            raise KeygenError(
                f"connected to {len(host.connected_peers())} of the {expected} other members after {timeout} s; "
                "every member must run `relayer dkg` at the same time with the others' multiaddrs in `peers`")
        connected = set(host.connected_peers())
        todo = [a for a in peers if a.rsplit("/p2p/", 1)[-1] not in connected
                and (address_of_peer_id(a.rsplit("/p2p/", 1)[-1]).lower() < host.address.lower()
                     or passes >= _DIAL_BACK_PASSES)]
        await asyncio.gather(*(dial(a) for a in todo))
        passes += 1
        await asyncio.sleep(_DIAL_PASS_S)


async def keygen_over_libp2p(
    private_key: bytes, config: NextConfig, *, peers: Sequence[str], listen_host: str = "127.0.0.1",
    listen_port: int = 0, phase_timeout: float = DEFAULT_PHASE_TIMEOUT_S, connect_timeout: float = 60.0,
    max_message_size: int = 1 << 20, outgoing: Callable[[str, int, Any], Any] | None = None,
) -> DkgOutcome:
    """This member's run on a host of its own (the committee gate set to the next config's
    signers), from the first dial to the outcome every member agreed on."""
    member = config.member_of(address_of(private_key))
    inbox = KeygenInbox(config)
    host: P2PHost[Any] = P2PHost(private_key, listen_host=listen_host, listen_port=listen_port,
                                 allowed_addresses=config.signers, on_message=inbox.deliver,
                                 max_message_size=max_message_size)
    await host.start()
    try:
        log.info("key generation for config #%d: member %d of %d, threshold %d, listening on %s",
                 config.config_count, member, config.n, config.threshold, ", ".join(host.listen_addrs))
        await connect_members(host, peers, config.n - 1, connect_timeout)
        return await KeyGeneration(config, member, host, inbox, phase_timeout=phase_timeout,
                                   outgoing=outgoing).run()
    finally:
        # Queued frames must leave before the host stops, whatever the outcome: a member that
        # finds itself excluded has still sent answers the others are waiting for.
        await asyncio.sleep(_LINGER_S)
        await host.stop()


def share_record(config: NextConfig, outcome: DkgOutcome) -> ThresholdShareRecord:
    """What the keystore keeps of this member's outcome."""
    return ThresholdShareRecord(
        member=outcome.share.identifier - 1, secret=outcome.share.secret,
        group_public_key=outcome.group.group_public_key,
        verification_shares={m: outcome.group.verification_share(m + 1) for m in range(config.n)},
        transcript_hash=outcome.transcript_hash, chain_id=config.chain_id, oracle=config.oracle,
        signers=config.signers, threshold=config.threshold)


async def installed_share(path: Path, password: str, *, chain_id: int, oracle: QuorumOracleClient,
                          signers: Sequence[str], threshold: int, member: int) -> ThresholdShareRecord:
    """This member's share of the group key the oracle holds, read from `path` and checked: made
    for this committee, of the installed key, this member's. Raises KeystoreError saying which
    (ChainError when the key cannot be read from the chain)."""
    # scrypt takes a second: off the loop.
    record = await asyncio.to_thread(read_threshold_share, path, password)
    record.for_committee(chain_id, oracle.address, tuple(signers), threshold)
    installed = await oracle.group_key()
    if installed != ThresholdKey.from_point(record.group_public_key, record.transcript_hash):
        raise KeystoreError(
            f"{path} holds a share of another group key (transcript {record.transcript_hash.hex()[:12]}..) "
            "than the one the contract installed: run `relayer dkg` for the installed config")
    if record.member != member:
        raise KeystoreError(f"{path} is member {record.member}'s share; this node is member {member}")
    return record


async def next_config_from_chain(
    rpc_url: str, oracle: str, *, signers: Sequence[str] | None = None, transmitters: Sequence[str] | None = None,
    f: int | None = None, threshold: int | None = None,
) -> NextConfig:
    """The next config: the installed committee unless overridden, one config count later."""
    from relayer.chain.contract import disconnect
    from relayer.chain.oracle import QuorumOracleClient, connect

    w3 = connect(rpc_url)
    try:
        current = await QuorumOracleClient(w3, oracle).config()
        chain_id = int(await w3.eth.chain_id)
    finally:
        await disconnect(w3)
    chosen = tuple(signers or current.signers)
    if transmitters is None:
        # A member staying on keeps its transmitter; a new one's must be named.
        known = {s.lower(): t for s, t in zip(current.signers, current.transmitters)}
        missing = [s for s in chosen if s.lower() not in known]
        if missing:
            raise KeygenError(f"no transmitter known for new signer(s) {', '.join(missing)}: give every signer's "
                              "transmitter with --transmitters, in the order of --signers")
        transmitters = [known[s.lower()] for s in chosen]
    elif len(transmitters) != len(chosen):
        raise KeygenError(f"{len(transmitters)} transmitters for {len(chosen)} signers: give one per signer")
    return NextConfig(chain_id=chain_id, oracle=oracle, config_count=current.config_count + 1, signers=chosen,
                      transmitters=tuple(transmitters),
                      f=current.f if f is None else f, threshold=current.threshold if threshold is None else threshold,
                      offchain_config=current.offchain_config)


async def keygen_command(settings: Settings, config: NextConfig, *, phase_timeout: float, connect_timeout: float,
                         scrypt_n: int | None = None) -> dict[str, Any]:
    """`relayer dkg`: run, keep the share in the keystore, return this member's approval."""
    key, dry_run = load_signing_key(settings)
    if dry_run:
        raise KeygenError("the key generation needs this member's signing key: set keystore_file")
    if settings.threshold_share_file is None:
        raise KeygenError("set threshold_share_file: where the share of the new group key is written")
    password = keystore_password(settings)
    outcome = await keygen_over_libp2p(
        key, config, peers=settings.peers, listen_host=settings.listen_host, listen_port=settings.listen_port,
        phase_timeout=phase_timeout, connect_timeout=connect_timeout, max_message_size=settings.max_message_bytes)
    result = approval(key, config, outcome)  # also refuses a key the contract cannot take
    write_threshold_share(settings.threshold_share_file, share_record(config, outcome), password, scrypt_n=scrypt_n)
    return result

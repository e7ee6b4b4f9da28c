"""The round protocol's dispatcher: one `RoundEngine` per node, on the node's asyncio loop.

It is transport-agnostic: it gets bytes with the authenticated sender address from the
p2p host and hands sealed bytes to a `Wire`. Every message is re-verified here whatever
the transport claimed, checked against replays, and routed by its kind to the phase that
owns it (after Chainlink OCR, simplified):

- `pacemaker.py`: the epoch: wishes announced on a progress timeout, moving when 2f+1
  wish it, following f+1 members ahead;
- `leader.py`: rounds at the interval, observations, grace, the proposal;
- `follower.py`: signed observations, verifying and co-signing proposals;
- `attestation.py`: co-signatures into an `AttestedReport`, checking attested reports;
- `outbox.py`: sealing and sending; `signer.py`: the report signature scheme;
- `threshold.py`: under scheme 0x0002 (the config digest's top two bytes), nonce
  commitments with observations, signature shares instead of co-signatures, and the
  leader's aggregation into one Schnorr signature.

Messages of phases bound to the current epoch are dropped when they are for an older
epoch and kept (`epoch_buffer.py`) when they are for a later one. Every message not
acted on is counted in `stats.dropped` per (peer, reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from relayer.chain.codec import ReportDomain
from relayer.protocol.attestation import Attestation, AttestedReport
from relayer.protocol.clock import AsyncioClock, Clock
from relayer.protocol.committee import Committee
from relayer.protocol.epoch_buffer import FutureEpochBuffer, Kept
from relayer.protocol.errors import Dropped, EquivocationRefused, Ignored, InvalidMessage, SchemeMismatch
from relayer.protocol.follower import Follower
from relayer.protocol.leader import Leader
from relayer.protocol.messages import Envelope, Epoch, Kind, Observation, RoundId, open_envelope, parse_body
from relayer.protocol.outbox import CallbackWire, Outbox, SealingOutbox
from relayer.protocol.pacemaker import Pacemaker
from relayer.protocol.selection import CarryAll, FeedSelection
from relayer.protocol.round_state import Rounds, Stats
from relayer.protocol.signer import THRESHOLD_SCHNORR, EcdsaReportSigner, ReportSigner, scheme_of
from relayer.protocol.threshold import ThresholdKeyShare, ThresholdSigning
from relayer.store import Store, StoreWriteError

__all__ = ["AttestedReport", "EngineFactory", "EngineInputs", "RoundEngine", "Stats", "ThresholdKeyShare"]

log = logging.getLogger(__name__)

_SEEN_ENVELOPES = 4096


@dataclass(frozen=True)
class Route:
    handle: Callable[[Envelope, int, Any], None]
    # Bound to the current epoch: older ones are dropped, later ones kept until we get there.
    current_epoch: bool


@dataclass(frozen=True)
class EngineInputs:
    """What the node gives its round engine: its key, the committee, the chain, the store,
    where observations come from, where bytes go and where attested reports go."""

    private_key: bytes
    address: str
    committee: Committee
    domain: ReportDomain
    store: Store
    observe: Callable[[], Observation]
    publish: Callable[[bytes], None]
    on_attested: Callable[[AttestedReport], Awaitable[None]]
    # Point-to-point path for messages only the leader needs; without one, they are
    # broadcast like everything else.
    send_to: Callable[[str, bytes], None] | None = None
    # Which feeds a report carries (relayer.protocol.selection); every feed with a quorum if None.
    selection: FeedSelection | None = None
    # Per feed index the on-chain (min, max) accepted value, now: a median outside is left out
    # of the report rather than make the contract refuse all of it. None: no bounds known.
    bounds: Callable[[], Mapping[int, tuple[int, int]]] | None = None
    # This member's share of the committee's FROST group key: required when the config digest
    # names scheme 0x0002, unused under 0x0001.
    threshold_key: ThresholdKeyShare | None = None


def _wrong_scheme(env: Envelope, sender: int, body: Any) -> None:
    raise InvalidMessage("wrong_scheme", f"a {env.kind.value} is not a message of this committee's signature scheme")


# How the node builds its engine; `RoundEngine` itself is the production one.
EngineFactory = Callable[[EngineInputs], "RoundEngine"]


class RoundEngine:
    def __init__(
        self,
        inputs: EngineInputs,
        *,
        clock: Clock | None = None,
        signer: ReportSigner | None = None,
        wrap_outbox: Callable[[Outbox], Outbox] | None = None,
    ) -> None:
        committee, domain, store = inputs.committee, inputs.domain, inputs.store
        address = inputs.address
        me = committee.index_of(address)
        if me is None:
            raise EquivocationRefused(f"{address} is not in the committee; this node can only watch")
        threshold_scheme = scheme_of(committee.config_digest) == THRESHOLD_SCHNORR
        if threshold_scheme and inputs.threshold_key is None:
            raise SchemeMismatch(
                f"config digest {committee.digest_hex[:10]}.. names scheme 0x0002 (threshold Schnorr) and this "
                "node has no key share of the committee's group key; run the key generation first"
            )
        # Under 0x0002 the ECDSA signer is never asked to sign or check a report.
        self.signer = signer if signer is not None else EcdsaReportSigner(inputs.private_key)
        if not threshold_scheme:
            self.signer.check_committee(committee)
        self.address = address
        self.index = me
        self.committee = committee
        self.domain = domain
        self.store = store
        self.clock = clock if clock is not None else AsyncioClock()
        self.stats = Stats()
        self.rounds = Rounds()
        self._sealer = SealingOutbox(private_key=inputs.private_key, address=address, index=me, committee=committee,
                                     wire=CallbackWire(inputs.publish, inputs.send_to), deliver=self.on_wire)
        self.outbox: Outbox = wrap_outbox(self._sealer) if wrap_outbox is not None else self._sealer
        self.pacemaker = Pacemaker(committee=committee, index=me, store=store, clock=self.clock, outbox=self.outbox,
                                   stats=self.stats)
        self.selection: FeedSelection = inputs.selection if inputs.selection is not None else CarryAll()
        bounds = inputs.bounds if inputs.bounds is not None else dict
        self.attestation = Attestation(committee=committee, index=me, signer=self.signer, domain=domain, store=store,
                                       outbox=self.outbox, pacemaker=self.pacemaker, rounds=self.rounds,
                                       stats=self.stats, on_attested=inputs.on_attested)
        self.threshold: ThresholdSigning | None = None
        if inputs.threshold_key is not None and threshold_scheme:
            self.threshold = ThresholdSigning(committee=committee, index=me, key=inputs.threshold_key, store=store,
                                              outbox=self.outbox, rounds=self.rounds, stats=self.stats,
                                              clock=self.clock, on_signature=self.attestation.threshold_quorum)
            self.attestation.verify_schnorr = self.threshold.verify
        self.leader = Leader(committee=committee, index=me, clock=self.clock, outbox=self.outbox,
                             pacemaker=self.pacemaker, rounds=self.rounds, stats=self.stats,
                             selection=self.selection, bounds=bounds,
                             signing_set=self.threshold.signing_set if self.threshold is not None else None)
        self.follower = Follower(committee=committee, index=me, store=store, observe=inputs.observe, outbox=self.outbox,
                                 signer=self.signer, domain=domain, rounds=self.rounds, stats=self.stats,
                                 attestation=self.attestation, selection=self.selection, bounds=bounds,
                                 threshold=self.threshold)
        self._routes: dict[Kind, Route] = {
            Kind.OBSERVE_REQUEST: Route(self.follower.on_observe_request, current_epoch=True),
            Kind.OBSERVATION: Route(self.leader.on_observation, current_epoch=True),
            Kind.PROPOSAL: Route(self.follower.on_proposal, current_epoch=True),
            # Co-signatures and attested reports certify themselves whatever epoch we are in.
            Kind.REPORT_SIGNATURE: Route(self.attestation.on_report_signature, current_epoch=False),
            Kind.ATTESTED: Route(self.attestation.on_attested, current_epoch=False),
            Kind.NEW_EPOCH: Route(self.pacemaker.on_new_epoch, current_epoch=False),
        }
        # Each scheme's signing messages; the other scheme's are refused.
        if self.threshold is not None:
            self._routes[Kind.REPORT_SIGNATURE] = Route(_wrong_scheme, current_epoch=False)
            self._routes[Kind.SIGNATURE_SHARE] = Route(self.threshold.on_share, current_epoch=True)
            self._routes[Kind.SIGNING_SET] = Route(self.threshold.on_signing_set, current_epoch=True)
        else:
            self._routes[Kind.SIGNATURE_SHARE] = Route(_wrong_scheme, current_epoch=False)
            self._routes[Kind.SIGNING_SET] = Route(_wrong_scheme, current_epoch=False)
        self._future = FutureEpochBuffer(self.stats, members=committee.n)
        self.pacemaker.on_enter.append(lambda epoch: self._future.enter(epoch, self._replay))
        # Signatures of envelopes already handled: gossip dedups by its own message id, so an
        # envelope published again under a new gossip id is a replay.
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self.pacemaker.start()
        self._tasks = [asyncio.create_task(self.leader.run(), name="leader")]

    async def stop(self) -> None:
        self.pacemaker.stop()
        self.rounds.cancel_timers()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.attestation.stop()

    def alive(self) -> bool:
        """The pacemaker's timer runs and the leader's loop has not ended (it never should)."""
        return self.pacemaker.alive() and all(not task.done() for task in self._tasks)

    @property
    def digest(self) -> str:
        return self.committee.digest_hex

    @property
    def epoch(self) -> Epoch:
        return self.pacemaker.epoch

    @property
    def round(self) -> RoundId:
        """The latest round this node led in the current epoch (0 when it does not lead)."""
        return self.leader.round

    def adopt_landed(self, epoch: int, round: int, updates: bytes, signatures: list[tuple[int, bytes]]) -> bool:
        """A report of this committee that landed on-chain but never reached this node: verified,
        recorded and handed on (relayer.protocol.attestation); False when held already.
        Raises InvalidMessage when it does not verify."""
        return self.attestation.adopt_landed(Epoch(epoch), RoundId(round), updates, signatures)

    def verify_attested(self, epoch: int, round: int, updates: bytes, signatures: list[tuple[int, bytes]],
                        schnorr: bytes | None = None) -> None:
        """Check an attested report on its own: decodable, >= threshold distinct committee
        signatures, or under 0x0002 one Schnorr signature under the group key."""
        self.attestation.verify(Epoch(epoch), RoundId(round), updates, signatures, schnorr)

    # --- inbound --------------------------------------------------------------------

    def on_wire(self, sender_address: str, data: bytes, opened: Envelope | None = None) -> None:
        """Entry point for bytes from the network; never raises.

        ``opened`` is the same bytes already parsed and authenticated by the transport's
        validator (:func:`open_envelope`), which spares a second signature recovery.
        """
        env: Envelope | None = None
        try:
            if opened is None and sender_address == self.address:
                opened = self._sealer.take_own(data)
            env = opened if opened is not None else open_envelope(data)
            if env.sender.lower() != sender_address.lower():
                raise InvalidMessage("sender_mismatch", f"envelope from {env.sender} relayed as {sender_address}")
            if env.sig in self._seen:
                raise InvalidMessage("replayed", f"{env.kind.value} for epoch {env.epoch} round {env.round} seen before")
            self._seen[env.sig] = None
            if len(self._seen) > _SEEN_ENVELOPES:
                self._seen.popitem(last=False)
            self._dispatch(env)
        except Dropped as exc:
            self.stats.drop(sender_address, exc, epoch=env.epoch if env else None, round=env.round if env else None)
        except StoreWriteError as exc:
            self._store_failed(exc)
        except Exception:
            # A bug must cost one message, never the node.
            self.stats.dropped[(sender_address, "internal_error")] += 1
            log.exception("error handling message from %s", sender_address, extra={"peer": sender_address})

    def _store_failed(self, exc: StoreWriteError) -> None:
        """A message whose handling needed a store write that failed: nothing was signed for it
        (the record comes first). Counted with the pacemaker's own store failures; the same
        message each time, so the log's repeat filter keeps a full disk to a line a minute."""
        self.stats.store_errors += 1
        log.error("%s", exc)

    def _dispatch(self, env: Envelope) -> None:
        if env.digest != self.digest:
            raise InvalidMessage("wrong_digest", f"{env.digest[:12]} is not the current config digest {self.digest[:12]}")
        sender = self.committee.index_of(env.sender)
        if sender is None:
            raise InvalidMessage("not_in_committee", f"{env.sender} is not a committee signer")
        route = self._routes[env.kind]
        body = parse_body(env)
        self.pacemaker.note_sender(env.epoch, sender)
        if route.current_epoch:
            current = self.pacemaker.epoch
            if env.epoch < current:
                raise Ignored("stale_epoch", f"{env.kind.value} for epoch {env.epoch}, this node is in {current}")
            if env.epoch > current:
                self._future.keep(env, sender, body, current)
                return
        route.handle(env, sender, body)

    def _replay(self, kept: Kept) -> None:
        """A message kept for the epoch just entered, handled as if it had just arrived."""
        env = kept.env
        try:
            self._routes[env.kind].handle(env, kept.sender, kept.body)
        except Dropped as exc:
            self.stats.drop(env.sender, exc, epoch=env.epoch, round=env.round)
        except StoreWriteError as exc:
            self._store_failed(exc)
        except Exception:
            self.stats.dropped[(env.sender, "internal_error")] += 1
            log.exception("error handling a kept message from %s", env.sender, extra={"peer": env.sender})

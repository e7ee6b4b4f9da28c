from __future__ import annotations

import json
import secrets

import pytest

from relayer.chain.codec import address_of
from relayer.protocol.errors import InvalidMessage
from relayer.protocol.messages import (
    Attested,
    FeedObservation,
    Kind,
    Observation,
    ObserveRequest,
    ReportSignature,
    open_envelope,
    parse_body,
    seal,
)

pytestmark = pytest.mark.unit

DIGEST = bytes.fromhex("0001" + "cd" * 30)


def _observation(key: bytes) -> bytes:
    body = Observation(feeds=(FeedObservation(feed_index=0, value=6_400_000_000_000, observed_at=1_700_000_000, num_sources=3),))
    return seal(private_key=key, sender=address_of(key), kind=Kind.OBSERVATION, config_digest=DIGEST,
                epoch=3, round=9, body=body).encode()


def test_sealed_envelope_opens_and_parses_back() -> None:
    key = secrets.token_bytes(32)
    env = open_envelope(_observation(key))
    assert env.sender == address_of(key)
    body = parse_body(env)
    assert isinstance(body, Observation)
    assert body.feeds[0].value == 6_400_000_000_000
    assert (env.epoch, env.round, env.config_digest) == (3, 9, DIGEST)


def test_encoding_is_canonical() -> None:
    key = secrets.token_bytes(32)
    data = _observation(key)
    # Re-encoding a parsed envelope gives the same bytes, whatever order keys came in.
    shuffled = json.dumps(dict(reversed(list(json.loads(data).items())))).encode()
    assert open_envelope(shuffled).encode() == data


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(epoch=4), "bad_signature"),
        (lambda d: d["body"]["feeds"][0].update(value=1), "bad_signature"),
        (lambda d: d.update(sender=address_of(secrets.token_bytes(32))), "bad_signature"),
        (lambda d: d.update(v=2), "malformed"),
        (lambda d: d.update(extra=1), "malformed"),
        (lambda d: d["body"]["feeds"][0].update(value=1.5), "malformed"),
    ],
)
def test_tampered_envelopes_are_refused_with_a_reason(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(_observation(secrets.token_bytes(32)))
    mutate(data)
    with pytest.raises(InvalidMessage) as err:
        env = open_envelope(json.dumps(data).encode())
        parse_body(env)
    assert err.value.reason == reason


def test_oversized_and_garbage_are_refused() -> None:
    with pytest.raises(InvalidMessage) as err:
        open_envelope(b"{" * 2000, max_bytes=1000)
    assert err.value.reason == "oversized"
    with pytest.raises(InvalidMessage) as err:
        open_envelope(b"\xff\x00not json")
    assert err.value.reason == "malformed"


def test_observation_feeds_must_be_ascending() -> None:
    key = secrets.token_bytes(32)
    feed = FeedObservation(feed_index=1, value=1, observed_at=1, num_sources=1)
    with pytest.raises(ValueError):
        Observation(feeds=(feed, feed))
    env = seal(private_key=key, sender=address_of(key), kind=Kind.OBSERVE_REQUEST, config_digest=DIGEST,
               epoch=0, round=1, body=ObserveRequest(started_at_ms=5))
    assert isinstance(parse_body(open_envelope(env.encode())), ObserveRequest)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"report_digest": "0x" + "AB" * 32, "signature": "0x" + "ab" * 65}, "report_digest"),  # upper case
        ({"report_digest": "0x" + "ab" * 31, "signature": "0x" + "ab" * 65}, "report_digest"),  # 31 bytes
        ({"report_digest": "0x" + "ab" * 32, "signature": "ab" * 65}, "signature"),  # no 0x
        ({"report_digest": "0x" + "ab" * 32, "signature": "0x" + "ab" * 64}, "signature"),
    ],
)
def test_digests_and_signatures_have_one_hex_spelling(body: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ReportSignature.model_validate(body)


def test_attested_signatures_are_hex_checked() -> None:
    good = {"updates": "0x" + "00" * 32, "signatures": [[0, "0x" + "ab" * 65]]}
    assert Attested.model_validate(good).signatures[0][1] == "0x" + "ab" * 65
    with pytest.raises(ValueError):
        Attested.model_validate({**good, "signatures": [[0, "not hex"]]})

"""From `relayer dkg` to a report signed under the new key: four members make the key over
libp2p and keep their shares in their keystores, the owner installs it with their approvals
(`relayer committee install-threshold`), each node loads its share for the installed config,
and three loaded shares sign a report the contract takes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from relayer.chain.codec import ThresholdKey
from relayer.cli import Checker, main
from relayer.crypto import frost
from relayer.keygen import keygen_command, next_config_from_chain
from relayer.keystore import read_threshold_share, write_keystore
from relayer.node import Node
from relayer.p2p.identity import peer_id_of
from relayer.ports import free_port
from relayer.protocol.committee import Committee, OffchainConfig
from relayer.protocol.signer import FrostReportAggregator
from relayer.settings import Settings
from tests.relayer.chain.conftest import Deployment

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


def member_settings(tmp_path: Path, d: Deployment, m: int, ports: list[int]) -> Settings:
    home = tmp_path / f"member{m}"
    write_keystore(home / "keystore.json", d.signer_keys[m], PASSWORD, scrypt_n=1024)
    peers = [f"/ip4/127.0.0.1/tcp/{p}/p2p/{peer_id_of(d.signer_keys[i])}" for i, p in enumerate(ports) if i != m]
    return Settings.model_validate({
        "data_dir": str(home / "data"), "keystore_file": str(home / "keystore.json"),
        "keystore_password": PASSWORD, "threshold_share_file": str(home / "threshold-share.json"),
        "rpc_urls": [d.anvil.rpc_url], "oracle_address": d.client.address, "listen_port": ports[m], "peers": peers,
        "feeds": [{"feed_id": "ETH/USD", "instrument": "ETH-USD", "sources": ["binance", "kraken"]}],
    })


async def test_keys_made_by_relayer_dkg_are_installed_loaded_by_each_node_and_sign(
    oracle: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    d = oracle
    ports = [free_port() for _ in range(4)]
    settings = [member_settings(tmp_path, d, m, ports) for m in range(4)]
    config = await next_config_from_chain(d.anvil.rpc_url, d.client.address)
    assert config.config_count == d.config.config_count + 1 and config.threshold == 3
    approvals = await asyncio.gather(*(keygen_command(s, config, phase_timeout=8.0, connect_timeout=30.0,
                                                      scrypt_n=1024) for s in settings))
    assert len({a["group_key"] for a in approvals}) == 1 and len({a["transcript_hash"] for a in approvals}) == 1
    files = []
    for m in (3, 0, 2):
        files.append(tmp_path / f"approval{m}.json")
        files[-1].write_text(json.dumps(approvals[m]))
    owner = tmp_path / "owner.key"
    owner.write_text(d.owner_key.hex())
    common = ["--rpc-url", d.anvil.rpc_url, "--oracle", d.client.address, "--owner-key-file", str(owner)]
    # Two approvals are below the threshold: refused before any transaction.
    assert await asyncio.to_thread(main, ["committee", "install-threshold", *common,
                                          *(x for f in files[:2] for x in ("--approval", str(f)))]) == 2
    assert "threshold is 3" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["committee", "install-threshold", *common,
                                          *(x for f in files for x in ("--approval", str(f)))]) == 0
    assert "transcript 0x" + approvals[0]["transcript_hash"][2:] in capsys.readouterr().out
    installed = await d.client.config()
    assert installed.config_digest[:2] == b"\x00\x02"
    assert "0x" + installed.config_digest.hex() == approvals[0]["config_digest"]

    records = [read_threshold_share(s.threshold_share_file, PASSWORD) for s in settings]  # type: ignore[arg-type]
    assert await d.client.group_key() == ThresholdKey.from_point(records[0].group_public_key,
                                                                 records[0].transcript_hash)
    committee = Committee(config_digest=installed.config_digest, signers=tuple(installed.signers),
                          transmitters=tuple(installed.transmitters), f=installed.f, threshold=installed.threshold,
                          offchain=OffchainConfig())
    node = Node(settings[1])
    node.chain_id, node.oracle = d.anvil.chain_id, d.client
    loaded = await node._threshold_key(committee, 1)  # noqa: SLF001 - the node's own loading path
    assert loaded is not None and loaded.share.secret == records[1].secret
    assert await node._threshold_key(committee, 2) is None  # noqa: SLF001 - member 1's share is not member 2's
    node.store.close()
    # `relayer check` says the same: its share line passes for member 1, fails naming why for 2.
    checker = Checker(settings[1], timeout=2)
    await checker._check_share(d.client, installed, 1, d.anvil.chain_id)  # noqa: SLF001 - the share line alone
    await checker._check_share(d.client, installed, 2, d.anvil.chain_id)  # noqa: SLF001
    assert [(r.name, r.ok) for r in checker.results] == [("share", True), ("share", False)]
    assert "member 1's share; this node is member 2" in checker.results[1].detail

    aggregator = FrostReportAggregator(records[0].group_public_key, records[0].verification_shares, 3)
    chosen = [0, 2, 3]
    now = await d.now()
    updates = d.updates(now, (0, 3_100_00000000))
    report = d.domain.report_digest(installed.config_digest, 1, 1, updates)
    nonces = {m: frost.commit(records[m].secret) for m in chosen}
    commitments = {m: nonces[m].commitment(m + 1) for m in chosen}
    shares = {m: frost.sign(records[m].key_share(), nonces[m], list(commitments.values()), report) for m in chosen}
    receipt = await d.client.transmit(d.transmitter_keys[0], installed.config_digest, 1, 1, updates,
                                      aggregator.aggregate(report, commitments, shares))
    assert receipt.succeeded and (await d.client.latest_feed(0)).value == 3_100_00000000



async def test_the_next_committee_keeps_each_staying_members_transmitter_and_names_a_new_ones(
    oracle: Deployment,
) -> None:
    from relayer.chain.codec import address_of
    from relayer.keygen import KeygenError

    d = oracle
    staying = list(d.config.signers[1:])
    config = await next_config_from_chain(d.anvil.rpc_url, d.client.address, signers=staying)
    assert list(config.transmitters) == list(d.config.transmitters[1:])  # not the signers' addresses
    newcomer = address_of(b"\x07" * 32)
    with pytest.raises(KeygenError, match="--transmitters"):
        await next_config_from_chain(d.anvil.rpc_url, d.client.address, signers=[*staying, newcomer])
    with pytest.raises(KeygenError, match="one per signer"):
        await next_config_from_chain(d.anvil.rpc_url, d.client.address, signers=staying,
                                     transmitters=list(d.config.transmitters[:2]))

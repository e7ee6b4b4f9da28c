"""A fault engine starts only through `python -m relayer.testing`, never through `relayer run`."""

from __future__ import annotations

import ast
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

import relayer
from relayer import cli
from relayer.node import Node
from relayer.protocol.engine import RoundEngine
from relayer.settings import Settings, SettingsError
from relayer.testing.run import NotALocalDevnet, check_loopback_urls, main

pytestmark = pytest.mark.unit

FAULT_ENV = {"RELAYER_TEST_FAULT": "silent", "RELAYER_FAULT": "wrong_median", "RELAYER_ENGINE_FACTORY": "spam"}


def _config(tmp_path: Path, **over: Any) -> Path:
    key = tmp_path / "signing.key"
    key.write_text(secrets.token_bytes(32).hex())
    config = {
        "data_dir": str(tmp_path / "data"), "signing_key_file": str(key),
        "rpc_urls": ["http://127.0.0.1:8545"], "oracle_address": "0x" + "11" * 20,
        "feeds": [{"feed_id": "BTC-USD", "instrument": "BTC-USD", "sources": ["coinbase", "kraken"]}],
        "api_enabled": False, **over,
    }
    path = tmp_path / "node.json"
    path.write_text(json.dumps(config))
    return path


def test_settings_have_no_fault_and_refuse_one_in_the_config_file(tmp_path: Path) -> None:
    assert not [name for name in Settings.model_fields if "fault" in name or "engine" in name]
    with pytest.raises(SettingsError, match="test_fault"):
        Settings.load(_config(tmp_path, test_fault="silent"))


def test_fault_variables_in_the_environment_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path)
    plain = Settings.load(config)
    for name, value in FAULT_ENV.items():
        monkeypatch.setenv(name, value)
    assert Settings.load(config) == plain


@pytest.mark.parametrize("in_file", [{}, {"test_fault": "silent"}, {"fault": "equivocate"}])
def test_relayer_run_builds_the_honest_engine_whatever_config_and_environment_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_file: dict[str, str]
) -> None:
    for name, value in FAULT_ENV.items():
        monkeypatch.setenv(name, value)
    started: list[Node] = []

    async def run(node: Node) -> None:
        started.append(node)

    monkeypatch.setattr(Node, "run", run)
    monkeypatch.setattr(cli, "setup_logging", lambda **_: None)
    code = cli.main(["run", "--config", str(_config(tmp_path, **in_file))])
    if in_file:
        assert code == 2 and started == []  # refused before any node exists
    else:
        assert code == 0
        assert [node.engine_factory for node in started] == [RoundEngine]


def test_no_module_outside_relayer_testing_imports_it() -> None:
    root = Path(relayer.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "testing" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "relayer.testing" or n.startswith("relayer.testing.") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


@pytest.mark.parametrize("url", ["http://10.1.2.3:8545", "https://203.0.113.7/rpc", "http://[2001:db8::1]:8545"])
def test_an_rpc_url_off_loopback_is_refused(url: str) -> None:
    with pytest.raises(NotALocalDevnet, match="loopback"):
        check_loopback_urls(["http://127.0.0.1:8545", url])
    check_loopback_urls(["http://127.0.0.1:8545", "http://127.0.0.2:1", "http://[::1]:8545"])


@pytest.mark.parametrize(("over", "words"), [
    ({"rpc_urls": ["http://10.1.2.3:8545"]}, "loopback"),
    ({"chain_id": 1}, "chain_id is 1"),
])
def test_the_test_entry_point_refuses_a_chain_that_is_not_a_local_devnet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], over: dict[str, Any], words: str
) -> None:
    code = main(["run", "--fault", "silent", "--config", str(_config(tmp_path, **over))])
    assert code == 2
    err = capsys.readouterr().err
    assert "refused" in err and words in err

"""Installing tests/plugin_example as a third party would: with pip, from a copy of its directory.

pip builds from a copy so that no build output lands in the repository. Where pip
cannot build (no wheel builder and no index to fetch one from), the package is laid
out as pip would lay it out: the package plus a dist-info whose entry_points.txt
comes from the package's own pyproject.toml, and a RECORD so ``pip uninstall``
removes it like any other distribution.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parents[1] / "plugin_example"
PLUGIN_DIST = "relayer-plugin-example"
PLUGIN_PACKAGE = "relayer_plugin_example"


def _record_line(path: Path, root: Path) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    return f"{path.relative_to(root).as_posix()},sha256={digest},{path.stat().st_size}"


def install_by_hand(target: Path) -> None:
    """Lay out the plugin in ``target`` (a site-packages directory) as pip would."""
    project = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    shutil.copytree(PLUGIN_ROOT / PLUGIN_PACKAGE, target / PLUGIN_PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__"))
    files = sorted(p for p in [*(target / PLUGIN_PACKAGE).rglob("*"), *info.iterdir()] if p.is_file())
    record = [_record_line(p, target) for p in files] + [f"{(info / 'RECORD').relative_to(target).as_posix()},,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def pip_install(scratch: Path, *target_args: str) -> str:
    """pip-install a copy of the plugin (``target_args`` e.g. ``--target DIR``); "pip" or "by hand"."""
    copy = scratch / "plugin_example"
    shutil.copytree(PLUGIN_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *target_args, str(copy)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)},
    )
    if proc.returncode == 0:
        return "pip"
    # Only a missing build backend is an excuse; anything else is a real failure.
    assert "bdist_wheel" in proc.stderr or "setuptools" in proc.stderr, proc.stderr
    return "by hand"


def pip_uninstall() -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", PLUGIN_DIST],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

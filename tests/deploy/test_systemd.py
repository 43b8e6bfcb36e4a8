"""``deploy/nowplaying.service``: systemd accepts it, and what it runs is what the CLI and the
settings accept (the command line, the forwarded-header setting, a stop timeout longer than the
drain)."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nowplaying.cli.main import build_parser
from nowplaying.config import Settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "nowplaying.service"
INSTALLED = "/opt/nowplaying/bin/nowplaying"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """``systemd-analyze verify`` passes (the installed path swapped for this checkout's)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("NOWPLAYING_REQUIRE_SERVICES") == "1":
            pytest.fail("systemd-analyze is not installed, and NOWPLAYING_REQUIRE_SERVICES=1")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    here = Path(sys.executable).with_name("nowplaying")
    text = UNIT.read_text()
    assert INSTALLED in text
    unit = tmp_path / "nowplaying.service"
    unit.write_text(text.replace(INSTALLED, str(here)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "nowplaying.service" not in done.stderr, done.stderr


def test_the_unit_runs_what_the_cli_and_settings_accept() -> None:
    svc = service()
    command = shlex.split(svc["ExecStart"])
    assert command[0] == INSTALLED
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.host, args.port) == ("serve", "127.0.0.1", 8000)
    name, _, value = shlex.split(svc["Environment"])[0].partition("=")
    assert name == "NOWPLAYING_TRUSTED_PROXIES"
    assert json.loads(value) == ["127.0.0.1"]
    shutdown = Settings.model_fields["nowplaying_shutdown_seconds"].default
    assert int(svc["TimeoutStopSec"]) > shutdown
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["User"] == "nowplaying"
    assert svc["WorkingDirectory"] == "/var/lib/nowplaying"
    assert svc["StateDirectory"] == "nowplaying"

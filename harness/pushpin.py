"""Debian's Pushpin running the shipped ``deploy/pushpin/`` files, for the GRIP tests and
``python -m bench grip``.

The shipped files are used as they are except for ports, paths, the key and the connection cap
(each replacement must find its text, so a change of the files' shape fails loudly here). Every
socket is on loopback or a unix socket under the given directory, so several runs side by side
never meet.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.live_server import free_port
from harness.servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "pushpin"
START_SECONDS = 20.0


def pushpin_binary() -> str | None:
    return shutil.which("pushpin")


def render(
    directory: Path,
    *,
    http_port: int,
    publish_port: int,
    key: str,
    maxconn: int,
    log_level: int = 2,
) -> str:
    """The shipped ``pushpin.conf`` with only its ports, paths, key and cap changed (and the log
    level, when not the shipped 2)."""
    text = (SHIPPED / "pushpin.conf").read_text()
    run = directory / "run"
    for old, new in (
        ("rundir=/var/run/pushpin", f"rundir={run}"),
        ("logdir=/var/log/pushpin", f"logdir={directory}"),
        ("http_port=127.0.0.1:7999", f"http_port=127.0.0.1:{http_port}"),
        ("push_in_http_port=5561", f"push_in_http_port={publish_port}"),
        ("push_in_spec=tcp://127.0.0.1:5560", f"push_in_spec=ipc://{run}/push-in"),
        ("push_in_sub_specs=tcp://127.0.0.1:5562", f"push_in_sub_specs=ipc://{run}/push-sub"),
        ("command_spec=tcp://127.0.0.1:5563", f"command_spec=ipc://{run}/command"),
        ("routesfile=routes", f"routesfile={directory / 'routes'}"),
        ("sig_key=REPLACE-WITH-A-LONG-RANDOM-SECRET", f"sig_key={key}"),
        ("client_maxconn=100000", f"client_maxconn={maxconn}"),
        ("log_level=2", f"log_level={log_level}"),
    ):
        if old not in text:
            raise AssertionError(f"deploy/pushpin/pushpin.conf no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def render_routes(origin: str) -> str:
    """The shipped ``routes`` pointing at ``origin`` (``host:port``)."""
    text = (SHIPPED / "routes").read_text()
    if "127.0.0.1:8000" not in text:
        raise AssertionError("deploy/pushpin/routes no longer contains 127.0.0.1:8000")
    return text.replace("127.0.0.1:8000", origin)


@dataclass
class Pushpin:
    """A running Pushpin: where viewers connect, where to publish, its stats socket and key."""

    http_port: int
    publish_port: int
    directory: Path
    key: str
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def publish_url(self) -> str:
        return f"http://127.0.0.1:{self.publish_port}/publish/"

    @property
    def stats_url(self) -> str:
        return f"ipc://{self.directory / 'run' / 'pushpin-stats'}"

    def settings(self) -> dict[str, str]:
        """The environment that points a ``nowplaying serve`` at this Pushpin."""
        return {
            "NOWPLAYING_GRIP_PUBLISH_URL": self.publish_url,
            "NOWPLAYING_GRIP_KEY": self.key,
            "NOWPLAYING_GRIP_STATS_URL": self.stats_url,
        }

    def cpu_seconds(self) -> float:
        """User + system CPU time of the runner and every process it started, summed."""
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += ServerProcess.cpu_of(pid)
        return total

    def stop(self) -> None:
        """Stop it (and what it started) now, as an outage would."""
        _stop(self.proc)

    def log(self) -> str:
        path = self.directory / "pushpin.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def pids(self) -> list[int]:
        """The runner and the processes it started (condure, zurl, proxy, handler)."""
        found = [self.proc.pid]
        for status in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = status.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:  # the parent's pid
                    found.append(int(status.parent.name))
        return found

    def rss_kb(self) -> int:
        """Resident memory of the runner and every process it started, summed."""
        return sum(self.rss_by_process().values())

    def rss_by_process(self) -> dict[str, int]:
        """Resident memory (KB) of the runner and each process it started, by name."""
        found: dict[str, int] = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                name = status[0].split(":", 1)[1].strip()
                for line in status:
                    if line.startswith("VmRSS:"):
                        found[name] = found.get(name, 0) + int(line.split()[1])
        return found


def grip_settings(pushpins: Sequence[Pushpin]) -> dict[str, str]:
    """The environment that points a ``nowplaying serve`` at every one of ``pushpins``
    (one key: they share the ``sig_key``)."""
    keys = {p.key for p in pushpins}
    if len(keys) != 1:
        raise ValueError("Pushpin instances in front of one nowplaying share one sig_key")
    return {
        "NOWPLAYING_GRIP_PUBLISH_URL": ",".join(p.publish_url for p in pushpins),
        "NOWPLAYING_GRIP_KEY": keys.pop(),
        "NOWPLAYING_GRIP_STATS_URL": ",".join(p.stats_url for p in pushpins),
    }


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def run_pushpin(
    origin: str,
    *,
    maxconn: int = 1000,
    like: Pushpin | None = None,
    key: str | None = None,
    log_level: int = 2,
) -> Iterator[Pushpin]:
    """Pushpin on a loopback port in front of ``origin`` (``host:port``); stopped on the way
    out (SIGTERM to the runner, which stops what it started; SIGKILL to its group if not).

    Its files are in a short temporary directory of its own: unix socket paths are limited to
    107 bytes, which a test's ``tmp_path`` can pass. ``like``: a Pushpin stopped before, started
    again on its ports, sockets and key (a restart). ``key``: the ``sig_key`` (several
    instances in front of one nowplaying share one); a new random one if not given.
    ``log_level``: 2 (the shipped one) logs a line per request, which the tests read; the bench
    sets 1 (warnings), as a large deployment would."""
    binary = pushpin_binary()
    if binary is None:
        raise FileNotFoundError("pushpin is not installed (apt-get install pushpin)")
    with contextlib.ExitStack() as stack:
        if like is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pp-")))
            ports, key = (free_port(), free_port()), key or secrets.token_urlsafe(32)
        else:
            directory, ports, key = like.directory, (like.http_port, like.publish_port), like.key
        yield stack.enter_context(
            _started(binary, directory, origin, maxconn, ports, key, log_level)
        )


@contextlib.contextmanager
def _started(
    binary: str,
    directory: Path,
    origin: str,
    maxconn: int,
    ports: tuple[int, int],
    key: str,
    log_level: int,
) -> Iterator[Pushpin]:
    (directory / "run").mkdir(parents=True, exist_ok=True)
    http_port, publish_port = ports
    (directory / "routes").write_text(render_routes(origin))
    config = directory / "pushpin.conf"
    config.write_text(
        render(
            directory,
            http_port=http_port,
            publish_port=publish_port,
            key=key,
            maxconn=maxconn,
            log_level=log_level,
        )
    )
    with (directory / "pushpin.out").open("wb") as out:
        proc = subprocess.Popen(
            [binary, "--config", str(config), "--merge-output"],
            stdout=out,
            stderr=out,
            start_new_session=True,  # its own group: the SIGKILL below reaches only its own
            preexec_fn=_raise_nofile,  # noqa: PLW1509 - setrlimit only, before exec
        )
    pushpin = Pushpin(http_port, publish_port, directory, key, proc)
    try:
        _wait_listening(pushpin)
        yield pushpin
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _wait_listening(pushpin: Pushpin) -> None:
    deadline = time.monotonic() + START_SECONDS
    waiting = [pushpin.http_port, pushpin.publish_port]
    while waiting and time.monotonic() < deadline:
        if pushpin.proc.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", waiting[0]), 0.5),
        ):
            waiting.pop(0)
            continue
        time.sleep(0.05)
    if waiting:
        raise RuntimeError(f"pushpin did not start:\n{pushpin.log()[-3000:]}")

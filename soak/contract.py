"""The contract probe: ``python -m soak contract [--short]`` (``make soak-contract``), loopback.

``/openapi.json`` is the contract: schemathesis generates requests from it (valid ones and ones
it forbids, every undeclared method on every path, the stateful links between operations) and
checks every answer against it (no 5xx, only declared statuses, content types and headers,
bodies and event-stream events that match their schema, schema-violating requests refused,
valid ones taken, a 405 with ``Allow`` for an undeclared method). It runs against one real
``nowplaying serve`` (demo mode) whose owner is connected and has published a widget, so the
public paths are asked with a published id and the owner's paths with the owner's session.

Two runs, so nothing one run changes spoils the other: the owner's session over every operation
but the three that would take the published id away or make a webhook (``rotate``,
``unpublish``, adding a webhook, whose deliveries would look up names on the network), then
those three without a session. The generation is seeded and derandomized, so a run is repeated
exactly. The stateful phase (sequences of linked calls, run when the earlier phases found links)
is bounded in scenarios and steps, and each run has a deadline: past it schemathesis is stopped
and the phases it finished are reported. ``--short`` (run by ``make test`` through
``tests/procs/test_soak_contract.py``) uses fewer examples. The exit status is 1 if
schemathesis found anything or did not finish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness.browser import owner_over_http
from harness.live_server import free_port

from soak.procs import Proc, _clean_env, cli, wait_up

SEED = 20261207
RUN_SECONDS = 1800.0
"""Each run's deadline in the long form: past it schemathesis is stopped, and what it ran by
then is reported."""
PHASE_NAMES = ("Examples", "Coverage", "Fuzzing", "Stateful")
UNAUTHENTICATED = (
    ("POST", "/api/account/rotate"),
    ("POST", "/api/account/unpublish"),
    ("POST", "/api/account/webhooks"),
    ("POST", "/api/account/webhooks/{hook_id}/test"),
)
"""Operations fuzzed without the owner's session: with it they would take the published id away
(rotate, unpublish) or deliver webhooks to generated host names."""


@dataclass(frozen=True)
class Scale:
    max_examples: int
    max_stream_events: int
    png_coverage: bool
    """Whether the PNG cards get the coverage phase (every boundary of every option, each a
    rasterisation): they read their options with the SVG card's parser, which gets it always."""
    stateful_examples: int
    """Scenarios of the stateful phase (schemathesis' own default follows ``max_examples``, and
    at 100 the long form did not finish)."""
    stateful_steps: int
    """Calls in one scenario at most."""
    run_seconds: float
    """Each run's deadline: past it schemathesis is stopped and what it ran reported."""
    seed: int = SEED


LONG = Scale(100, 3, True, stateful_examples=30, stateful_steps=6, run_seconds=RUN_SECONDS)
SHORT = Scale(8, 1, False, stateful_examples=4, stateful_steps=4, run_seconds=600.0)
PNG_COVERAGE_OFF = """
[[operations]]
include-path-regex = '\\.png$'  # a TOML literal string: the regex as written
phases.coverage.enabled = false
"""


@dataclass
class Outcome:
    name: str
    returncode: int
    seconds: float
    summary: str

    @property
    def held(self) -> bool:
        return self.returncode == 0


def config(scale: Scale, public_id: str, headers: dict[str, str]) -> str:
    """``schemathesis.toml`` for one run (TOML's basic strings are JSON's)."""
    header_lines = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in headers.items())
    return f"""\
seed = {scale.seed}
workers = 1
request-timeout = 20
max-stream-events = {scale.max_stream_events}
headers = {{ {header_lines} }}

[generation]
deterministic = true
database = "none"
max-examples = {scale.max_examples}

[parameters]
"path.public_id" = {json.dumps(public_id)}

[phases.stateful]
max-steps = {scale.stateful_steps}

[phases.stateful.generation]
deterministic = true
database = "none"
max-examples = {scale.stateful_examples}

# oEmbed's own rule (https://oembed.com, 2.3.5): a format the provider does not offer is a
# 501, which the document declares; every other 5xx is still a failure here.
[[operations]]
include-path = "/oembed"
checks.not_a_server_error.expected-statuses = ["2XX", "3XX", "4XX", "501"]

# ListenBrainz answers a validate-token without a token with 400 (the document says so), and
# clients written for it are what this endpoint serves; schemathesis wants 401 for a missing
# Authorization whatever the document says, so that one check is off for this one operation.
[[operations]]
include-path = "/1/validate-token"
checks.missing_required_header.enabled = false
{"" if scale.png_coverage else PNG_COVERAGE_OFF}"""


def _st() -> str:
    return str(Path(sys.executable).with_name("st"))


def _schemathesis(name: str, base: str, folder: Path, toml: str, selection: list[str]) -> list[str]:
    """The command of one run (its configuration written beside)."""
    path = folder / f"{name}.toml"
    path.write_text(toml, encoding="utf-8")
    return [
        _st(), "--config-file", str(path), "run", f"{base}/openapi.json",
        "--max-failures", "50", *selection,
    ]  # fmt: skip


def _invoke(name: str, command: list[str], folder: Path, seconds: float) -> Outcome:
    """Run schemathesis' ``command`` in ``folder``, stopped after ``seconds``: the outcome."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=folder, timeout=seconds
        )
    except subprocess.TimeoutExpired as stopped:  # killed: say what it had done by then
        output = _text(stopped.stdout) + _text(stopped.stderr)
        (folder / f"{name}.out").write_text(output, encoding="utf-8")
        lines = [line for line in output.splitlines() if line.strip()]
        return Outcome(
            name,
            1,
            time.monotonic() - started,
            f"stopped at its deadline ({seconds:g} s); what it ran:\n"
            + _phases(output)
            + "\nits last lines:\n"
            + "\n".join(lines[-4:]),
        )
    (folder / f"{name}.out").write_text(done.stdout + done.stderr, encoding="utf-8")
    return Outcome(name, done.returncode, time.monotonic() - started, _summary(done.stdout))


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _phases(output: str) -> str:
    """Each phase schemathesis finished, with its time and counts ("Examples (in 4.8s)")."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = [
        f"{line}: {lines[n + 1]}" if n + 1 < len(lines) else line
        for n, line in enumerate(lines)
        if line.lstrip("✅❌⚠️🚫⏭ ").startswith(PHASE_NAMES) and "(in " in line
    ]
    return "\n".join(said) or "(no phase finished)"


def _summary(output: str) -> str:
    """The phases with their times, then schemathesis' failures (the whole rest of the output
    on a failure) or its closing lines."""
    if "FAILURES" in output or "ERRORS" in output:
        start = min(i for i in (output.find("ERRORS"), output.find("FAILURES")) if i >= 0)
        return _phases(output) + "\n" + output[start:]
    lines = [line for line in output.splitlines() if line.strip()]
    return _phases(output) + "\n" + "\n".join(lines[-4:])


def _server(folder: Path, port: int) -> Proc:
    env = {
        **_clean_env(),
        "NOWPLAYING_LOG_LEVEL": "WARNING",
        "SPOTIFY_REDIRECT_URI": f"http://127.0.0.1:{port}/callback",
        # The fuzzer asks far faster than anyone may: the limits' 429 is declared, not tested.
        "NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0",
        "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "0",
    }
    cmd = cli("serve", "--host", "127.0.0.1", "--port", str(port))
    return Proc("server", cmd, env, folder, folder / "server.log")


def run(scale: Scale, keep: Path | None = None) -> list[Outcome]:
    """Both runs against a fresh demo server; their outcomes (outputs kept in ``keep``)."""
    folder = keep or Path(tempfile.mkdtemp(prefix="nowplaying-contract-"))
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = _server(folder, port)
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait(server, base))
        account, cookie = owner_over_http(base, "/login?with=recently-played")
        public_id = str(account["publicId"])
        shown = httpx.post(  # so the recently-played paths answer more than "not shared"
            f"{base}/api/account/settings",
            json={"lastPlayed": True},
            headers={"Cookie": cookie, "Origin": base},
        )
        shown.raise_for_status()
        anonymous = [a for method, path in UNAUTHENTICATED for a in ("--include-path", path)]
        excluded = [a for method, path in UNAUTHENTICATED for a in ("--exclude-path", path)]
        owner = config(scale, public_id, {"Cookie": cookie, "Origin": base})
        stranger = config(scale, public_id, {"Origin": base})
        runs = [
            ("owner", _schemathesis("owner", base, folder, owner, excluded)),
            ("anonymous", _schemathesis("anonymous", base, folder, stranger, anonymous)),
        ]
        outcomes = [_invoke(name, cmd, folder, scale.run_seconds) for name, cmd in runs]
        alive = server.alive
    finally:
        server.stop()
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    if not alive:
        outcomes.append(Outcome("server alive", 1, 0.0, "the server died during the run"))
    return outcomes


async def _wait(server: Proc, base: str) -> None:
    async with httpx.AsyncClient() as http:
        await wait_up(http, server, f"{base}/healthz")


def render(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"{'held' if o.held else 'FAILED':6}  {o.name:18} {o.seconds:5.0f} s\n{o.summary}"
        for o in outcomes
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m soak contract", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--short", action="store_true", help="few examples per operation")
    parser.add_argument("--keep", type=Path, help="keep the configs and outputs in this folder")
    args = parser.parse_args(argv)
    outcomes = run(SHORT if args.short else LONG, args.keep)
    print(render(outcomes))
    return 0 if all(o.held for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

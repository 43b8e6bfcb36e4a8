"""The nowplaying command: the server, the simulated Spotify, setup, doctor, login, now, upkeep."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import getpass
import logging
import os
import resource
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import httpx
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette

from nowplaying.cli.doctor import run_doctor
from nowplaying.cli.login import LOOPBACK, LoginFailed, Waiting, terminal_login
from nowplaying.cli.serve import (
    EVENT_LOOPS,
    HTTP_PARSERS,
    GracefulServer,
    describe_stack,
    serve_workers,
)
from nowplaying.cli.setup import Ask, SetupOptions, run_setup
from nowplaying.clock import Clock, SystemClock
from nowplaying.config import Settings
from nowplaying.engine.accounts import publish
from nowplaying.models import NowPlaying
from nowplaying.ops import logs
from nowplaying.runtime import make_cipher, open_runtime
from nowplaying.simulator import Simulator
from nowplaying.sources.spotify.errors import ReconnectRequired, SpotifyError
from nowplaying.store import StoreError, open_store
from nowplaying.web import create_app
from nowplaying.web.fast import server_protocol
from nowplaying.web.guard import Guard, limits_of, protocol_class
from nowplaying.web.security import origin_of, printable
from nowplaying.web.sse import stream_capacity

log = logging.getLogger("nowplaying")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and ``.env``; a clear message and exit 2 when unusable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
        print(f"nowplaying: cannot start: {problems}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(settings: Settings | None, level: str | None = None) -> None:
    """The process's logging: settings' level and format, its secrets redacted."""
    logs.configure(
        level or (settings.nowplaying_log_level if settings else "INFO"),
        settings.nowplaying_log_format if settings else "text",
        secrets=settings.secret_values if settings else (),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    env_has_redirect = "SPOTIFY_REDIRECT_URI" in os.environ
    settings = load_settings()
    if settings.demo and not env_has_redirect:
        # Demo mode follows the address it is served on, so any --port works in a browser.
        host = "127.0.0.1" if args.host in {"0.0.0.0", "localhost"} else args.host  # noqa: S104
        overrides["spotify_redirect_uri"] = f"http://{host}:{args.port}/callback"
        settings = load_settings(**overrides)
    if args.workers > 1 and (refusal := unsafe_layout(settings)):
        print(f"nowplaying: refusing --workers {args.workers}: {refusal}", file=sys.stderr)
        return 2
    _logging(settings)
    if settings.demo:
        log.warning("demo mode: no SPOTIFY_CLIENT_ID set, serving the built-in simulated Spotify")
    log.info("%s", banner(args.host, args.port, settings))
    log.info("%s", describe_stack(args.http, args.loop))
    raise_open_files_limit()
    options = _server_options(args, settings)
    if args.workers > 1:
        config = uvicorn.Config("nowplaying.web:create_app_from_env", factory=True, **options)  # type: ignore[arg-type]
        return serve_workers(
            config,
            args.workers,
            functools.partial(serve_worker, options),
            shutdown_seconds=settings.nowplaying_shutdown_seconds,
        )
    return _serve_app(create_app(settings), settings, options)


def banner(host: str, port: int, settings: Settings) -> str:
    """The startup line: the address this process listens on, and the site's public address."""
    shown = f"[{host}]" if ":" in host else host
    listening = f"http://{shown}:{port}/"
    public = _public_origin(settings) + "/"
    if public == listening:
        return f"serving on {listening}"
    return f"serving on {listening} (public address {public})"


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit and log how many viewers that allows.

    Every SSE viewer holds a descriptor; systemd's default soft limit (1024) or a shell's
    ``ulimit -n 256`` would otherwise cap a popular widget far below what the process can do.
    Workers inherit the raised limit. Returns the soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite soft limit; its nr_open is about a million.
    wanted = max(soft, 1 << 20) if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    log.info("file descriptors: %d (about %d viewers)", soft, stream_capacity())
    return soft


def unsafe_layout(settings: Settings) -> str | None:
    """Why several worker processes would lose data with these settings, or None."""
    if settings.demo:
        return "demo mode runs in one process: drop --workers or configure Spotify"
    missing = [
        name
        for name, absent in (
            ("PostgreSQL (NOWPLAYING_DATABASE_URL=postgresql://...)", settings.sqlite_path),
            ("Redis (NOWPLAYING_REDIS_URL)", not settings.nowplaying_redis_url),
        )
        if absent
    ]
    if not missing:
        return None
    return (
        "several processes need PostgreSQL and Redis, or two of them can refresh a rotating"
        " refresh token at once, one presents the rotated-away token and the account's grant is"
        f" lost; configure {' and '.join(missing)} (see docs/deploy.md), or run one process"
    )


def _server_options(args: argparse.Namespace, settings: Settings) -> dict[str, object]:
    return {
        "host": args.host,
        "port": args.port,
        "access_log": False,
        "log_level": settings.nowplaying_log_level.lower(),
        # Our handler (nowplaying.ops.logs) formats uvicorn's records too.
        "log_config": None,
        # The app itself believes forwarded headers only from NOWPLAYING_TRUSTED_PROXIES.
        "proxy_headers": False,
        "server_header": False,
        "http": args.http,
        "loop": args.loop,
    }


def _serve_app(
    app: Starlette,
    settings: Settings,
    options: dict[str, object],
    sockets: list[socket.socket] | None = None,
) -> int:
    """Serve until a signal; the shutdown drains streams and is bounded (see web/lifecycle.py)."""
    guard = Guard(limits_of(settings), trusted_proxies=settings.nowplaying_trusted_proxies)
    http = protocol_class(str(options.get("http", "auto")))
    guarded = {**options, "http": server_protocol(http, guard, app.state.fast)}
    app.state.metrics.count_edge(guard.counts)
    server = GracefulServer(
        uvicorn.Config(app, **guarded),  # type: ignore[arg-type]
        app,
        shutdown_seconds=settings.nowplaying_shutdown_seconds,
    )
    server.run(sockets)
    return 0 if server.started else 3


def serve_worker(options: dict[str, object], sockets: list[socket.socket]) -> None:
    """One ``--workers`` process: build the app here, from the environment, and serve it."""
    settings = Settings()
    _logging(settings)
    raise SystemExit(_serve_app(create_app(settings), settings, options, sockets))


def cmd_simulator(args: argparse.Namespace) -> int:
    _logging(None)
    sim = Simulator(
        clock=SystemClock(),
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=tuple(args.redirect_uri),
        refresh_mode=args.refresh_mode,
    )
    for n in range(1, args.users + 1):
        sim.add_user(f"user{n}", f"Listener {n}")
    print(
        f"simulated Spotify on http://{args.host}:{args.port}  "
        f"(SPOTIFY_ACCOUNTS_URL=http://{args.host}:{args.port} "
        f"SPOTIFY_API_URL=http://{args.host}:{args.port}/v1)",
        flush=True,
    )
    uvicorn.run(sim.app, host=args.host, port=args.port, log_level="warning")
    return 0


def _need_spotify_app(settings: Settings) -> None:
    if settings.demo or not settings.nowplaying_spotify:
        print(
            "nowplaying: this command talks to Spotify: set SPOTIFY_CLIENT_ID and"
            " SPOTIFY_CLIENT_SECRET, without NOWPLAYING_SPOTIFY=false (or point"
            " SPOTIFY_ACCOUNTS_URL/SPOTIFY_API_URL at `nowplaying simulator`)",
            file=sys.stderr,
        )
        raise SystemExit(2)


def _public_origin(settings: Settings) -> str:
    return origin_of(settings.spotify_redirect_uri)


def read_stdin_line() -> asyncio.Future[str]:
    """A line from the terminal, read without blocking the event loop.

    A daemon thread, not the loop's executor: when the login completes another way, nobody
    presses Enter, and the executor would hold the process open at exit waiting for that line.
    """
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def deliver(text: str) -> None:
        if not line.done():
            line.set_result(text)

    def read() -> None:
        text = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(deliver, text)

    threading.Thread(target=read, name="nowplaying-stdin", daemon=True).start()
    return line


def describe_waiting(how: Waiting) -> str:
    """What the user is told about where the redirect is awaited."""
    where = urlsplit(how.redirect_uri).netloc
    lines = []
    if how.listener:
        lines.append(f"Waiting for the browser to come back to {how.redirect_uri} (listening).")
    elif how.server:
        lines.append(
            f"{where} is in use (the running nowplaying server, most likely): that server"
            " completes the login, and this command waits for it."
            if urlsplit(how.redirect_uri).hostname in LOOPBACK
            else f"The server at {where} completes the login (it must share this database);"
            " this command waits for it."
        )
    if how.paste:
        lines.append("If that browser is on another machine, paste the address it ends on:")
    return "\n".join(lines) + "\n"


async def login_flow(
    settings: Settings,
    *,
    out: TextIO,
    pasted: Callable[[], Awaitable[str]] | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    wait_seconds: float = 600.0,
) -> int:
    """``nowplaying login``: connect an account, publish it, print its public URLs."""
    async with open_runtime(
        settings, public_origin=_public_origin(settings), http=http, clock=clock
    ) as rt:

        def announce(url: str, how: Waiting) -> None:
            out.write(f"Open this URL in a browser and press Agree:\n\n  {url}\n\n")
            out.write(describe_waiting(how))
            out.flush()

        try:
            account = await terminal_login(
                rt, announce=announce, pasted=pasted, wait_seconds=wait_seconds
            )
            public_id = await publish(rt, account)
        except LoginFailed as e:
            out.write(f"nowplaying: login failed: {e}\n")
            return 1
        except StoreError:
            out.write("nowplaying: connected, but the database is unavailable to publish it\n")
            return 1
        base = f"{_public_origin(settings)}/p/{public_id}"
        out.write(
            f"Connected {printable(account.display_name)} ({printable(account.id)}).\n"
            f"  widget page: {base}\n  SVG card:    {base}.svg\n  JSON:        {base}.json\n"
            f"  Markdown:    [![Now playing on Spotify]({base}.svg)]({base}/open)\n"
        )
        return 0


async def now_flow(
    settings: Settings,
    *,
    account_id: str | None,
    out: TextIO,
    http: httpx.AsyncClient | None = None,
) -> int:
    """``nowplaying now``: print what an account is playing."""
    async with open_runtime(settings, public_origin=_public_origin(settings), http=http) as rt:
        accounts = await rt.store.list_accounts()
        chosen = [a for a in accounts if account_id in (None, a.id)]
        if not chosen:
            out.write("nowplaying: no connected account (run `nowplaying login`)\n")
            return 1
        if len(chosen) > 1:
            ids = ", ".join(printable(a.id) for a in chosen)
            out.write(f"nowplaying: several accounts ({ids}); pick one with --account\n")
            return 2
        account = chosen[0]
        try:
            np = await rt.tokens.call(account.id, rt.client.currently_playing)
        except ReconnectRequired:
            out.write("Reconnect needed: run `nowplaying login` again.\n")
            return 1
        except SpotifyError as e:
            out.write(f"nowplaying: Spotify is unavailable ({type(e).__name__})\n")
            return 1
        out.write(describe_playing(np) + "\n")
        return 0


def describe_playing(np: NowPlaying) -> str:
    """One line for a terminal, every Spotify string made printable."""
    if not np.active:
        return "Nothing playing."
    if np.item is None:
        return "An ad is playing."
    symbol = "▶" if np.is_playing else "⏸"
    where = ""
    if np.progress_ms is not None and np.item.duration_ms:
        where = f" ({_mmss(np.progress_ms)} / {_mmss(np.item.duration_ms)})"
    return f"{symbol} {printable(np.item.title)} — {printable(np.item.artist)}{where}"


def _mmss(ms: int) -> str:
    return f"{ms // 60000}:{ms // 1000 % 60:02d}"


async def maintenance(settings: Settings, *, reseal: bool, out: TextIO) -> int:
    """``migrate`` (open the store, which migrates) and ``rotate-key`` (re-seal every secret)."""
    store = open_store(settings.nowplaying_database_url, cipher=make_cipher(settings))
    await store.open()
    try:
        if reseal:
            count = await store.reseal_all()
            out.write(
                f"re-encrypted {count} secret(s) (refresh tokens, source keys, push tokens)"
                " with the current key\n"
            )
        else:
            out.write("database schema is up to date\n")
    finally:
        await store.close()
    return 0


async def setup_flow(
    opts: SetupOptions,
    *,
    out: TextIO,
    login: bool | None,
    http: httpx.AsyncClient | None = None,
    ask: Ask | None = None,
    ask_secret: Ask | None = None,
    pasted: Callable[[], Awaitable[str]] | None = None,
) -> int:
    """``nowplaying setup``: write ``.env``, then (when asked to, or answered yes) log in."""
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient())
        code = await run_setup(opts, out=out, http=http, ask=ask, ask_secret=ask_secret)
        if code != 0:
            return code
        if opts.spotify is False:
            login = False
        elif login is None and opts.interactive and ask is not None:
            answer = ask("\nConnect your Spotify account now (nowplaying login)? [Y/n] ")
            login = answer.strip().lower() in {"", "y", "yes"}
        if not login:
            out.write(
                "\nNext: `nowplaying login` connects your account from this terminal, or"
                " `nowplaying serve` and open the site; `nowplaying doctor` checks everything.\n"
            )
            return 0
        out.write("\n")
        settings = load_settings(_env_file=opts.env_file)
        return await login_flow(settings, out=out, pasted=pasted, http=http)


def cmd_setup(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and not args.non_interactive
    opts = SetupOptions(
        env_file=Path(args.env_file),
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uri=args.setup_redirect,
        accounts_url=args.accounts_url,
        api_url=args.api_url,
        force=args.force,
        check=not args.no_check,
        interactive=interactive,
        spotify=False if args.no_spotify else None,
        lastfm_key=args.lastfm_key,
    )
    _logging(None, "WARNING")
    return asyncio.run(
        setup_flow(
            opts,
            out=sys.stdout,
            login=args.login,
            ask=input if interactive else None,
            ask_secret=getpass.getpass if interactive else None,
            pasted=read_stdin_line if interactive else None,
        )
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    env_file = Path(args.env_file)

    def load() -> Settings:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]

    _logging(None, "ERROR")
    return asyncio.run(run_doctor(load, out=sys.stdout, env_file=env_file))


def cmd_login(args: argparse.Namespace) -> int:
    settings = load_settings()
    _need_spotify_app(settings)
    _logging(settings, "WARNING")
    pasted = read_stdin_line if sys.stdin.isatty() else None
    return asyncio.run(login_flow(settings, out=sys.stdout, pasted=pasted))


def cmd_now(args: argparse.Namespace) -> int:
    settings = load_settings()
    _need_spotify_app(settings)
    _logging(settings, "WARNING")
    return asyncio.run(now_flow(settings, account_id=args.account, out=sys.stdout))


def cmd_migrate(args: argparse.Namespace) -> int:
    return asyncio.run(maintenance(load_settings(), reseal=False, out=sys.stdout))


def cmd_rotate_key(args: argparse.Namespace) -> int:
    return asyncio.run(maintenance(load_settings(), reseal=True, out=sys.stdout))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowplaying", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the widget server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (use with NOWPLAYING_REDIS_URL)"
    )
    serve.add_argument(
        "--http",
        choices=HTTP_PARSERS,
        default="auto",
        help="HTTP parser: httptools when installed (auto), or h11 (pure Python)",
    )
    serve.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="event loop: uvloop when installed (auto), or asyncio (pure Python)",
    )
    serve.set_defaults(func=cmd_serve)

    _add_simulator(sub)
    _add_setup(sub)

    doctor = sub.add_parser(
        "doctor",
        help="check settings, database, Redis, Spotify, the clock and the stored accounts",
        description="One line per finding with its fix; exits 1 when something is wrong.",
    )
    doctor.add_argument("--env-file", default=".env")
    doctor.set_defaults(func=cmd_doctor)

    login = sub.add_parser("login", help="connect a Spotify account from a terminal")
    login.set_defaults(func=cmd_login)
    now = sub.add_parser("now", help="print what a connected account is playing")
    now.add_argument("--account", help="the Spotify user id, when several are connected")
    now.set_defaults(func=cmd_now)
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(func=cmd_migrate)
    rotate = sub.add_parser(
        "rotate-key",
        help="re-encrypt stored tokens with NOWPLAYING_SECRET_KEY (old keys in"
        " NOWPLAYING_OLD_SECRET_KEYS)",
    )
    rotate.set_defaults(func=cmd_rotate_key)
    return parser


def _add_simulator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nowplaying simulator``: the simulated Spotify on its own."""
    sim = sub.add_parser("simulator", help="run the simulated Spotify on its own")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8888)
    sim.add_argument("--client-id", default="nowplaying-demo")
    sim.add_argument("--client-secret", default="nowplaying-demo-secret")
    sim.add_argument(
        "--redirect-uri",
        action="append",
        default=None,
        help="a registered redirect URI (repeatable); default http://127.0.0.1:8000/callback",
    )
    sim.add_argument("--refresh-mode", choices=["omit", "rotate"], default="omit")
    sim.add_argument(
        "--users", type=int, default=0, help="extra simulated users user1..userN (besides demo)"
    )
    sim.set_defaults(func=cmd_simulator)


def _add_setup(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``nowplaying setup``: write ``.env`` for a Spotify app."""
    setup = sub.add_parser(
        "setup",
        help="write .env for your Spotify app (checks the client id and secret with Spotify)",
        description="Asks for (or takes) your Spotify app's client id and secret, checks them"
        " with Spotify's token endpoint, generates NOWPLAYING_SECRET_KEY and writes .env (mode"
        " 0600). SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET from the environment are used too.",
    )
    setup.add_argument("--client-id")
    setup.add_argument(
        "--client-secret", help="(or SPOTIFY_CLIENT_SECRET, which stays out of shell history)"
    )
    setup.add_argument(
        "--redirect-uri", dest="setup_redirect", help="default http://127.0.0.1:8000/callback"
    )
    setup.add_argument("--env-file", default=".env")
    setup.add_argument("--accounts-url", help=argparse.SUPPRESS)
    setup.add_argument("--api-url", help=argparse.SUPPRESS)
    setup.add_argument("--no-spotify", action="store_true", help="a server without Spotify")
    setup.add_argument("--lastfm-key", help="a Last.fm API key (its secret: LASTFM_API_SECRET)")
    setup.add_argument("--force", action="store_true", help="update an existing env file")
    setup.add_argument(
        "--no-check", action="store_true", help="write without asking Spotify (offline)"
    )
    setup.add_argument(
        "--non-interactive", action="store_true", help="never ask; missing values are errors"
    )
    setup.add_argument(
        "--login",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run `nowplaying login` afterwards (asked when interactive)",
    )
    setup.set_defaults(func=cmd_setup)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "redirect_uri", "unset") is None:
        args.redirect_uri = ["http://127.0.0.1:8000/callback"]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

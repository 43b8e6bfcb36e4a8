"""The ``nowplaying`` command: ``serve`` the widget server, run a stand-alone ``simulator``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from .clock import SystemClock
from .config import Settings
from .simulator import Simulator
from .web import create_app

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


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
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
    _logging(settings.nowplaying_log_level)
    if settings.demo:
        log.warning("demo mode: no SPOTIFY_CLIENT_ID set, serving the built-in simulated Spotify")
    log.info("open %s", settings.spotify_redirect_uri.rsplit("/callback", 1)[0] + "/")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level=settings.nowplaying_log_level.lower(),
        proxy_headers=False,
    )
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    _logging("INFO")
    sim = Simulator(
        clock=SystemClock(),
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uris=tuple(args.redirect_uri),
        refresh_mode=args.refresh_mode,
    )
    print(
        f"simulated Spotify on http://{args.host}:{args.port}  "
        f"(SPOTIFY_ACCOUNTS_URL=http://{args.host}:{args.port} "
        f"SPOTIFY_API_URL=http://{args.host}:{args.port}/v1)",
        flush=True,
    )
    uvicorn.run(sim.app, host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowplaying", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the widget server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

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
    sim.set_defaults(func=cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "redirect_uri", "unset") is None:
        args.redirect_uri = ["http://127.0.0.1:8000/callback"]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

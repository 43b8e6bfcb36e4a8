"""``nowplaying setup``: from the sources' keys to a working ``.env``.

It asks which sources to use: Spotify (an app's id and secret, checked with Spotify now, not at
the first login; or none: ``NOWPLAYING_SPOTIFY=false``), Last.fm (an API key and secret,
checked with a signed ``auth.getToken``), ListenBrainz (no key; its API is checked for an
answer). An existing ``NOWPLAYING_SECRET_KEY`` is kept: replacing it would lock every stored
account out.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from nowplaying.cli.checks import Check, check_lastfm, check_listenbrainz
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import InvalidClient, SpotifyError

DEFAULT_REDIRECT = "http://127.0.0.1:8000/callback"
DEFAULT_ACCOUNTS = "https://accounts.spotify.com"
DEFAULT_API = "https://api.spotify.com/v1"
DEFAULT_LASTFM_API = "https://ws.audioscrobbler.com/2.0/"
DEFAULT_LISTENBRAINZ = "https://api.listenbrainz.org"
_LOOPBACK = frozenset({"127.0.0.1", "::1"})

Ask = Callable[[str], str]
"""Reads one answer from the person at the terminal (``input``; ``getpass`` for the secret)."""


def new_secret_key() -> str:
    """A fresh ``NOWPLAYING_SECRET_KEY``: 64 URL-safe characters (384 random bits)."""
    return secrets.token_urlsafe(48)


def redirect_problem(uri: str) -> str | None:
    """Why Spotify would refuse ``uri`` as a redirect URI (None: its shape is fine).

    Spotify's 2025 rules: https, except loopback, which must be an IP literal
    (``http://127.0.0.1:PORT/...``, ``http://[::1]:PORT/...``); ``localhost`` is refused.
    This app also needs its path to be ``/callback``.
    """
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return f"{uri!r} is not a URL"
    host = parts.hostname or ""
    if parts.scheme not in {"http", "https"} or not host:
        return f"{uri!r} is not an absolute http(s) URL"
    if host == "localhost":
        return "Spotify refuses 'localhost' in redirect URIs: use http://127.0.0.1:PORT/callback"
    if parts.scheme == "http" and host not in _LOOPBACK:
        return f"Spotify refuses plain http for {host}: use https (or 127.0.0.1 on this machine)"
    if parts.path != "/callback":
        return f"the redirect URI's path must be /callback (this server's), not {parts.path!r}"
    if parts.query or parts.fragment:
        return "the redirect URI must have no query or fragment"
    return None


def dev_mode_rules(redirect_uri: str) -> str:
    """What to do in the Spotify Developer Dashboard, for a person reading a terminal."""
    return (
        "In the Spotify Developer Dashboard (https://developer.spotify.com/dashboard), in your"
        " app's settings:\n"
        f"  1. Add this redirect URI exactly: {redirect_uri}\n"
        "  2. Development mode (nearly every personal app): the app's owner needs an active"
        " Premium subscription,\n"
        "     and at most 5 Spotify users can use it: add each one's e-mail address under"
        " User Management.\n"
        "  3. Redirect URIs must be https, or http on 127.0.0.1 / [::1] (never 'localhost').\n"
    )


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of an env file (quotes removed); empty when there is none."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def merge_env(existing: str, values: Mapping[str, str]) -> str:
    """``existing`` env-file text with ``values`` set: lines for those keys replaced in place,
    new keys appended, every other line (comments, other settings) kept."""
    pending = dict(values)
    out = []
    for line in existing.splitlines():
        key = line.strip().partition("=")[0].strip().removeprefix("export ").strip()
        if key in pending and "=" in line and not line.lstrip().startswith("#"):
            out.append(f"{key}={_quote(pending.pop(key))}")
        else:
            out.append(line)
    if pending and out and out[-1].strip():
        out.append("")
    out.extend(f"{key}={_quote(value)}" for key, value in pending.items())
    return "\n".join(out) + "\n"


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "-_.:/@+=,[]" for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), also when replacing it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def check_credentials(
    http: httpx.AsyncClient, *, accounts_url: str, client_id: str, client_secret: str
) -> Check:
    """Ask Spotify's token endpoint for an app token (client credentials) with these values."""
    client = SpotifyClient(
        http,
        client_id=client_id,
        client_secret=SecretStr(client_secret),
        accounts_url=accounts_url,
    )
    try:
        await client.check_credentials()
    except InvalidClient as e:
        detail = str(e).removeprefix("invalid_client: ") or "Invalid client"
        if "secret" in detail.lower():
            hint = "the client secret is wrong (copy it again: 'View client secret')"
        else:
            hint = "Spotify does not know this client id"
        return Check(False, f"Spotify refused the credentials ({detail}): {hint}", wrong=True)
    except SpotifyError as e:
        return Check(False, f"could not check with Spotify at {accounts_url}: {e}")
    return Check(True, "Spotify accepted the client id and secret")


@dataclass
class SetupOptions:
    """What ``nowplaying setup`` was given on its command line (None: ask, or read the env)."""

    env_file: Path
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uri: str | None = None
    accounts_url: str | None = None
    api_url: str | None = None
    force: bool = False
    check: bool = True
    interactive: bool = False
    spotify: bool | None = None
    """Use Spotify (None: ask, yes by default); False writes ``NOWPLAYING_SPOTIFY=false``."""
    lastfm_key: str | None = None
    lastfm_secret: str | None = None
    lastfm_url: str | None = None
    listenbrainz_url: str | None = None


@dataclass(frozen=True)
class _Found:
    """The settings ``setup`` found or was told (None where nothing was)."""

    client_id: str | None
    client_secret: str | None
    redirect: str
    accounts_url: str
    api_url: str
    secret_key: str | None
    spotify: bool = True
    lastfm_key: str | None = None
    lastfm_secret: str | None = None
    lastfm_url: str = DEFAULT_LASTFM_API
    listenbrainz_url: str = DEFAULT_LISTENBRAINZ
    listenbrainz: bool = False
    """Check ListenBrainz: asked, or its URL given (it needs no key: always offered)."""


def _collect(
    opts: SetupOptions,
    environ: Mapping[str, str],
    ask: Ask | None,
    ask_secret: Ask | None,
) -> _Found:
    """Each value from the options, then the environment, then the env file, then a question."""
    existing = read_env(opts.env_file)

    def known(flag: str | None, name: str) -> str | None:
        return flag or environ.get(name) or existing.get(name) or None

    def value(flag: str | None, name: str, question: str, *, secret: bool = False) -> str | None:
        found = known(flag, name)
        if found is None and opts.interactive:
            reader = (ask_secret if secret else ask) or ask
            if reader is not None:
                found = reader(question).strip() or None
        return found

    spotify = _spotify_wanted(opts, known(None, "NOWPLAYING_SPOTIFY"), ask)
    client_id = value(opts.client_id, "SPOTIFY_CLIENT_ID", "Client ID: ") if spotify else None
    client_secret = (
        value(opts.client_secret, "SPOTIFY_CLIENT_SECRET", "Client secret: ", secret=True)
        if spotify
        else None
    )
    lastfm_key = value(opts.lastfm_key, "LASTFM_API_KEY", "Last.fm API key (Enter: no Last.fm): ")
    lastfm_secret = (
        value(opts.lastfm_secret, "LASTFM_API_SECRET", "Last.fm shared secret: ", secret=True)
        if lastfm_key
        else None
    )
    lb_url = known(opts.listenbrainz_url, "LISTENBRAINZ_API_URL")
    redirect = known(opts.redirect_uri, "SPOTIFY_REDIRECT_URI")
    if redirect is None and opts.interactive and ask is not None:
        redirect = ask(f"Redirect URI [{DEFAULT_REDIRECT}]: ").strip() or None
    return _Found(
        client_id=client_id,
        client_secret=client_secret,
        redirect=redirect or DEFAULT_REDIRECT,
        accounts_url=(known(opts.accounts_url, "SPOTIFY_ACCOUNTS_URL") or DEFAULT_ACCOUNTS).rstrip(
            "/"
        ),
        api_url=(known(opts.api_url, "SPOTIFY_API_URL") or DEFAULT_API).rstrip("/"),
        secret_key=known(None, "NOWPLAYING_SECRET_KEY"),
        spotify=spotify,
        lastfm_key=lastfm_key,
        lastfm_secret=lastfm_secret,
        lastfm_url=known(opts.lastfm_url, "LASTFM_API_URL") or DEFAULT_LASTFM_API,
        listenbrainz_url=(lb_url or DEFAULT_LISTENBRAINZ).rstrip("/"),
        listenbrainz=lb_url is not None or _yes(opts, ask, "Check that ListenBrainz answers?"),
    )


def _yes(opts: SetupOptions, ask: Ask | None, question: str) -> bool:
    """The person's yes (the default) in an interactive setup; no otherwise."""
    if not opts.interactive or ask is None:
        return False
    return ask(f"{question} [Y/n] ").strip().lower() in {"", "y", "yes"}


def _spotify_wanted(opts: SetupOptions, stored: str | None, ask: Ask | None) -> bool:
    """Whether Spotify is used: the option, else the person's answer, else the env's setting."""
    if opts.spotify is not None:
        return opts.spotify
    if opts.interactive and ask is not None:
        opts.spotify = _yes(opts, ask, "Use Spotify (an app; in development mode, Premium)?")
        return opts.spotify
    return (stored or "true").strip().lower() not in {"false", "0", "no", "off"}


def _may_write(opts: SetupOptions, ask: Ask | None, out: TextIO) -> bool:
    """Whether the env file may be written: it is new, ``--force`` was given, or the person
    at the terminal says so."""
    if not opts.env_file.exists() or opts.force:
        return True
    if opts.interactive and ask is not None:
        answer = ask(f"{opts.env_file} exists; update it (other lines are kept)? [y/N] ")
        if answer.strip().lower() in {"y", "yes"}:
            return True
    out.write(
        f"nowplaying setup: {opts.env_file} exists and was left unchanged"
        " (--force updates it, keeping its other lines and its secret key)\n"
    )
    return False


def _write(opts: SetupOptions, found: _Found) -> bool:
    """Merge the settings into the env file (mode 0600); whether an existing key was kept."""
    key = found.secret_key
    kept_key = key is not None and len(key) >= 32
    values = {
        "SPOTIFY_REDIRECT_URI": found.redirect,
        "NOWPLAYING_SECRET_KEY": key if kept_key and key else new_secret_key(),
        "NOWPLAYING_SPOTIFY": "true" if found.spotify else "false",
    }
    if found.spotify and found.client_id and found.client_secret:
        values["SPOTIFY_CLIENT_ID"] = found.client_id
        values["SPOTIFY_CLIENT_SECRET"] = found.client_secret
    if found.lastfm_key and found.lastfm_secret:
        values["LASTFM_API_KEY"] = found.lastfm_key
        values["LASTFM_API_SECRET"] = found.lastfm_secret
    if found.lastfm_url != DEFAULT_LASTFM_API:
        values["LASTFM_API_URL"] = found.lastfm_url
    if found.listenbrainz_url != DEFAULT_LISTENBRAINZ:
        values["LISTENBRAINZ_API_URL"] = found.listenbrainz_url
    if found.accounts_url != DEFAULT_ACCOUNTS:
        values["SPOTIFY_ACCOUNTS_URL"] = found.accounts_url
    if found.api_url != DEFAULT_API:
        values["SPOTIFY_API_URL"] = found.api_url
    text = opts.env_file.read_text(encoding="utf-8") if opts.env_file.exists() else ""
    write_private(opts.env_file, merge_env(text, values))
    return kept_key


async def run_setup(
    opts: SetupOptions,
    *,
    out: TextIO,
    http: httpx.AsyncClient,
    ask: Ask | None = None,
    ask_secret: Ask | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Collect, check and write the settings; 0 when ``.env`` was written.

    Exit codes: 1 a check failed, 2 a value is missing or malformed, 3 the env file exists
    and may not be replaced.
    """
    found = _collect(opts, environ, ask, ask_secret)
    if (problem := _missing(found)) is not None:
        out.write(f"nowplaying setup: {problem}\n")
        return 2
    if (problem := redirect_problem(found.redirect)) is not None:
        out.write(f"nowplaying setup: bad redirect URI: {problem}\n")
        return 2
    if not _may_write(opts, ask, out):
        return 3
    if opts.check and not await _checked(found, http, out):
        return 1
    kept_key = _write(opts, found)
    out.write(
        f"wrote {opts.env_file} (mode 0600; "
        + ("kept the existing NOWPLAYING_SECRET_KEY" if kept_key else "a new NOWPLAYING_SECRET_KEY")
        + ")\n"
        + (f"\n{dev_mode_rules(found.redirect)}" if found.spotify else _without_spotify(found))
    )
    return 0


def _missing(found: _Found) -> str | None:
    """What is missing for the sources chosen (None: nothing)."""
    if found.spotify:
        missing = [
            name
            for name, v in (
                ("--client-id", found.client_id),
                ("--client-secret", found.client_secret),
            )
            if not v
        ]
        if missing:
            return (
                f"missing {' and '.join(missing)} (or SPOTIFY_CLIENT_ID / SPOTIFY_CLIENT_SECRET):"
                " both are on your app's page in the Spotify Developer Dashboard (--no-spotify"
                " sets up a server without Spotify)"
            )
    if found.lastfm_key and not found.lastfm_secret:
        return "missing LASTFM_API_SECRET: the shared secret beside the Last.fm API key"
    return None


async def _checked(found: _Found, http: httpx.AsyncClient, out: TextIO) -> bool:
    """Check each chosen source's values with it; False (after saying why) when one is refused
    or cannot be checked. ListenBrainz needs no key: an unreachable one is only a warning."""
    checks: list[Check] = []
    if found.spotify and found.client_id and found.client_secret:
        spotify = await check_credentials(
            http,
            accounts_url=found.accounts_url,
            client_id=found.client_id,
            client_secret=found.client_secret,
        )
        checks.append(spotify)
    if found.lastfm_key and found.lastfm_secret:
        fm = await check_lastfm(
            http, api_url=found.lastfm_url, api_key=found.lastfm_key, api_secret=found.lastfm_secret
        )
        checks.append(fm)
    for check in checks:
        out.write(("ok: " if check.ok else "problem: ") + check.message + "\n")
        if not check.ok:
            out.write(
                "  .env was not written"
                + ("" if check.wrong else " (--no-check writes it without asking)")
                + "\n"
            )
            return False
    if found.listenbrainz:
        lb = await check_listenbrainz(http, api_url=found.listenbrainz_url)
        out.write(("ok: " if lb.ok else "warning: ") + lb.message + "\n")
    return True


def _without_spotify(found: _Found) -> str:
    offered = "Last.fm and ListenBrainz" if found.lastfm_key else "ListenBrainz"
    return (
        f"\nNo Spotify (NOWPLAYING_SPOTIFY=false): owners sign in with {offered}, and any player"
        " can push what it plays.\n"
    )

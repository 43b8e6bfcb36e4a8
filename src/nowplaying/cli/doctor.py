"""``nowplaying doctor``: every check an installation needs, one line per finding with its fix.

A check is skipped when one it needs has failed. Nothing is changed but what a running server
changes too: probing an account may refresh its access token. Exit status 1 when a check failed
(warnings do not fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from nowplaying.cli.checks import check_lastfm, check_listenbrainz
from nowplaying.cli.setup import redirect_problem
from nowplaying.clock import Clock, SystemClock
from nowplaying.config import Settings
from nowplaying.coord.keys import Keys
from nowplaying.models import RATE_LIMIT
from nowplaying.ops.alerts import GRANT_LIFETIME
from nowplaying.runtime import make_cipher, open_runtime
from nowplaying.sources.spotify.client import SpotifyClient
from nowplaying.sources.spotify.errors import (
    Forbidden,
    InvalidClient,
    RateLimited,
    ReconnectRequired,
    SpotifyError,
)
from nowplaying.store import Account, Store, StoreError, open_store

MAX_SKEW = 30.0
"""Seconds of clock difference from Spotify that fail the check (tokens, pauses and schedules
are computed on this machine's clock)."""
EXPIRY_WARNING = 14 * 86400
MAX_PROBES = 5
"""Accounts read from Spotify at most (a development-mode app has at most 5 users)."""

Resolve = Callable[[str], Awaitable[object]]


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report."""

    level: Level
    check: str
    message: str
    fix: str | None = None

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.level:<4}  {self.check}: {self.message}{fix}"


def safe_url(url: str) -> str:
    """``url`` without its user info (a database or Redis password never prints)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparseable URL)"
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def _resolve(host: str) -> object:
    return await asyncio.get_running_loop().getaddrinfo(host, None)


class Doctor:
    """Runs the checks; :attr:`findings` collects what they found."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        clock: Clock | None = None,
        resolve: Resolve = _resolve,
        env_file: Path = Path(".env"),
    ) -> None:
        self.http = http
        self.clock = clock or SystemClock()
        self.resolve = resolve
        self.env_file = env_file
        self.findings: list[Finding] = []
        self.paused = False
        """A stored pause is in force: no authenticated call to Spotify is made."""

    def add(self, level: Level, check: str, message: str, fix: str | None = None) -> None:
        self.findings.append(Finding(level, check, message, fix))

    @property
    def failed(self) -> bool:
        return any(f.level is Level.FAIL for f in self.findings)

    # -- the run ---------------------------------------------------------------------------

    async def run(self, load: Callable[[], Settings]) -> int:
        settings = self.check_settings(load)
        if settings is None:
            return 1
        self.check_env_file()
        self.check_redirect(settings)
        accounts = await self.check_store(settings)
        await self.check_redis(settings)
        if settings.demo:
            self.add(
                Level.WARN,
                "spotify",
                "demo mode (no SPOTIFY_CLIENT_ID): the built-in simulated Spotify is served",
                "run `nowplaying setup` to use your Spotify app",
            )
            return 1 if self.failed else 0
        await self.check_sources(settings)
        if not settings.nowplaying_spotify:
            self.add(Level.OK, "spotify", "not used (NOWPLAYING_SPOTIFY=false)")
            return 1 if self.failed else 0
        reachable = await self.check_reach(settings)
        if self.paused:
            self.add(
                Level.WARN,
                "credentials",
                "not checked during Spotify's pause (a call would extend it), nor the accounts",
            )
            return 1 if self.failed else 0
        credentials = reachable and await self.check_credentials(settings)
        if credentials and accounts:
            await self.probe_accounts(settings, accounts)
        return 1 if self.failed else 0

    async def check_sources(self, settings: Settings) -> None:
        """Last.fm's key and secret when configured; ListenBrainz's API answering (a warning:
        owners may still use Spotify, Last.fm and pushes)."""
        if settings.lastfm_configured:
            fm = await check_lastfm(
                self.http,
                api_url=settings.lastfm_api_url,
                api_key=settings.lastfm_key,
                api_secret=settings.lastfm_secret.get_secret_value(),
            )
            fix = "copy LASTFM_API_KEY and LASTFM_API_SECRET again from last.fm/api/accounts"
            self.add(
                Level.OK if fm.ok else Level.FAIL, "lastfm", fm.message, None if fm.ok else fix
            )
        else:
            self.add(Level.OK, "lastfm", "not configured (LASTFM_API_KEY): owners cannot use it")
        lb = await check_listenbrainz(self.http, api_url=settings.listenbrainz_api_url)
        fix = "check outbound HTTPS to ListenBrainz, or LISTENBRAINZ_API_URL"
        self.add(
            Level.OK if lb.ok else Level.WARN, "listenbrainz", lb.message, None if lb.ok else fix
        )

    def check_settings(self, load: Callable[[], Settings]) -> Settings | None:
        try:
            settings = load()
        except (ValidationError, ValueError) as e:
            for problem in _problems(e):
                self.add(
                    Level.FAIL,
                    "settings",
                    problem,
                    "edit .env (or run `nowplaying setup --force`)",
                )
            return None
        self.add(Level.OK, "settings", "read" + (" (demo mode)" if settings.demo else ""))
        return settings

    def check_env_file(self) -> None:
        if not self.env_file.exists():
            return
        mode = stat.S_IMODE(self.env_file.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            self.add(
                Level.WARN,
                "settings",
                f"{self.env_file} holds secrets but others may read it (mode {mode:04o})",
                f"chmod 600 {self.env_file}",
            )

    def check_redirect(self, settings: Settings) -> None:
        uri = settings.spotify_redirect_uri
        problem = redirect_problem(uri)
        if problem is not None:
            self.add(
                Level.FAIL,
                "redirect URI",
                problem,
                "set SPOTIFY_REDIRECT_URI and register the same URI in the Developer Dashboard",
            )
        else:
            self.add(Level.OK, "redirect URI", f"{uri} (register exactly this in the Dashboard)")

    async def check_store(self, settings: Settings) -> list[Account] | None:
        url = settings.nowplaying_database_url
        path = settings.sqlite_path
        if path is not None and str(path) != ":memory:" and not path.exists():
            self.add(
                Level.WARN,
                "database",
                f"{path} does not exist yet",
                "`nowplaying migrate` creates it (so does the first start)",
            )
            return None
        try:
            store = open_store(url, cipher=make_cipher(settings))
            await store.open()
        except StoreError as e:
            self.add(
                Level.FAIL,
                "database",
                f"cannot open {safe_url(url)} ({_cause(e)})",
                "check NOWPLAYING_DATABASE_URL and that the database server runs",
            )
            return None
        try:
            accounts = await store.list_accounts()
            await self._check_pause(store)
        except StoreError as e:
            self.add(Level.FAIL, "database", f"cannot read accounts ({_cause(e)})")
            return None
        finally:
            with contextlib.suppress(StoreError):
                await store.close()
        self.add(Level.OK, "database", f"{safe_url(url)}: {len(accounts)} account(s)")
        self._check_accounts(accounts)
        return accounts

    def _check_accounts(self, accounts: list[Account]) -> None:
        now = self.clock.now()
        locked = [a for a in accounts if a.key_missing]
        if locked:
            self.add(
                Level.FAIL,
                "secret key",
                f"{len(locked)} of {len(accounts)} account(s) were sealed with a key that is not"
                " configured (they read as 'reconnect needed'; nothing was deleted)",
                "add the previous key to NOWPLAYING_OLD_SECRET_KEYS (a JSON list) and restart,"
                " or ask their owners to reconnect (docs/deploy.md#rotating-the-secret-key)",
            )
        elif accounts:
            self.add(Level.OK, "secret key", "opens every stored account")
        for account in accounts:
            name = _who(account)
            if account.reconnect_reason == "revoked":
                self.add(
                    Level.WARN,
                    "account",
                    f"{name}: Spotify no longer accepts its grant",
                    "its owner reconnects (open the site and Connect, or `nowplaying login`)",
                )
            elif not account.key_missing:
                left = account.consented_at + GRANT_LIFETIME - now
                if left < EXPIRY_WARNING:
                    days = max(0, int(left // 86400))
                    self.add(
                        Level.WARN,
                        "account",
                        f"{name}: Spotify ends its grant in {days} day(s) (six months after"
                        " consent)",
                        "its owner reconnects before then",
                    )

    async def _check_pause(self, store: Store) -> None:
        pause = await store.get_pause()
        if pause is not None:
            self._report_pause(pause.until, pause.reason)

    def _report_pause(self, until: float, reason: str) -> None:
        now = self.clock.now()
        if until <= now:
            return
        self.paused = True
        when = datetime.fromtimestamp(until, UTC)
        self.add(
            Level.WARN,
            "rate limit",
            f"Spotify paused this app ({reason}) until {when:%Y-%m-%d %H:%M} UTC"
            f" ({(until - now) / 3600:.1f} h left); nothing is polled until then",
            "wait: calling Spotify meanwhile extends the pause (restarts keep honouring it)",
        )

    async def check_redis(self, settings: Settings) -> None:
        url = settings.nowplaying_redis_url
        if not url:
            return
        from nowplaying.coord.link import FAILURES, RedisLink  # noqa: PLC0415 - redis-py only here

        try:
            link = RedisLink(url, socket_timeout=2)
        except ValueError as e:  # not a Redis URL
            self._redis_down(url, e)
            return
        try:
            await link.redis.ping()  # a check: the error is the finding, not a fallback
            until, reason = await link.redis.mget(Keys.PAUSE, Keys.PAUSE_REASON)
        except (*FAILURES, ValueError) as e:
            self._redis_down(url, e)
            return
        finally:
            await link.close()
        self.add(Level.OK, "redis", safe_url(url))
        if until is not None and not self.paused:
            # The instances' shared pause (coord/redis), when the store has none in force.
            with contextlib.suppress(ValueError):
                self._report_pause(float(until), str(reason or RATE_LIMIT))

    def _redis_down(self, url: str, e: Exception) -> None:
        self.add(
            Level.FAIL,
            "redis",
            f"cannot reach {safe_url(url)} ({type(e).__name__})",
            "start Redis or fix NOWPLAYING_REDIS_URL (or unset it for one process)",
        )

    async def check_reach(self, settings: Settings) -> bool:
        """DNS for both Spotify hosts, then one HTTP request (TLS) whose Date is compared."""
        ok = True
        for url in (settings.spotify_accounts_url, settings.spotify_api_url):
            host = urlsplit(url).hostname or ""
            try:
                await self.resolve(host)
            except (OSError, UnicodeError) as e:
                ok = False
                self.add(
                    Level.FAIL,
                    "spotify",
                    f"cannot resolve {host} ({type(e).__name__}: {e})",
                    "check this machine's DNS (/etc/resolv.conf) and outbound network",
                )
        if not ok:
            return False
        url = f"{settings.spotify_api_url}/me"
        started = self.clock.now()
        try:
            response = await self.http.get(url, timeout=httpx.Timeout(10.0, connect=5.0))
        except httpx.HTTPError as e:
            tls = _tls_error(e)
            self.add(
                Level.FAIL,
                "spotify",
                f"cannot reach {safe_url(url)}: "
                + (f"TLS failed ({tls})" if tls else type(e).__name__),
                "install CA certificates (ca-certificates) or fix the HTTPS proxy"
                if tls
                else "check outbound HTTPS (firewall, proxy) to Spotify",
            )
            return False
        elapsed = self.clock.now() - started
        if response.status_code >= 500:
            self.add(Level.WARN, "spotify", f"Spotify answered {response.status_code} just now")
        else:
            self.add(Level.OK, "spotify", f"reached {urlsplit(url).netloc}")
        self._check_skew(response, started + elapsed / 2)
        return True

    def _check_skew(self, response: httpx.Response, at: float) -> None:
        raw = response.headers.get("date")
        try:
            theirs = parsedate_to_datetime(raw).timestamp() if raw else None
        except (TypeError, ValueError):
            theirs = None
        if theirs is None:
            self.add(Level.WARN, "clock", "Spotify's answer carried no readable Date header")
            return
        skew = at - theirs
        # Date has one-second resolution: up to a second either way is no skew at all.
        if abs(skew) > MAX_SKEW:
            self.add(
                Level.FAIL,
                "clock",
                f"this machine's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'}"
                " Spotify's",
                "enable time synchronisation (`timedatectl set-ntp true`, chrony or ntpd)",
            )
        else:
            self.add(Level.OK, "clock", f"within {max(1.0, abs(skew)):.0f} s of Spotify's")

    async def check_credentials(self, settings: Settings) -> bool:
        client = SpotifyClient(
            self.http,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            accounts_url=settings.spotify_accounts_url,
            api_url=settings.spotify_api_url,
        )
        try:
            await client.check_credentials()
        except InvalidClient as e:
            self.add(
                Level.FAIL,
                "credentials",
                f"Spotify refused the client id or secret ({e})",
                "copy them again from the Developer Dashboard: `nowplaying setup --force`",
            )
            return False
        except RateLimited as e:
            self.add(Level.WARN, "credentials", f"not checked: {e}")
            return False
        except SpotifyError as e:
            self.add(Level.WARN, "credentials", f"not checked: Spotify did not answer ({e})")
            return False
        self.add(Level.OK, "credentials", "Spotify accepted the client id and secret")
        return True

    async def probe_accounts(self, settings: Settings, accounts: list[Account]) -> None:
        """One profile read per usable account: what Spotify says about each."""
        usable = [a for a in accounts if a.reconnect_reason is None][:MAX_PROBES]
        if not usable:
            return
        async with open_runtime(
            settings, public_origin=_origin(settings), http=self.http, clock=self.clock
        ) as rt:
            for account in usable:
                name = _who(account)
                try:
                    await rt.tokens.call(account.id, rt.client.me)
                except Forbidden as e:
                    self.add(Level.FAIL, "account", f"{name}: {e.fix}", None)
                except ReconnectRequired:
                    self.add(
                        Level.WARN,
                        "account",
                        f"{name}: Spotify no longer accepts its grant",
                        "its owner reconnects",
                    )
                except RateLimited as e:
                    self.add(Level.WARN, "account", f"{name}: not checked ({e})")
                    return
                except (SpotifyError, StoreError) as e:
                    self.add(Level.WARN, "account", f"{name}: not checked ({type(e).__name__})")
                else:
                    self.add(Level.OK, "account", f"{name}: Spotify answers for it")


def _origin(settings: Settings) -> str:
    parts = urlsplit(settings.spotify_redirect_uri)
    return f"{parts.scheme}://{parts.netloc}"


def _who(account: Account) -> str:
    return f"{account.display_name!r} ({account.id})"


def _cause(e: BaseException) -> str:
    cause = e.__cause__ or e.__context__
    return type(cause).__name__ if cause is not None else str(e)[:120]


def _tls_error(e: BaseException) -> str | None:
    """The TLS error under an httpx error, if that is what it was."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return getattr(seen, "reason", None) or type(seen).__name__
        if "SSL" in type(seen).__name__ or "CERTIFICATE" in str(seen).upper():
            return str(seen)[:120]
        seen = seen.__cause__ or seen.__context__
    return None


def _problems(e: Exception) -> list[str]:
    if isinstance(e, ValidationError):
        return [
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        ]
    return [str(e)]


async def run_doctor(
    load: Callable[[], Settings],
    *,
    out: TextIO,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    resolve: Resolve = _resolve,
    env_file: Path = Path(".env"),
) -> int:
    """Run every check, print one line per finding, return the exit status."""
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient())
        doctor = Doctor(http=http, clock=clock, resolve=resolve, env_file=env_file)
        code = await doctor.run(load)
    for finding in doctor.findings:
        out.write(finding.line() + "\n")
    problems = sum(1 for f in doctor.findings if f.level is Level.FAIL)
    warnings = sum(1 for f in doctor.findings if f.level is Level.WARN)
    out.write(
        f"\n{problems} problem(s), {warnings} warning(s)\n"
        if problems or warnings
        else "\nall good\n"
    )
    return code

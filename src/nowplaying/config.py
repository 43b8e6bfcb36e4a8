"""Settings, read once from the environment and ``.env``.

Secrets are :class:`pydantic.SecretStr` so they never print. With no ``SPOTIFY_CLIENT_ID`` the
server runs in demo mode against the built-in simulated Spotify; outside demo mode a missing or
placeholder secret refuses to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDERS = frozenset({"", "changethis", "change-me", "secret", "xxx"})
DEMO_CLIENT_ID = "nowplaying-demo"
DEMO_CLIENT_SECRET = "nowplaying-demo-secret"
DEMO_SECRET_KEY = "nowplaying-demo-key-not-for-production"
DEMO_LASTFM_API_KEY = "nowplaying-demo-lastfm"
DEMO_LASTFM_API_SECRET = "nowplaying-demo-lastfm-secret"
GRIP_PLACEHOLDERS = PLACEHOLDERS | {"changeme"}
"""Pushpin's shipped ``sig_key`` is ``changeme``."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(ValueError):
    """The settings cannot run a server; the message says what to set."""


class Settings(BaseSettings):
    """Every setting the server reads. Field names map to the upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    spotify_client_id: str = ""
    spotify_client_secret: SecretStr = SecretStr("")
    spotify_redirect_uri: str = "http://127.0.0.1:8000/callback"
    spotify_accounts_url: str = "https://accounts.spotify.com"
    spotify_api_url: str = "https://api.spotify.com/v1"
    nowplaying_spotify: bool = True
    """False: this server runs without Spotify (no Spotify app needed, and no demo mode):
    owners sign in with Last.fm or ListenBrainz and push from any player.
    ``SPOTIFY_REDIRECT_URI`` still names the site's public origin."""

    lastfm_api_key: str = ""
    """A Last.fm API account's key; with its secret, owners may connect Last.fm (pull)."""
    lastfm_api_secret: SecretStr = SecretStr("")
    """The same API account's shared secret, which signs ``auth.getSession`` (``api_sig``)."""
    lastfm_api_url: str = "https://ws.audioscrobbler.com/2.0/"
    lastfm_auth_url: str = "https://www.last.fm/api/auth/"
    listenbrainz_api_url: str = "https://api.listenbrainz.org"
    """ListenBrainz's API root; owners connect with their user token (no app key needed)."""
    coverart_url: str = "https://coverartarchive.org"
    """The Cover Art Archive, for covers of tracks that name a release MBID."""
    nowplaying_lastfm_seconds_per_account: float = Field(default=2.0, gt=0)
    """A watched Last.fm account is asked at most once per this many seconds."""
    nowplaying_lastfm_calls_per_second: float = Field(default=4.0, gt=0)
    """Last.fm calls the app may make per second, across every account and instance."""
    nowplaying_listenbrainz_calls_per_second: float = Field(default=1.0, gt=0)
    """ListenBrainz calls the app may make per second (its rate-limit headers may say fewer)."""

    nowplaying_secret_key: SecretStr = SecretStr("")
    nowplaying_old_secret_keys: list[SecretStr] = Field(default_factory=list)
    nowplaying_database_url: str = "sqlite:///nowplaying.sqlite3"
    nowplaying_redis_url: str = ""
    """Redis for several instances (leases, shared state, pub/sub); empty: one process."""
    nowplaying_state_dir: Path | None = None
    """Where the server keeps, sealed, a rotated refresh token the database refused until it
    takes it (``kept-tokens``); empty: beside the SQLite file. Set it (one per instance) with
    PostgreSQL."""
    nowplaying_poll_seconds: float = 5.0
    nowplaying_session_idle_seconds: int = 14 * 24 * 3600
    nowplaying_session_max_seconds: int = 90 * 24 * 3600
    nowplaying_log_level: str = "INFO"
    nowplaying_log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (with the request id), for log collectors."""
    nowplaying_shutdown_seconds: float = Field(default=10.0, gt=0)
    """On SIGTERM/SIGINT: streams end with a reconnect hint and the process exits within this."""
    nowplaying_login_rate_per_minute: float = 20.0
    """Per client address, on /login and /callback (burst 10); 0 turns the limit off."""
    nowplaying_public_rate_per_second: float = 10.0
    """Per client address, on /p/... (burst 120); 0 turns the limit off."""
    nowplaying_header_seconds: float = Field(default=10.0, gt=0)
    """A request's line and headers must arrive within this of its first byte."""
    nowplaying_body_seconds: float = Field(default=30.0, gt=0)
    """A request's body must arrive within this of its headers."""
    nowplaying_write_seconds: float = Field(default=30.0, gt=0)
    """A response (an event stream too) whose reader takes nothing this long is dropped."""
    nowplaying_connections_per_address: int = Field(default=256, ge=1)
    """Open connections per client address; past it a new one is closed at once."""
    nowplaying_unfinished_per_address: int = Field(default=32, ge=1)
    """Connections per client address whose request has not fully arrived."""
    nowplaying_reserved_files: int = Field(default=32, ge=0)
    """Descriptors kept below the limit for addresses holding few connections (fewer than the
    event streams' spare, so a viewer past their capacity gets its 503 first)."""
    nowplaying_send_buffer_bytes: int = Field(default=64 * 1024, ge=0)
    """The kernel's send buffer per connection (0: its autotuning): what a reader that takes
    nothing can make the server produce before its writer pauses."""
    nowplaying_trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses of reverse proxies whose X-Forwarded-For/-Proto headers are believed."""
    nowplaying_image_origins: list[str] = Field(default_factory=list)
    """Extra origins cover art may be fetched from for SVG cards (Spotify's CDNs always are)."""
    nowplaying_allowed_hosts: list[str] = Field(default_factory=list)
    """Extra host names requests may carry in ``Host`` (the redirect URI's host always may)."""
    nowplaying_metrics_token: SecretStr = SecretStr("")
    """Bearer token a Prometheus scrape of ``/metrics`` must send; empty: ``/metrics`` is a 404."""
    nowplaying_alert_webhook: SecretStr = SecretStr("")
    """Where owner alerts are POSTed as JSON (ntfy, Discord, Slack incoming webhooks); empty:
    none. A secret: webhook URLs carry their credential in the path."""
    nowplaying_webhook_allowed_hosts: list[str] = Field(default_factory=list)
    """Hosts track-change webhooks may reach although their address is private, loopback or
    link-local (a Home Assistant or n8n on the LAN); plain http is allowed to them too."""
    nowplaying_mqtt_url: SecretStr = SecretStr("")
    """``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS, ``?ca=/path`` for a private
    CA): every widget's state published there, with Home Assistant discovery; empty: none."""
    nowplaying_mqtt_prefix: str = Field(default="nowplaying", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """The first level of the MQTT topics (``{prefix}/status``, ``{prefix}/{account}/state``)."""
    nowplaying_grip_publish_url: str = ""
    """Pushpin's HTTP publish endpoint (``http://127.0.0.1:5561/publish/``): public event streams
    that Pushpin forwards (a valid ``Grip-Sig``) are held by it, and each change is published
    there once (docs/deploy.md); empty: off, every stream is served here. Several Pushpin
    instances: their endpoints separated by commas, each change is published to every one."""
    nowplaying_grip_key: SecretStr = SecretStr("")
    """Pushpin's ``sig_key``: a request's ``Grip-Sig`` must be signed with it (HS256). Several
    Pushpin instances share one."""
    nowplaying_grip_stats_url: str = "ipc:///var/run/pushpin/pushpin-stats"
    """Pushpin's stats socket (``stats_spec``, with ``stats_format=json``): which public links
    it holds streams for, so only those are polled and published. Several instances: one
    socket each, separated by commas, as many as publish endpoints."""
    nowplaying_call_budget_30s: int = Field(default=60, ge=1)
    """Upstream calls (token and Web API) the app may make in any 30 s, across every instance;
    learned lower after a 429 (docs/budget.md)."""
    nowplaying_call_budget_day: int = Field(default=100_000, ge=1)
    """Upstream calls per UTC day, paced to midnight; shrunk after a QUOTA_EXCEEDED."""
    nowplaying_poll_floor_seconds: float = Field(default=1.0, gt=0)
    """A watched account is polled at most this often, however much budget is left."""
    nowplaying_poll_ceiling_seconds: float = Field(default=30.0, gt=0)
    """A watched account is polled at least this often (if the budget can afford it)."""

    @field_validator(
        "spotify_accounts_url", "spotify_api_url", "listenbrainz_api_url", "coverart_url"
    )
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("spotify_redirect_uri")
    @classmethod
    def _redirect_is_absolute(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("SPOTIFY_REDIRECT_URI must be an absolute http(s) URL")
        return v

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret, for the logs to redact (see :mod:`nowplaying.ops.logs`)."""
        values = (
            self.spotify_client_secret,
            self.nowplaying_secret_key,
            self.nowplaying_alert_webhook,
            self.nowplaying_metrics_token,
            self.lastfm_api_secret,
            self.nowplaying_grip_key,
            *self.nowplaying_old_secret_keys,
        )
        return tuple(v.get_secret_value() for v in values if v.get_secret_value())

    @property
    def lastfm_configured(self) -> bool:
        """Whether owners may connect Last.fm: a key and its secret are set, or demo mode (the
        simulated Last.fm, with :attr:`lastfm_key`)."""
        return self.demo or bool(self.lastfm_api_key and self.lastfm_api_secret.get_secret_value())

    @property
    def lastfm_key(self) -> str:
        """The Last.fm API key calls carry: the demo one for the simulated Last.fm in demo mode."""
        return DEMO_LASTFM_API_KEY if self.demo else self.lastfm_api_key

    @property
    def lastfm_secret(self) -> SecretStr:
        """The shared secret that signs ``auth.getSession`` (the demo one in demo mode)."""
        return SecretStr(DEMO_LASTFM_API_SECRET) if self.demo else self.lastfm_api_secret

    @property
    def demo(self) -> bool:
        """Demo mode: no Spotify app configured (and Spotify not turned off with
        ``NOWPLAYING_SPOTIFY=false``), so the built-in simulators play every source."""
        return self.nowplaying_spotify and not self.spotify_client_id

    @property
    def client_id(self) -> str:
        return self.spotify_client_id or DEMO_CLIENT_ID

    @property
    def client_secret(self) -> SecretStr:
        return SecretStr(DEMO_CLIENT_SECRET) if self.demo else self.spotify_client_secret

    @property
    def secret_key(self) -> SecretStr:
        if self.demo and not self.nowplaying_secret_key.get_secret_value():
            return SecretStr(DEMO_SECRET_KEY)
        return self.nowplaying_secret_key

    @property
    def secure_cookies_host_prefix(self) -> bool:
        """Whether cookies get the ``__Host-`` prefix: only when the site is served over https."""
        return urlsplit(self.spotify_redirect_uri).scheme == "https"

    @property
    def allowed_hosts(self) -> frozenset[str]:
        """Host names (no port, lower case) this site answers to; any other ``Host`` is refused.

        The redirect URI's host, the loopback names in demo mode, and ``NOWPLAYING_ALLOWED_HOSTS``.
        """
        hosts = {urlsplit(self.spotify_redirect_uri).hostname or ""}
        if self.demo:
            hosts |= LOOPBACK_HOSTS
        hosts |= {h.strip().lower().rstrip(".") for h in self.nowplaying_allowed_hosts}
        return frozenset(hosts - {""})

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, when the database URL names one."""
        url = self.nowplaying_database_url
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        return None

    @property
    def kept_tokens_path(self) -> Path | None:
        """The file of rotated refresh tokens the database refused (:mod:`.store.kept`)."""
        if self.nowplaying_state_dir is not None:
            return self.nowplaying_state_dir / "kept-tokens"
        db = self.sqlite_path
        if db is None or str(db) == ":memory:":
            return None
        return db.with_name(db.name + ".kept-tokens")

    @property
    def grip_publish_urls(self) -> tuple[str, ...]:
        """Every Pushpin instance's publish endpoint (none: GRIP is off)."""
        return _listed(self.nowplaying_grip_publish_url)

    @property
    def grip_stats_urls(self) -> tuple[str, ...]:
        """Every Pushpin instance's stats socket."""
        return _listed(self.nowplaying_grip_stats_url)

    @model_validator(mode="after")
    def _grip_stats_for_each_pushpin(self) -> Self:
        """Several Pushpin instances each report the links they hold on their own stats socket:
        one left out would have its viewers' accounts let go while they watch."""
        publish, stats = self.grip_publish_urls, self.grip_stats_urls
        if len(publish) > 1 and len(stats) != len(publish):
            raise ConfigError(
                f"NOWPLAYING_GRIP_STATS_URL must list one stats socket for each of the"
                f" {len(publish)} Pushpin instances in NOWPLAYING_GRIP_PUBLISH_URL (it lists"
                f" {len(stats)})"
            )
        if len(set(publish)) != len(publish) or len(set(stats)) != len(stats):
            raise ConfigError(
                "NOWPLAYING_GRIP_PUBLISH_URL and NOWPLAYING_GRIP_STATS_URL must not list one"
                " Pushpin instance twice"
            )
        return self

    @model_validator(mode="after")
    def _grip_needs_a_key(self) -> Self:
        """GRIP on (even in demo mode) needs Pushpin's real key: with a known one, anyone could
        make this server answer as if Pushpin held their stream."""
        key = self.nowplaying_grip_key.get_secret_value()
        if self.nowplaying_grip_publish_url and (key.lower() in GRIP_PLACEHOLDERS or len(key) < 32):
            raise ConfigError(
                "NOWPLAYING_GRIP_KEY must be Pushpin's sig_key (32+ characters, not its default)"
                " when NOWPLAYING_GRIP_PUBLISH_URL is set"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.demo:
            return self
        problems = []
        secret = self.spotify_client_secret.get_secret_value()
        if self.nowplaying_spotify and secret.lower() in PLACEHOLDERS:
            problems.append("SPOTIFY_CLIENT_SECRET is missing or a placeholder")
        key = self.nowplaying_secret_key.get_secret_value()
        if key.lower() in PLACEHOLDERS or len(key) < 32:
            problems.append(
                "NOWPLAYING_SECRET_KEY is missing or too short (32+ characters; generate one with"
                " `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def _listed(value: str) -> tuple[str, ...]:
    """The comma-separated items of a setting, without blanks."""
    return tuple(item.strip() for item in value.split(",") if item.strip())

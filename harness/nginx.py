"""Debian's nginx running the shipped ``deploy/nginx.conf``, for the proxy and edge-cache tests
and ``python -m bench edge``.

The shipped file is used as it is except for ports, addresses and paths (each replacement must
find its text, so a change of the file's shape fails loudly here). It is included from a small
main configuration that keeps pid, logs and temporary files in the given directory. The
certificate is self-signed, made here with ``cryptography``, for 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from harness.helpers import consent, stop
from harness.live_server import free_port
from harness.servers import ServerProcess, nowplaying_server

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "nginx.conf"
START_SECONDS = 10.0
METRICS_TOKEN = "edge-test-metrics-token-0123456789"


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for ``127.0.0.1`` (PEM files in ``directory``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fullchain.pem", directory / "privkey.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def render(
    *,
    upstream: str,
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    cache: Path,
    edge_cache: bool = True,
) -> str:
    """The shipped file with only its ports, addresses and paths changed (and, without
    ``edge_cache``, the public JSON and cards passed to the origin uncached)."""
    text = SHIPPED.read_text()
    uncached = () if edge_cache else (("proxy_cache nowplaying;", "proxy_cache off;"),)
    for old, new in (
        *uncached,
        ("app1:8000", upstream),
        ("app2:8000", upstream),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("/etc/nginx/tls/fullchain.pem", str(cert)),
        ("/etc/nginx/tls/privkey.pem", str(key)),
        ("/var/cache/nginx/nowplaying", str(cache)),
    ):
        if old not in text:
            raise AssertionError(f"deploy/nginx.conf no longer contains {old!r}")
        text = text.replace(old, new)
    return text


MAIN = """\
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/nowplaying.conf;
}}
"""


@dataclass
class Nginx:
    http_port: int
    https_port: int
    cert: Path
    directory: Path

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts this proxy's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def errors(self) -> str:
        log = self.directory / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""


@contextlib.contextmanager
def run_nginx(directory: Path, upstream: str, *, edge_cache: bool = True) -> Iterator[Nginx]:
    """nginx on two loopback ports (http, https) in front of ``upstream`` (``host:port``)."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(directory)
    proxy = Nginx(free_port(), free_port(), cert, directory)
    (directory / "nowplaying.conf").write_text(
        render(
            upstream=upstream,
            http_port=proxy.http_port,
            https_port=proxy.https_port,
            cert=cert,
            key=key,
            cache=directory / "cache",
            edge_cache=edge_cache,
        )
    )
    main = directory / "nginx.conf"
    main.write_text(MAIN.format(dir=directory))
    args = [binary, "-p", str(directory), "-c", str(main)]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
    proc = subprocess.Popen(
        [*args, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening(proc, proxy)
        yield proxy
    finally:
        stop(proc, 10, kill_wait=10)


def _wait_listening(proc: subprocess.Popen[bytes], proxy: Nginx) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", proxy.https_port), 0.5),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not start:\n{proxy.errors()}")


# -- the whole edge: nginx in front of one origin ------------------------------------------------


@dataclass
class Stack:
    origin: ServerProcess
    proxy: Nginx

    def client(self, source: str = "127.0.0.1") -> httpx.AsyncClient:
        """A client of the proxy over TLS, connecting from ``source`` (a loopback address)."""
        transport = httpx.AsyncHTTPTransport(verify=self.proxy.tls(), local_address=source)
        return httpx.AsyncClient(base_url=self.proxy.https, transport=transport, timeout=10)

    async def origin_count(self, route: str) -> float:
        """Requests the origin answered on ``route`` (a route template), from its /metrics."""
        return await self.origin_metric(
            "nowplaying_http_request_duration_seconds_count", route=route
        )

    async def origin_metric(self, name: str, **labels: str) -> float:
        """The sum of the origin's /metrics samples ``name`` with ``labels``."""
        async with httpx.AsyncClient(timeout=10) as http:
            text = (
                await http.get(
                    f"{self.origin.url}/metrics",
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                )
            ).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )


@contextlib.contextmanager
def edge_stack(
    directory: Path, extra_env: Mapping[str, str] | None = None, *, edge_cache: bool = True
) -> Iterator[Stack]:
    """nginx with the shipped file in front of ``nowplaying serve`` in demo mode, which believes
    its forwarded headers, serves metrics to ``METRICS_TOKEN``, polls every second and allows
    ten logins per client address at once; ``extra_env`` adds or overrides its settings
    (``edge_cache``: see :func:`render`)."""
    port = free_port()
    with run_nginx(directory, f"127.0.0.1:{port}", edge_cache=edge_cache) as proxy:
        env = {
            "SPOTIFY_REDIRECT_URI": f"{proxy.https}/callback",
            "NOWPLAYING_TRUSTED_PROXIES": '["127.0.0.1"]',
            "NOWPLAYING_METRICS_TOKEN": METRICS_TOKEN,
            "NOWPLAYING_PUBLIC_RATE_PER_SECOND": "0",
            # Burst 10, then one per 30 s: the forwarded-for test's 11th login is refused
            # however slowly a loaded machine sends the first ten.
            "NOWPLAYING_LOGIN_RATE_PER_MINUTE": "2",
            **(extra_env or {}),
        }
        with nowplaying_server(poll_seconds=1, extra_env=env, port=port) as origin:
            yield Stack(origin, proxy)


async def login(http: httpx.AsyncClient) -> httpx.Response:
    """/login → the simulator's consent page (Agree) → /callback, all through the proxy."""
    start = await http.get("/login")
    assert start.status_code == 302, start.text
    agreed = await consent(http, str(httpx.URL(str(http.base_url)).join(start.headers["location"])))
    assert agreed.status_code in (302, 303), agreed.text
    done = await http.get(agreed.headers["location"])
    assert done.status_code == 303, done.text
    return done


async def publish(stack: Stack) -> str:
    """Sign in and publish through the proxy; the public id."""
    async with stack.client() as http:
        await login(http)
        origin = {"Origin": stack.proxy.https}
        published = await http.post("/api/account/publish", headers=origin)
        assert published.status_code == 200, published.text
        found: str = published.json()["publicId"]
        return found

"""Three ``nowplaying serve`` instances behind one address, on PostgreSQL and Redis (loopback).

:class:`Cluster` owns a fresh PostgreSQL database, Redis db 15 (flushed before and after), a
simulated Spotify process, the instances and the :class:`harness.balancer.Balancer` in front of
them, whose address is the public origin every instance is configured with. :meth:`restart` is
one step of a rolling restart, done as an operator's load balancer does it: take the instance out
of rotation, SIGTERM it (its open streams are its to end), time its exit, start it again (with new
settings if given), wait for ``/healthz``, put it back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as aioredis
from harness.balancer import Balancer
from harness.live_server import free_port
from harness.services import POSTGRES_URL, REDIS_URL

from soak import procs

INSTANCES = 3
STOP_GRACE = 20.0  # well past NOWPLAYING_SHUTDOWN_SECONDS (10): a stop slower than that is a kill


@dataclass
class Restart:
    """One instance restarted: when it was told to stop, how it ended, when it was back."""

    instance: int
    label: str
    sigterm_at: float
    exit: procs.Exit | None = None
    back_at: float | None = None


@dataclass
class Cluster:
    tmp: Path
    poll_seconds: float
    users: int
    secret_key: str
    old_keys: list[str] = field(default_factory=list)
    balancer: Balancer = field(default_factory=lambda: Balancer([]))
    ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(INSTANCES)])
    instances: list[procs.Proc] = field(default_factory=list)
    sim: procs.Proc | None = None
    sim_url: str = ""
    database: str = ""
    restarts: list[Restart] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.balancer.port}"

    @property
    def host(self) -> str:
        """The public Host header (what the balancer passes through from every viewer)."""
        return f"127.0.0.1:{self.balancer.port}"

    @property
    def database_url(self) -> str:
        return POSTGRES_URL.rsplit("/", 1)[0] + f"/{self.database}"

    def url(self, i: int) -> str:
        """Instance ``i`` directly, bypassing the balancer (send :attr:`host` as Host)."""
        return f"http://127.0.0.1:{self.ports[i]}"

    def env(self) -> dict[str, str]:
        """The settings of an instance (or a CLI command) started now."""
        return procs.cluster_env(
            sim_url=self.sim_url,
            origin=self.origin,
            database_url=self.database_url,
            redis_url=REDIS_URL,
            secret_key=self.secret_key,
            old_keys=self.old_keys,
            poll_seconds=self.poll_seconds,
        )

    async def start(self, http: httpx.AsyncClient) -> None:
        """Database, Redis, balancer, simulator, then the instances (the first one migrates)."""
        self.database = f"np_lifecycle_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f"CREATE DATABASE {self.database}")
        finally:
            await admin.close()
        redis = aioredis.Redis.from_url(REDIS_URL)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()
        await self.balancer.start()
        self.sim, self.sim_url = procs.simulator(
            self.tmp, users=self.users, server_port=self.balancer.port
        )
        self.sim.start()
        await procs.wait_up(http, self.sim, f"{self.sim_url}/_control/calls")
        for n in range(1, self.users + 1):  # no silent gaps: every account is always playing
            await http.post(f"{self.sim_url}/_control/users/user{n}/player/play", json={"item": n})
        self.instances = [
            procs.instance(self.tmp, f"instance{i}", port=p, env=self.env())
            for i, p in enumerate(self.ports)
        ]
        self.instances[0].start()
        await self.wait_up(http, 0)
        for p in self.instances[1:]:
            p.start()
        for i in range(1, INSTANCES):
            await self.wait_up(http, i)
        self.balancer.set_backends(self.ports)

    async def wait_up(self, http: httpx.AsyncClient, i: int) -> float:
        return await procs.wait_up(
            http, self.instances[i], f"{self.url(i)}/healthz", host=self.host
        )

    async def restart(
        self, http: httpx.AsyncClient, i: int, label: str, *, pause: float = 0.0
    ) -> Restart:
        """One rolling-restart step for instance ``i`` (settings from :meth:`env` as of now)."""
        self.balancer.set_backends([p for n, p in enumerate(self.ports) if n != i])
        record = Restart(i, label, time.monotonic())
        self.restarts.append(record)
        record.exit = await self.instances[i].stop_async(STOP_GRACE)
        await asyncio.sleep(pause)
        self.instances[i] = procs.instance(
            self.tmp, f"instance{i}", port=self.ports[i], env=self.env()
        )
        self.instances[i].start()
        await self.wait_up(http, i)
        record.back_at = time.monotonic()
        self.balancer.set_backends(self.ports)
        return record

    async def stop_all(self) -> list[procs.Exit]:
        """SIGTERM every instance at once; how each ended."""
        self.balancer.set_backends([])
        exits = await asyncio.gather(*(p.stop_async(STOP_GRACE) for p in self.instances))
        return [e for e in exits if e is not None]

    async def start_all(self, http: httpx.AsyncClient) -> None:
        self.instances = [
            procs.instance(self.tmp, f"instance{i}", port=p, env=self.env())
            for i, p in enumerate(self.ports)
        ]
        for p in self.instances:
            p.start()
        for i in range(INSTANCES):
            await self.wait_up(http, i)
        self.balancer.set_backends(self.ports)

    async def close(self) -> None:
        """Everything down and removed, whatever state it is in (called in ``finally``)."""
        for p in self.instances:
            await p.stop_async(STOP_GRACE)
        if self.sim is not None:
            self.sim.stop()
        await self.balancer.close()
        redis = aioredis.Redis.from_url(REDIS_URL)
        try:
            await redis.flushdb()
        finally:
            await redis.aclose()
        if self.database:
            admin = await asyncpg.connect(POSTGRES_URL)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
            finally:
                await admin.close()

    def kills(self) -> int:
        return sum(p.kills for p in self.instances)

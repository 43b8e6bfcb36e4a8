"""MQTT and Home Assistant, against the local Mosquitto (127.0.0.1:1883; ``.ci/run`` starts it):
discovery, retained state, a change, and the last will when the server is stopped or killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from harness.app import Env, open_env
from harness.cluster import cluster, login, run_async
from harness.servers import nowplaying_server
from harness.services import require
from paho.mqtt.enums import CallbackAPIVersion

from nowplaying.clock import FakeClock
from nowplaying.ops.mqtt import broker_of, state_message
from nowplaying.schema import parse_state

BROKER = "mqtt://127.0.0.1:1883"


@dataclass
class Subscriber:
    """Every message a paho-mqtt client received (retained ones flagged)."""

    got: list[tuple[str, str, bool]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.arrived:
            self.got.append((msg.topic, msg.payload.decode(), bool(msg.retain)))
            self.arrived.notify_all()

    def wait(
        self, topic: str, want: Callable[[str], bool] | None = None, seconds: float = 10.0
    ) -> str:
        """The first payload on ``topic`` that ``want`` accepts, within ``seconds``."""

        def found() -> str | None:
            for t, payload, _ in self.got:
                if t == topic and (want is None or want(payload)):
                    return payload
            return None

        with self.arrived:
            self.arrived.wait_for(lambda: found() is not None, timeout=seconds)
            payload = found()
        assert payload is not None, f"nothing on {topic} within {seconds} s: {self.got[-5:]}"
        return payload

    def retained(self, topic: str) -> bool:
        return any(t == topic and r for t, _, r in self.got)


@contextlib.contextmanager
def subscribed(*topics: str) -> Iterator[Subscriber]:
    require(BROKER, "Mosquitto")
    sub = Subscriber()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="np-test-" + secrets.token_hex(4))
    client.on_message = sub.on_message
    ready = threading.Event()
    client.on_subscribe = lambda *_: ready.set()
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    try:
        client.subscribe([(t, 1) for t in topics])
        assert ready.wait(5), "the broker did not confirm the subscription"
        yield sub
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A prefix of this test's own (retained messages outlive it: cleared afterwards)."""
    name = "nptest_" + secrets.token_hex(4)
    yield name
    clear_retained(name)


def clear_retained(name: str) -> None:
    """Delete every retained message of prefix ``name`` and its discovery configs."""
    ours = (f"{name}/", f"homeassistant/sensor/{name}_")
    with subscribed(f"{name}/#", "homeassistant/sensor/+/config") as sub:
        cleaner = paho.Client(CallbackAPIVersion.VERSION2)
        cleaner.connect("127.0.0.1", 1883)
        cleaner.loop_start()
        # Retained messages come first, on subscribing; a marker sent after them ends the list.
        cleaner.publish(f"{name}/_end", b"end", qos=1).wait_for_publish(2)
        sub.wait(f"{name}/_end")
        for topic in {t for t, _, retained in sub.got if retained and t.startswith(ours)}:
            cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
        cleaner.disconnect()
        cleaner.loop_stop()


@pytest.fixture
async def bridged(tmp_path: Path, prefix: str) -> AsyncIterator[Env]:
    require(BROKER, "Mosquitto")
    clock = FakeClock()
    async with open_env(
        tmp_path, clock, nowplaying_mqtt_url=BROKER, nowplaying_mqtt_prefix=prefix
    ) as env:
        assert (await env.connect()).status_code == 303
        yield env


@pytest.mark.anyio
async def test_home_assistant_discovers_the_sensor_and_its_state(bridged: Env, prefix: str) -> None:
    player = bridged.sim.player("demo")
    player.play(1, progress_ms=3000)
    await bridged.clock.advance(61, step=1)  # the bridge's next look at the accounts
    state_topic, config_topic = f"{prefix}/demo/state", f"homeassistant/sensor/{prefix}_demo/config"
    now = (await bridged.client.get("/api/spotify")).json()
    with subscribed(state_topic, config_topic) as first:  # the broker has both (however late)
        for topic in (config_topic, state_topic):
            await asyncio.to_thread(first.wait, topic)
    with subscribed(f"{prefix}/#", config_topic) as sub:  # subscribed afterwards: retained
        config = json.loads(await asyncio.to_thread(sub.wait, config_topic))
        assert sub.retained(config_topic), sub.got
        assert config["state_topic"] == state_topic == config["json_attributes_topic"]
        assert config["value_template"] == "{{ value_json.state }}"
        own = f"{prefix}/status/{bridged.services.runtime.hub.instance_id}"
        assert config["availability"] == [{"topic": own}]
        assert config["availability_mode"] == "any"
        assert config["unique_id"] == f"{prefix}_demo"
        state = json.loads(await asyncio.to_thread(sub.wait, state_topic))
        assert sub.retained(state_topic)
        assert state["state"] == f"{now['artist']} \u2013 {now['title']}"
        attributes = state["attributes"]
        assert attributes["title"] == now["title"] and attributes["playing"] is True
        assert attributes["cover_url"] == now["albumImageUrl"]
        assert attributes["source"] == "spotify"
        assert await asyncio.to_thread(sub.wait, own) == "online"
        player.skip()
        await bridged.clock.advance(3, step=0.5)
        title = player.state().item["name"]  # type: ignore[index]
        moved = await asyncio.to_thread(
            sub.wait, state_topic, lambda p: json.loads(p)["attributes"].get("title") == title, 1.0
        )
        assert json.loads(moved)["attributes"]["playing"] is True


@pytest.mark.parametrize("stop", ["sigterm", "kill"])
def test_the_sensor_goes_unavailable_when_the_server_stops(prefix: str, stop: str) -> None:
    """SIGTERM: the server says offline itself; kill -9: the broker says it (the last will)."""
    require(BROKER, "Mosquitto")
    env = {"NOWPLAYING_MQTT_URL": BROKER, "NOWPLAYING_MQTT_PREFIX": prefix}
    with subscribed(f"{prefix}/status/+") as sub, nowplaying_server(extra_env=env) as server:
        with sub.arrived:
            sub.arrived.wait_for(lambda: any(p == "online" for _, p, _ in sub.got), timeout=10)
        (status,) = {t for t, p, _ in sub.got if p == "online"}
        before = len(sub.got)
        if stop == "sigterm":
            server.proc.send_signal(signal.SIGTERM)
        else:
            server.proc.kill()
        server.proc.wait(timeout=15)
        with sub.arrived:
            sub.arrived.wait_for(
                lambda: any(p == "offline" for _, p, _ in sub.got[before:]), timeout=10
            )
        assert [p for t, p, _ in sub.got[before:] if t == status][-1:] == ["offline"], sub.got


def test_the_broker_url_and_the_state_message() -> None:
    broker = broker_of("mqtts://ha:s%40cret@broker.test?ca=/etc/ca.pem")
    assert (broker.host, broker.port, broker.tls, broker.username) == (
        "broker.test",
        8883,
        True,
        "ha",
    )
    assert broker.password == "s@cret" and "s@cret" not in repr(broker)
    assert broker.ca_file == "/etc/ca.pem"
    assert broker_of("mqtt://127.0.0.1").port == 1883
    with pytest.raises(ValueError, match="mqtt://"):
        broker_of("http://broker.test")
    idle = state_message(parse_state({"isPlaying": False}))
    assert idle == {"state": "Not playing", "attributes": {"source": "spotify", "playing": False}}
    long = parse_state(
        {"isPlaying": True, "type": "track", "title": "x" * 400, "artist": "A", "durationMs": 1}
    )
    assert len(state_message(long)["state"]) == 255


def available(sub: Subscriber, config_topic: str) -> bool:
    """What Home Assistant concludes from the last config and statuses: with
    ``availability_mode: any``, available while any listed instance's last word is online."""
    configs = [p for t, p, _ in sub.got if t == config_topic and p]
    if not configs:
        return False
    config = json.loads(configs[-1])
    assert config["availability_mode"] == "any"
    last = {t: p for t, p, _ in sub.got}
    return any(last.get(a["topic"]) == "online" for a in config["availability"])


@pytest.mark.slow
@pytest.mark.parametrize("first", ["sigterm", "kill"])
def test_with_two_instances_the_sensor_stays_available_until_the_last_stops(
    tmp_path: Path, prefix: str, first: str
) -> None:
    """Two real ``nowplaying serve`` processes (PostgreSQL, Redis) on one broker: each has its
    own availability topic and the discovery lists both (mode any); the first stopping (SIGTERM
    or kill -9, its last will) leaves the sensor available, the second makes it unavailable."""
    require(BROKER, "Mosquitto")
    env = {"NOWPLAYING_MQTT_URL": BROKER, "NOWPLAYING_MQTT_PREFIX": prefix}
    config = f"homeassistant/sensor/{prefix}_user1/config"
    with (
        subscribed(f"{prefix}/status/+", "homeassistant/sensor/+/config") as sub,
        cluster(tmp_path / "logs", instances=2, users=1, env=env) as c,
    ):
        run_async(login(c.public, "user1"))
        for i in range(2):  # started again, the bridges find the account at once
            c.restart(i)

        def both_listed_and_online() -> bool:
            configs = [p for t, p, _ in sub.got if t == config and p]
            last = {t: p for t, p, _ in sub.got}
            if not configs:
                return False
            topics = [a["topic"] for a in json.loads(configs[-1])["availability"]]
            return len(topics) == 2 and all(last.get(t) == "online" for t in topics)

        with sub.arrived:
            assert sub.arrived.wait_for(both_listed_and_online, timeout=20), sub.got[-6:]
        listed = [
            a["topic"]
            for a in json.loads([p for t, p, _ in sub.got if t == config][-1])["availability"]
        ]
        c.stop(0) if first == "sigterm" else c.kill(0)

        def one_offline() -> bool:
            last = {t: p for t, p, _ in sub.got}
            return any(last.get(t) == "offline" for t in listed)

        with sub.arrived:  # the first instance's own topic says offline
            assert sub.arrived.wait_for(one_offline, 10), sub.got[-6:]
        assert available(sub, config), sub.got[-6:]
        c.kill(1) if first == "sigterm" else c.stop(1)
        with sub.arrived:
            assert sub.arrived.wait_for(lambda: not available(sub, config), 10), sub.got[-6:]

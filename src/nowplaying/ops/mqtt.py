"""MQTT for Home Assistant: every widget's state on a broker, announced by MQTT discovery.

The broker connection is paho-mqtt's, in its own thread, reconnecting with backoff. Each
instance has its own availability topic, ``{prefix}/status/{instance}``: the broker itself says
``offline`` there when the process dies without a word (the last will), a clean stop says it
first. Every instance reads the others' (retained) and announces each sensor with the topics of
the instances online, ``availability_mode: any``: one instance stopping leaves the sensors
available while another runs, and only the last one's going makes them unavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nowplaying.clock import Clock
from nowplaying.config import Settings
from nowplaying.engine.live import LiveHub
from nowplaying.engine.snapshot import Snapshot
from nowplaying.ops.follow import Following
from nowplaying.schema import Error, Nothing, Playing, State
from nowplaying.store import Store, StoreError

if TYPE_CHECKING:  # paho-mqtt is loaded only when a broker is configured
    import paho.mqtt.client as paho

__all__ = ["Broker", "MqttBridge", "broker_of", "start_mqtt", "state_message"]

log = logging.getLogger(__name__)

DISCOVERY_PREFIX = "homeassistant"
STATE_MAX = 255
"""Home Assistant keeps at most 255 characters of a state."""
RESCAN_SECONDS = 60.0
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Broker:
    """Where to connect, from ``NOWPLAYING_MQTT_URL`` (the password never printed)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None

    def __repr__(self) -> str:
        return f"Broker({'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port})"


def broker_of(url: str) -> Broker:
    """The broker an ``mqtt://`` or ``mqtts://`` URL names; ValueError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise ValueError("NOWPLAYING_MQTT_URL must be mqtt://host[:port] or mqtts://...")
    tls = parts.scheme == "mqtts"
    query = urllib.parse.parse_qs(parts.query)
    return Broker(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
        ca_file=query.get("ca", [None])[0],
    )


def topic_id(account_id: str) -> str:
    """An account id as a topic level and an object id (no ``/``, ``+``, ``#`` or spaces)."""
    return _TOPIC_UNSAFE.sub("_", account_id)[:64] or "_"


def state_message(state: State, source: str = "spotify") -> dict[str, Any]:
    """The retained state: Home Assistant's state string and the sensor's attributes."""
    attributes: dict[str, Any] = {"source": source, "playing": False}
    if isinstance(state, Playing):
        text = f"{state.artist} \u2013 {state.title}" if state.artist else state.title
        attributes.update(
            title=state.title,
            artist=state.artist,
            album=state.album,
            cover_url=state.album_image_url,
            url=state.song_url,
            playing=state.is_playing,
            progress_ms=state.progress_ms,
            duration_ms=state.duration_ms,
        )
    elif isinstance(state, Nothing):
        text = "Not playing"
    elif isinstance(state, Error):
        text = "Unavailable"
        attributes["error"] = str(state.error)
    else:
        text = "Advertisement"
        attributes["playing"] = True
    return {"state": text[:STATE_MAX], "attributes": attributes}


class MqttBridge:
    """Publishes every account's state, with Home Assistant discovery, while the server runs."""

    def __init__(
        self,
        hub: LiveHub,
        store: Store,
        clock: Clock,
        broker: Broker,
        *,
        prefix: str = "nowplaying",
        client_id: str | None = None,
    ) -> None:
        self.hub = hub
        self.store = store
        self.clock = clock
        self.broker = broker
        self.prefix = topic_id(prefix)
        self.statuses = f"{self.prefix}/status/+"
        """Every instance's availability topic (a subscription)."""
        self.status_topic = f"{self.prefix}/status/{topic_id(hub.instance_id)}"
        self._online: set[str] = {self.status_topic}
        """The availability topics of the instances online (this one's always)."""
        self.counts: dict[str, int] = {"published": 0}
        self._announced: set[str] = set()
        self._latest: dict[str, str] = {}
        """Each account's last state payload, published again after a reconnect."""
        self._lock = threading.Lock()
        self._following = Following(hub, clock, self._changed)
        self._rescan: Any = None
        self._connected = threading.Event()
        import paho.mqtt.client as paho  # noqa: PLC0415 - paho-mqtt only with a broker
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"{self.prefix}-{id(self):x}",
            clean_session=True,
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=broker.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=60)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_status

    async def start(self) -> None:
        """Connect in the background (the server starts whether or not the broker answers)."""
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        await self.rescan()
        self._rescan = asyncio.create_task(self._rescan_forever())

    async def close(self) -> None:
        """Say ``offline`` (a clean stop sends no last will) and disconnect."""
        if self._rescan is not None:
            self._rescan.cancel()
        await self._following.close()
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    async def rescan(self) -> None:
        """Follow every connected account (read again every minute)."""
        try:
            accounts = await self.store.list_accounts()
        except StoreError as e:
            log.warning("could not list the accounts for MQTT (%s)", type(e).__name__)
            return
        self._following.set(a.id for a in accounts)

    async def _rescan_forever(self) -> None:
        while True:
            await self.clock.sleep(RESCAN_SECONDS)
            await self.rescan()

    def _changed(self, account_id: str, before: Snapshot | None, after: Snapshot) -> None:
        self.publish_state(account_id, after.view(self.clock.now()))

    def publish_state(self, account_id: str, state: State) -> None:
        """Announce the account (once per connection) and publish its state, retained."""
        oid = topic_id(account_id)
        payload = json.dumps(state_message(state), ensure_ascii=False)
        with self._lock:
            self._latest[oid] = payload
            self._send(oid, payload)
        self.counts["published"] += 1

    def _send(self, oid: str, payload: str) -> None:
        if oid not in self._announced:
            self._announce(oid)
        self.client.publish(f"{self.prefix}/{oid}/state", payload, qos=1, retain=True)

    def _announce(self, oid: str) -> None:
        state_topic = f"{self.prefix}/{oid}/state"
        config = {
            "name": "Now playing",
            "unique_id": f"{self.prefix}_{oid}",
            "object_id": f"{self.prefix}_{oid}",
            "state_topic": state_topic,
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": state_topic,
            "json_attributes_template": "{{ value_json.attributes | tojson }}",
            "availability": [{"topic": t} for t in sorted(self._online)],
            "availability_mode": "any",
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:music",
            "device": {
                "identifiers": [f"{self.prefix}_{oid}"],
                "name": f"nowplaying {oid}",
                "manufacturer": "nowplaying",
            },
        }
        topic = f"{DISCOVERY_PREFIX}/sensor/{self.prefix}_{oid}/config"
        self.client.publish(topic, json.dumps(config), qos=1, retain=True)
        self._announced.add(oid)

    # paho's thread ---------------------------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker refused the connection (%s)", reason)
            return
        log.info("MQTT connected to %r", self.broker)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        client.subscribe(self.statuses, qos=1)
        with self._lock:  # a broker that lost its retained messages hears them again
            self._announced.clear()
            for oid, payload in self._latest.items():
                self._send(oid, payload)
        self._connected.set()

    def _on_status(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """Another instance came online or went: announce every sensor with the topics of those
        online now."""
        if msg.topic == self.status_topic:
            return
        online = msg.payload == b"online"
        with self._lock:
            if online == (msg.topic in self._online):
                return
            if online:
                self._online.add(msg.topic)
            else:
                self._online.discard(msg.topic)
            for oid in list(self._announced):
                self._announce(oid)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected.clear()
        log.info("MQTT disconnected (%s); reconnecting", reason)


async def start_mqtt(
    settings: Settings, hub: LiveHub, store: Store, clock: Clock
) -> MqttBridge | None:
    """The bridge ``NOWPLAYING_MQTT_URL`` asks for, started; None when it is unset."""
    url = settings.nowplaying_mqtt_url.get_secret_value()
    if not url:
        return None
    bridge = MqttBridge(hub, store, clock, broker_of(url), prefix=settings.nowplaying_mqtt_prefix)
    await bridge.start()
    return bridge

"""Simulated upstreams (Spotify, Last.fm, ListenBrainz); nothing here reaches the network.

::

    sim = Simulator(clock=FakeClock())
    grant = sim.grant("demo")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as http: ...
"""

from nowplaying.simulator.accounts import Client, Grant, TokenError, User
from nowplaying.simulator.app import Simulator
from nowplaying.simulator.catalog import default_playlist, episode, local_track, track
from nowplaying.simulator.faults import Fault, Faults
from nowplaying.simulator.player import Play, Player, PlayerState

__all__ = [
    "Client",
    "Fault",
    "Faults",
    "Grant",
    "Play",
    "Player",
    "PlayerState",
    "Simulator",
    "TokenError",
    "User",
    "default_playlist",
    "episode",
    "local_track",
    "track",
]

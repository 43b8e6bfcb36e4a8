"""A simulated Spotify for tests, demo mode and benchmarks: nothing here reaches the network.

::

    sim = Simulator(clock=FakeClock())
    grant = sim.grant("demo")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app)) as http: ...

Modules: :mod:`.core` (the facade), :mod:`.accounts` (apps, users, codes, tokens),
:mod:`.oauth` and :mod:`.api` (routes), :mod:`.player` (playback timeline), :mod:`.catalog`
(built-in items), :mod:`.objects` (JSON shapes), :mod:`.covers` (generated images),
:mod:`.faults`, :mod:`.limits` (the rate limit and the quota), :mod:`.control` (the
``/_control`` API), :mod:`.pages` (HTML).
"""

from nowplaying.simulator.accounts import Client, Grant, TokenError, User
from nowplaying.simulator.catalog import default_playlist, episode, local_track, track
from nowplaying.simulator.core import Simulator
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

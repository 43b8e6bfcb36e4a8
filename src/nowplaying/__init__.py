"""nowplaying: show what someone is listening to on Spotify, served by a server that holds the grant."""

__version__ = "0.1.0"

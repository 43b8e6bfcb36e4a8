"""nowplaying: show what someone plays on Spotify, from a server that holds the grant."""

__version__ = "0.1.0"

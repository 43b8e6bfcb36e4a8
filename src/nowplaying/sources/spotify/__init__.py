"""Spotify as a source: its HTTP client, error tree, OAuth, grants and payload parsing."""

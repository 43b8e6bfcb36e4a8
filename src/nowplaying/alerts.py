"""Owner alerts (``NOWPLAYING_ALERT_WEBHOOK``)."""

from __future__ import annotations

GRANT_LIFETIME = 182 * 86400
"""Spotify's refresh tokens die six months after consent (2026); refreshing does not extend."""

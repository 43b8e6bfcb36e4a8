"""The OpenAPI description of the JSON and event interfaces, served at ``/openapi.json``.

Tests validate live responses against these schemas, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nowplaying import __version__

_STR_OR_NULL = {"type": ["string", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}

SCHEMAS: dict[str, Any] = {
    "Playing": {
        "type": "object",
        "description": "A track or episode, playing or paused.",
        "required": ["isPlaying", "type", "title", "artist", "durationMs"],
        "properties": {
            "isPlaying": {"type": "boolean"},
            "type": {"enum": ["track", "episode"]},
            "title": {"type": "string"},
            "artist": {"type": "string", "description": "Artists joined by ', '; the show."},
            "album": _STR_OR_NULL,
            "albumImageUrl": _STR_OR_NULL,
            "songUrl": _STR_OR_NULL,
            "progressMs": _INT_OR_NULL,
            "durationMs": {"type": "integer"},
            "at": {"type": "integer", "description": "Server time (ms) progressMs holds for."},
            "stale": {"const": True},
        },
        "additionalProperties": False,
    },
    "Ad": {
        "type": "object",
        "required": ["isPlaying", "type"],
        "properties": {
            "isPlaying": {"type": "boolean"},
            "type": {"const": "ad"},
            "progressMs": _INT_OR_NULL,
            "at": {"type": "integer"},
            "stale": {"const": True},
        },
        "additionalProperties": False,
    },
    "LastPlayed": {
        "type": "object",
        "required": ["type", "title", "artist", "playedAt"],
        "properties": {
            "type": {"enum": ["track", "episode"]},
            "title": {"type": "string"},
            "artist": {"type": "string"},
            "album": _STR_OR_NULL,
            "albumImageUrl": _STR_OR_NULL,
            "songUrl": _STR_OR_NULL,
            "playedAt": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
    },
    "Nothing": {
        "type": "object",
        "required": ["isPlaying"],
        "properties": {
            "isPlaying": {"const": False},
            "lastPlayed": {"$ref": "#/components/schemas/LastPlayed"},
            "stale": {"const": True},
        },
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "enum": [
                    "not_connected",
                    "reconnect_required",
                    "unavailable",
                    "not_found",
                    "forbidden",
                    "bad_request",
                    "too_many_requests",
                    "body_too_large",
                    "headers_too_large",
                    "method_not_allowed",
                    "unauthorized",
                    "error",
                ]
            },
            "message": {"type": "string"},
            "stale": {"const": True},
        },
        "additionalProperties": False,
    },
    "NowPlaying": {
        "oneOf": [
            {"$ref": "#/components/schemas/Playing"},
            {"$ref": "#/components/schemas/Ad"},
            {"$ref": "#/components/schemas/Nothing"},
        ]
    },
    "PublicState": {
        "oneOf": [
            {"$ref": "#/components/schemas/Playing"},
            {"$ref": "#/components/schemas/Ad"},
            {"$ref": "#/components/schemas/Nothing"},
            {"$ref": "#/components/schemas/Error"},
        ]
    },
    "Account": {
        "type": "object",
        "required": ["displayName", "status", "published", "publicId", "links", "reconnectBy"],
        "properties": {
            "displayName": {"type": "string"},
            "status": {"enum": ["active", "reconnect_required"]},
            "published": {"type": "boolean"},
            "publicId": _STR_OR_NULL,
            "links": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["page", "json", "svg", "events", "open"],
                        "additionalProperties": {"type": "string"},
                    },
                ]
            },
            "lastPlayed": {"type": "boolean"},
            "lastPlayedGranted": {"type": "boolean"},
            "reconnectBy": {"type": "string", "format": "date-time"},
            "reconnectReason": {
                "enum": ["unknown_key", "revoked", None],
                "description": "Why a reconnect is needed: the grant was sealed with a secret key"
                " this server does not have, or Spotify refused it.",
            },
            "pausedUntil": {
                **_INT_OR_NULL,
                "description": "Spotify's app-wide pause ends then (epoch ms); null: none.",
            },
            "pauseReason": {
                **_STR_OR_NULL,
                "description": "QUOTA_EXCEEDED (hours long) or rate_limit (seconds).",
            },
            "reconsentUrl": {"type": "string"},
        },
        "additionalProperties": False,
    },
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_PUBLIC_ID = {
    "name": "public_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
}
_THEME = {"name": "theme", "in": "query", "schema": {"enum": ["light", "dark", "auto"]}}
_EVENTS = {
    "description": "Server-Sent Events; each `data:` is a NowPlaying or Error object.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_OWNER_POST = {
    "responses": {
        "200": _json("Account", "The account after the change."),
        "401": _json("Error", "No session."),
        "403": _json("Error", "Cross-site request."),
    }
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "nowplaying",
        "version": __version__,
        "description": "What a connected Spotify account is playing, for widgets.",
    },
    "paths": {
        "/api/spotify": {
            "get": {
                "summary": "What the session's account plays",
                "responses": {
                    "200": _json("NowPlaying", "Playing, ad, or nothing (maybe stale)."),
                    "401": _json("Error", "not_connected or reconnect_required."),
                    "503": _json("Error", "Spotify unavailable and nothing known yet."),
                },
            }
        },
        "/api/spotify/events": {"get": {"responses": {"200": _EVENTS, "401": _json("Error", "")}}},
        "/api/account": {
            "get": {
                "responses": {
                    "200": _json("Account", "The owner's account."),
                    "401": _json("Error", "No session."),
                }
            }
        },
        "/api/account/publish": {"post": _OWNER_POST},
        "/api/account/rotate": {"post": _OWNER_POST},
        "/api/account/unpublish": {"post": _OWNER_POST},
        "/api/account/settings": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["lastPlayed"],
                                "properties": {"lastPlayed": {"type": "boolean"}},
                            }
                        }
                    }
                },
                **_OWNER_POST,
            }
        },
        "/p/{public_id}.json": {
            "get": {
                "parameters": [_PUBLIC_ID],
                "responses": {
                    "200": _json("PublicState", "The state; errors are data here."),
                    "404": _json("Error", "Unknown or withdrawn link."),
                    "503": _json("Error", "Nothing known yet."),
                },
            }
        },
        "/p/{public_id}.svg": {
            "get": {
                "parameters": [
                    _PUBLIC_ID,
                    _THEME,
                    {"name": "size", "in": "query", "schema": {"enum": ["compact"]}},
                ],
                "responses": {
                    "200": {
                        "description": "The card, always an image.",
                        "content": {"image/svg+xml": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Not modified (If-None-Match)."},
                },
            }
        },
        "/p/{public_id}/events": {
            "get": {
                "parameters": [_PUBLIC_ID],
                "responses": {"200": _EVENTS, "404": _json("Error", "Unknown or withdrawn link.")},
            }
        },
        "/p/{public_id}": {
            "get": {
                "parameters": [_PUBLIC_ID, _THEME],
                "responses": {
                    "200": {"description": "The embeddable widget page (HTML)."},
                    "404": {"description": "Unknown or withdrawn link (HTML page)."},
                },
            }
        },
        "/p/{public_id}/open": {
            "get": {
                "parameters": [_PUBLIC_ID],
                "responses": {
                    "302": {"description": "To open.spotify.com only."},
                    "404": {"description": "Unknown link, or nothing to open (HTML page)."},
                },
            }
        },
    },
    "components": {"schemas": SCHEMAS},
}


async def openapi(request: Request) -> Response:
    return JSONResponse(SPEC, headers={"Cache-Control": "public, max-age=300"})

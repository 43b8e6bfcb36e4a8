"""The OpenAPI document at ``/openapi.json``, its schemas generated from :mod:`nowplaying.schema`.

Tests validate live responses against it, so it cannot drift from the code.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nowplaying import __version__, schema
from nowplaying.cards.options import CardOptions, OverlayOptions, RecentOptions
from nowplaying.cards.themes import Theme

_REF = "#/components/schemas/{model}"
_MODELS: tuple[type[schema.View], ...] = (
    schema.Playing,
    schema.Ad,
    schema.Nothing,
    schema.Error,
    schema.Account,
    schema.Recent,
    schema.OEmbed,
    schema.Webhooks,
    schema.WebhookCreated,
)


def _schemas() -> dict[str, Any]:
    """The components, generated from :mod:`nowplaying.schema` (the models are the definition)."""
    _, doc = models_json_schema([(m, "serialization") for m in _MODELS], ref_template=_REF)
    schemas: dict[str, Any] = doc["$defs"]
    for definition in schemas.values():
        for prop in definition.get("properties", {}).values():
            prop.pop("title", None)  # pydantic's "Isplaying" says nothing the name does not
            if prop.get("default", 0) is None and "anyOf" not in prop:
                del prop["default"]  # an absent field, not a null one
    schemas["NowPlaying"] = {"oneOf": [{"$ref": _REF.format(model=m)} for m in _NOW_PLAYING]}
    schemas["PublicState"] = {
        "oneOf": [{"$ref": _REF.format(model=m)} for m in (*_NOW_PLAYING, "Error")]
    }
    return schemas


_NOW_PLAYING = ("Playing", "Ad", "Nothing")
SCHEMAS: dict[str, Any] = _schemas()


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI parameters (its enums join the components)."""
    doc = model.model_json_schema(ref_template=_REF)
    SCHEMAS.update(doc.get("$defs", {}))
    params = []
    for name, prop in doc["properties"].items():
        prop.pop("title", None)
        options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
        schema = {**options[0], **prop} if options else prop
        if schema.get("default", 0) is None:
            del schema["default"]
        param = {"name": name, "in": "query", "schema": schema}
        if "description" in schema:
            param["description"] = schema.pop("description")
        if schema.get("type") == "array":  # hide=cover,artist
            param.update(style="form", explode=False)
        params.append(param)
    return params


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
_SVG = {"image/svg+xml": {"schema": {"type": "string"}}}


def _png(summary: str, options: type[BaseModel]) -> dict[str, Any]:
    """A card as a PNG: like its SVG, always an image, revalidated by ETag."""
    return {
        "get": {
            "summary": summary,
            "parameters": [_PUBLIC_ID, *query_parameters(options)],
            "responses": {
                "200": {"description": "The card.", "content": _PNG},
                "304": {"description": "Not modified (If-None-Match)."},
                "400": {"description": "A bad parameter: an image that names it.", "content": _PNG},
            },
        }
    }


_PUBLIC_ID = {
    "name": "public_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
}


def _events(state: str) -> dict[str, Any]:
    """An event stream whose every event carries a ``state`` (OpenAPI 3.1 reads the schema of
    ``text/event-stream`` as one event's: its fields as the stream's parser gives them)."""
    data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": _REF.format(model=state)},
        "description": f"A {state} object as JSON text.",
    }
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": data,
            "event": {"type": "string", "enum": ["message"]},
            "id": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "Grows with each change of the widget (at least the server's"
                " clock in ms): send the last one back as Last-Event-ID to resume.",
            },
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "description": f"Server-Sent Events; each `data:` is a {state} (or Error) object.",
        "content": {"text/event-stream": {"schema": event}},
    }


_OWNER_POST = {
    "responses": {
        "200": _json("Account", "The account after the change."),
        "401": _json("Error", "No session."),
        "403": _json("Error", "Cross-site request."),
    }
}

_KIND = {
    "name": "kind",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["spotify", "lastfm", "listenbrainz"]},
}
_PUSH_TOKEN = {
    "name": "Authorization",
    "in": "header",
    "required": True,
    "description": "Token <push token> (ListenBrainz's user-token form).",
    "schema": {"type": "string", "pattern": "^Token [!-~]+$"},
}
_HOOK_ID = {"name": "hook_id", "in": "path", "required": True, "schema": {"type": "string"}}
_OWNER = {"401": _json("Error", "No session."), "403": _json("Error", "Cross-site request.")}
_WEBHOOK_PATHS: dict[str, Any] = {
    "/api/account/webhooks": {
        "get": {
            "summary": "The owner's track-change webhooks and their recent deliveries",
            "responses": {"200": _json("Webhooks", "Newest deliveries first."), **_OWNER},
        },
        "post": {
            "summary": "Add a webhook (at most 5): its signing secret is shown this once",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["url"],
                            "properties": {"url": {"type": "string", "format": "uri"}},
                        }
                    }
                },
            },
            "responses": {
                "201": _json("WebhookCreated", "The id and the whsec_ secret."),
                "400": _json("Error", "A URL that may not be used, or five already."),
                **_OWNER,
            },
        },
    },
    "/api/account/webhooks/{hook_id}": {
        "delete": {
            "parameters": [_HOOK_ID],
            "responses": {
                "204": {"description": "Deleted."},
                "404": _json("Error", "No such webhook."),
                **_OWNER,
            },
        }
    },
    "/api/account/webhooks/{hook_id}/test": {
        "post": {
            "summary": "Send a webhook.test event (its delivery shows in the list)",
            "parameters": [_HOOK_ID],
            "responses": {
                "202": {"description": "Queued."},
                "404": _json("Error", "No such webhook."),
                **_OWNER,
            },
        }
    },
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
        "/api/spotify/events": {
            "get": {"responses": {"200": _events("NowPlaying"), "401": _json("Error", "")}}
        },
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
        "/api/account/push-token": {"post": _OWNER_POST},
        "/api/account/sources/{kind}": {
            "delete": {
                "summary": "Unlink a source (never the last one the owner signs in with)",
                "parameters": [_KIND],
                "responses": {
                    "200": _json("Account", "The account after the change."),
                    "404": _json("Error", "No such source, or not linked."),
                    "409": _json("Error", "The last way to sign in: kept, and said so."),
                    **_OWNER,
                },
            }
        },
        "/1/submit-listens": {
            "post": {
                "summary": "Push what plays, as ListenBrainz's submit-listens (playing_now,"
                " single, import), with Authorization: Token <push token>.",
                "parameters": [_PUSH_TOKEN],
                "responses": {
                    "200": {"description": '{"status": "ok"}'},
                    "400": {"description": "A malformed or oversized submission, named."},
                    "401": {"description": "No token, or not a push token."},
                },
            }
        },
        "/1/validate-token": {
            "get": {
                "summary": "Whether a push token is good (ListenBrainz's shape).",
                "parameters": [_PUSH_TOKEN],
                "responses": {
                    "200": {"description": "valid, and the widget's name (or not valid)"},
                    "400": {"description": "No token given (ListenBrainz's error shape)."},
                },
            }
        },
        "/hooks/web-scrobbler/{token}": {
            "post": {
                "summary": "Web Scrobbler's webhook: nowplaying, paused, resumedplaying, scrobble.",
                "parameters": [
                    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": '{"status": "ok"}'},
                    "400": {"description": "A malformed event, named."},
                    "401": {"description": "Not a push token."},
                },
            }
        },
        "/api/account/settings": {
            "post": {
                "responses": {
                    **_OWNER_POST["responses"],
                    "400": _json("Error", "Not an object whose lastPlayed is a boolean."),
                },
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["lastPlayed"],
                                "properties": {"lastPlayed": {"type": "boolean"}},
                            }
                        }
                    },
                },
            }
        },
        **_WEBHOOK_PATHS,
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
                "parameters": [_PUBLIC_ID, *query_parameters(CardOptions)],
                "responses": {
                    "200": {"description": "The card, always an image.", "content": _SVG},
                    "304": {"description": "Not modified (If-None-Match)."},
                    "400": {
                        "description": "A bad parameter: an image that names it.",
                        "content": _SVG,
                    },
                },
            }
        },
        "/p/{public_id}.png": _png(
            "The card as a PNG (twice its size), for places that show no SVG", CardOptions
        ),
        "/p/{public_id}/social.png": _png(
            "The card on a 1200x630 PNG: the link preview's og:image", CardOptions
        ),
        "/p/{public_id}/recent.png": _png("The recently-played card as a PNG", RecentOptions),
        "/oembed": {
            "get": {
                "summary": "oEmbed (https://oembed.com) for a widget link: the iframe, as rich",
                "parameters": [
                    {"name": n, "in": "query", "required": n == "url", "schema": t}
                    for n, t in (
                        ("url", {"type": "string", "format": "uri"}),
                        ("format", {"type": "string", "enum": ["json", "xml"]}),
                        ("maxwidth", {"type": "integer", "minimum": 1}),
                        ("maxheight", {"type": "integer", "minimum": 1}),
                    )
                ],
                "responses": {
                    "200": _json("OEmbed", "The embed; within maxwidth and maxheight."),
                    "400": _json("Error", "No url, a bad size or a bad card option, named."),
                    "404": _json("Error", "Not a widget link of this site, or no card fits."),
                    "501": _json("Error", "A format other than json."),
                },
            }
        },
        "/p/{public_id}/recent.svg": {
            "get": {
                "summary": "The recently-played card (when the owner shares it)",
                "parameters": [_PUBLIC_ID, *query_parameters(RecentOptions)],
                "responses": {
                    "200": {
                        "description": "The list, always an image (not shared or an unknown link:"
                        " an image that says so).",
                        "content": _SVG,
                    },
                    "304": {"description": "Not modified (If-None-Match)."},
                    "400": {
                        "description": "A bad parameter: an image that names it.",
                        "content": _SVG,
                    },
                },
            }
        },
        "/p/{public_id}/recent.json": {
            "get": {
                "summary": "What the account played recently (when the owner shares it)",
                "parameters": [_PUBLIC_ID, *query_parameters(RecentOptions)],
                "responses": {
                    "200": _json("Recent", "Now playing (when a track plays), then the last."),
                    "400": _json("Error", "A bad parameter, named in the message."),
                    "404": _json("Error", "Unknown link, or recently played not shared."),
                    "503": _json("Error", "Spotify unavailable."),
                },
            }
        },
        "/p/{public_id}/events": {
            "get": {
                "parameters": [_PUBLIC_ID],
                "responses": {
                    "200": _events("PublicState"),
                    "404": _json("Error", "Unknown or withdrawn link."),
                },
            }
        },
        "/p/{public_id}": {
            "get": {
                "parameters": [_PUBLIC_ID, *query_parameters(CardOptions)],
                "responses": {
                    "200": {"description": "The embeddable widget page (HTML)."},
                    "400": {"description": "A bad parameter, named (HTML page)."},
                    "404": {"description": "Unknown or withdrawn link (HTML page)."},
                },
            }
        },
        "/p/{public_id}/overlay": {
            "get": {
                "summary": "The stream overlay, for OBS browser sources",
                "parameters": [_PUBLIC_ID, *query_parameters(OverlayOptions)],
                "responses": {
                    "200": {"description": "A transparent page with the live card (HTML)."},
                    "400": {"description": "A bad parameter, named (HTML page)."},
                    "404": {"description": "Unknown or withdrawn link (HTML page)."},
                },
            }
        },
        "/p/{public_id}/embed.js": {
            "get": {
                "summary": "The drop-in embed: defines <now-playing>, places one if none",
                "parameters": [_PUBLIC_ID],
                "responses": {
                    "200": {
                        "description": "The script (CORS *, ETag).",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Not modified (If-None-Match)."},
                    "404": _json("Error", "Unknown or withdrawn link."),
                },
            }
        },
        "/p/{public_id}/colours": {
            "get": {
                "summary": "The cover theme's colours for the cover shown now (the live widget's)",
                "parameters": [
                    _PUBLIC_ID,
                    {
                        "name": "theme",
                        "in": "query",
                        "required": False,
                        "description": "cover (the default): the cover theme's colours; another"
                        " theme: its colours with the cover's accent (accent=cover).",
                        "schema": {"type": "string", "enum": [t.value for t in Theme]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The cover URL they come from (null: none) and the colours"
                        " as CSS custom properties (CORS *).",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["cover", "properties"],
                                    "properties": {
                                        "cover": {"type": ["string", "null"]},
                                        "properties": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "400": _json("Error", "An unknown theme, named in the message."),
                    "404": _json("Error", "Unknown or withdrawn link."),
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


def _rate_limited(paths: dict[str, Any]) -> None:
    """Declare the per-address rate limit's 429 on every path under it (``web/limits.py``)."""
    limited = _json("Error", "Too many requests from this address; Retry-After says when.")
    for path, operations in paths.items():
        if path.startswith("/p/"):
            for operation in operations.values():
                operation["responses"].setdefault("429", limited)


_rate_limited(SPEC["paths"])


@functools.cache
def _body() -> bytes:
    """The document as served, rendered once: it does not change while the process runs, and
    rendering 40 KB of JSON per request was most of a pipelining client's cost to the server."""
    return bytes(JSONResponse(SPEC).body)


async def openapi(request: Request) -> Response:
    return Response(
        _body(), media_type="application/json", headers={"Cache-Control": "public, max-age=300"}
    )

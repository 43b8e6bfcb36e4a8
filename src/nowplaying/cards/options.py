"""How a card, the recent list or the overlay is asked to look: its query string, as one model.

Unknown parameters are ignored (READMEs add cache busters such as ``?v=2``); a known one with a
bad value raises :class:`BadOption`, which names it. The models are frozen: a rendered card's
cache key holds them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from nowplaying.cards.themes import Theme

__all__ = [
    "DEFAULT",
    "BadOption",
    "CardOptions",
    "Hide",
    "Idle",
    "OverlayOptions",
    "RecentOptions",
    "card_options",
    "theme_of",
]

_HEX = re.compile(r"#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


class BadOption(ValueError):
    """A card parameter with a value the model refuses; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class Hide(StrEnum):
    """Parts of the card that ``hide=`` can leave out."""

    COVER = "cover"
    ARTIST = "artist"
    PROGRESS = "progress"
    EQUALIZER = "equalizer"


class Idle(StrEnum):
    """What the card shows while nothing plays."""

    LAST = "last"
    """The last track played, when the owner shares it; else the idle text."""
    TEXT = "text"
    """Only the idle text."""
    HIDE = "hide"
    """An empty, transparent image."""


def _colour(value: object) -> object:
    """``1db954``, ``#1db954`` or ``#1db``, as ``#1db954`` (a ``#`` in a URL must be %23)."""
    if not isinstance(value, str):
        return value
    match = _HEX.fullmatch(value.strip())
    if match is None:
        raise ValueError("a hex colour such as 1db954 or 1db954cc")
    digits = match.group(1).lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits


def _parts(value: object) -> object:
    if isinstance(value, str):
        return frozenset(p.strip() for p in value.split(",") if p.strip())
    return value


Colour = Annotated[
    str,
    BeforeValidator(_colour),
    Field(pattern=r"^#[0-9a-f]{6}([0-9a-f]{2})?$"),
    WithJsonSchema(
        {"type": "string", "pattern": "^#?" + _HEX.pattern[2:] + "$", "examples": ["1db954"]}
    ),
]


def _accent(value: object) -> object:
    """A colour, or ``cover`` (the album art's liveliest colour, made readable)."""
    if isinstance(value, str) and value.strip().lower() == COVER_ACCENT:
        return COVER_ACCENT
    return _colour(value)


COVER_ACCENT = "cover"
Accent = Annotated[
    str,
    BeforeValidator(_accent),
    Field(pattern=r"^(#[0-9a-f]{6}([0-9a-f]{2})?|cover)$"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(#?" + _HEX.pattern[2:] + "|cover)$",
            "examples": ["1db954", "cover"],
        }
    ),
]


class CardOptions(BaseModel):
    """The card's query parameters, validated; unknown parameters are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    theme: Theme = Field(default=Theme.AUTO, description="The look.")
    size: Literal["normal", "compact"] = Field(
        default="normal", description="compact: the small layout, whatever the theme's colours."
    )
    bg: Colour | None = Field(default=None, description="Background colour (hex, no #).")
    text: Colour | None = Field(default=None, description="Text colour (hex, no #).")
    accent: Accent | None = Field(
        default=None, description="Accent colour (hex, no #), or cover: taken from the album art."
    )
    transparent: bool = Field(default=False, description="No background or border.")
    radius: int | None = Field(default=None, ge=0, le=60, description="Corner radius (px).")
    width: int | None = Field(default=None, ge=240, le=800, description="Card width (px).")
    hide: Annotated[frozenset[Hide], BeforeValidator(_parts)] = Field(
        default=frozenset(), description="Comma-separated parts to leave out."
    )
    idle: Idle = Field(
        default=Idle.LAST, description="While nothing plays: last played, text, or hide."
    )
    idle_text: str | None = Field(
        default=None,
        min_length=1,
        max_length=60,
        description="The text shown while nothing plays (default: Not playing).",
    )

    @property
    def compact(self) -> bool:
        return self.size == "compact"

    @property
    def cover_colours(self) -> bool:
        """Whether the album art gives the colours (the ``cover`` theme) or the accent."""
        return self.theme is Theme.COVER or self.accent == COVER_ACCENT


class RecentOptions(CardOptions):
    """The recently-played card's parameters: the card's, and how many tracks."""

    limit: int = Field(default=5, ge=1, le=10, description="How many tracks (1-10).")


class OverlayOptions(CardOptions):
    """The stream overlay's query string: the card's options, and how the overlay behaves."""

    theme: Theme = Field(default=Theme.DARK, description="The look.")
    layout: Literal["canvas", "strip"] = Field(
        default="canvas",
        description="A card in a corner of a 1920x1080 canvas, or a full-width strip.",
    )
    position: Literal["bottom-left", "bottom-right", "top-left", "top-right"] = Field(
        default="bottom-left", description="Where the card sits on the canvas."
    )
    fade: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Seconds after a track change until the card fades; 0: never.",
    )
    paused: Literal["hide", "show"] = Field(
        default="hide", description="Whether a paused track shows."
    )


DEFAULT = CardOptions()


_T = TypeVar("_T", bound=CardOptions)


def card_options(query: Mapping[str, str], model: type[_T]) -> _T:
    """The options of a query string; raises :class:`BadOption` naming the first bad parameter."""
    if not query:
        return model()
    data: dict[str, Any] = {k: v for k, v in query.items() if k in model.model_fields}
    if "compact" in query and "size" not in data:
        data["size"] = "compact"  # the old spelling, ?compact
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else "query"
        raise BadOption(param, _message(first)) from e


def theme_of(query: Mapping[str, str]) -> Theme:
    """The query's theme when it names one, else ``auto`` (for a card about a bad parameter)."""
    value = query.get("theme", "")
    return Theme(value) if value in _THEMES else Theme.AUTO


_THEMES = frozenset(Theme)


def _message(error: Any) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "value_error":
        return f"expected {ctx.get('error')}"
    if error["type"] == "enum":
        return f"expected one of {ctx.get('expected')}"
    return str(error["msg"]).replace("Input should be", "expected")

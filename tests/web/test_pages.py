"""The HTML pages: every Spotify or user value escaped, no inline script or style, strict variables.

Each page is rendered once with a plain value and once with a hostile one in every field that
takes outside text; parsed with :mod:`html.parser`, the two must have the same elements and
attributes (nothing injected, nothing lost) and the hostile value must come back, decoded,
exactly as it went in.
"""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import jinja2
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.responses import HTMLResponse

from nowplaying.cards.options import CardOptions, OverlayOptions
from nowplaying.web import pages

HOSTILE = [
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "Tom & Jerry &amp; &lt;b&gt; &#60;",
    "\u202eevil.exe\u202c العربية 🎵 Zoë",
    "</textarea><script>alert(1)</script>",
    "{{ 7 * 7 }}{% raw %}",
    "javascript:alert(1)",
]


class Parsed(HTMLParser):
    """The elements (tag and attribute names, in order) and every decoded string of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: list[tuple[str, ...]] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.strings: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.shape.append((tag, *(name for name, _ in attrs)))
        self.attrs.extend(attrs)
        self.strings.extend(value for _, value in attrs if value is not None)

    def handle_endtag(self, tag: str) -> None:
        self.shape.append(("/" + tag,))

    def handle_data(self, data: str) -> None:
        self.strings.append(data)


def _links(value: str) -> dict[str, str]:
    return dict.fromkeys(("page", "json", "svg", "events", "open"), value)


def _connected(value: str, *, published: bool) -> HTMLResponse:
    return pages.home_connected(
        display_name=value,
        reconnect_reason=value,
        demo=True,
        share=pages.Share(
            links=_links(value) if published else None, last_played=True, reconnect_by=value
        ),
        pause_note=value,
    )


# Every page, as a function of the one value put in each of its outside-text fields.
PAGES: dict[str, Callable[[str], HTMLResponse]] = {
    "home_anonymous": lambda _: pages.home_anonymous(demo=True, sources=[("Spotify", "/login")]),
    "connect_listenbrainz": lambda v: pages.connect_listenbrainz(message=v, status=400, demo=True),
    "home_connected, sources": lambda v: pages.home_connected(
        display_name=v,
        reconnect_reason=None,
        demo=False,
        sources=pages.Sources(linked=[("lastfm", "Last.fm", v, False, v)], connect=[]),
    ),
    "terminal_done": lambda _: pages.terminal_done(demo=True),
    "home_connected, published": lambda v: _connected(v, published=True),
    "home_connected, not published": lambda v: _connected(v, published=False),
    "home_connected, no share panel": lambda v: pages.home_connected(
        display_name=v, reconnect_reason=None, demo=False
    ),
    "error": lambda v: pages.error_page(v, v, status=400, demo=False),
    # model_construct: the text fields as the template gets them, however long or odd.
    "embed": lambda v: pages.embed_page(v, CardOptions.model_construct(idle_text=v)),
    "overlay": lambda v: pages.overlay_page(v, OverlayOptions.model_construct(idle_text=v)),
}
TAKES_TEXT = [name for name in PAGES if name not in ("home_anonymous", "terminal_done")]


def _html(name: str, value: str) -> str:
    return bytes(PAGES[name](value).body).decode()


def _assert_escaped(name: str, value: str) -> None:
    plain, hostile = Parsed(_html(name, "x")), Parsed(_html(name, value))
    assert hostile.shape == plain.shape, f"{name}: the value changed the page's elements"
    assert any(value in s for s in hostile.strings), f"{name}: the value did not come back"


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("name", TAKES_TEXT)
def test_hostile_values_come_out_escaped(name: str, value: str) -> None:
    """No hostile value in any field injects an element or an attribute, and each reads back."""
    _assert_escaped(name, value)


@settings(deadline=None)  # renders every page per example: a loaded machine is no defect
@given(st.text(min_size=1))
@example("<")
@example('"')
@example("'")
@example("&")
def test_any_text_is_escaped_everywhere(value: str) -> None:
    """Any text at all, in every field of every page, leaves the elements as they were."""
    for name in TAKES_TEXT:
        _assert_escaped(name, value)


def test_hostile_values_in_attributes_stay_in_their_attribute() -> None:
    """A quote in a value closes no attribute: the widget's data attributes hold it whole."""
    value = HOSTILE[1]
    parsed = Parsed(_html("embed", value))
    attrs = dict(parsed.attrs)
    assert attrs["data-endpoint"] == f"{value}.json"
    assert attrs["data-events"] == f"{value}/events"
    assert attrs["data-idle-text"] == value
    assert "onerror" not in attrs
    assert "img" not in {shape[0] for shape in parsed.shape}


def test_the_shape_check_catches_an_injection() -> None:
    """The comparison the tests above rely on fails on unescaped markup."""
    assert Parsed("<p>x</p>").shape != Parsed("<p><img src=x onerror=alert(1)></p>").shape
    assert Parsed('<a href="x">').shape != Parsed('<a href="" onclick="y">').shape


@pytest.mark.parametrize("name", list(PAGES))
def test_no_inline_script_or_style(name: str) -> None:
    """The CSP allows only files from 'self': no inline script, style or event handler."""
    parsed = Parsed(_html(name, HOSTILE[1]))
    tags = [shape[0] for shape in parsed.shape]
    assert "style" not in tags
    assert "style" not in {attr for attr, _ in parsed.attrs}
    assert not any(attr.startswith("on") for attr, _ in parsed.attrs)
    assert all("src" in s for s in parsed.shape if s[0] == "script")


def test_reconnect_reasons_say_why() -> None:
    """The owner page explains an unknown key and a revoked grant each in its own words."""
    for reason, text in (("unknown_key", pages.UNKNOWN_KEY_TEXT), ("revoked", pages.REVOKED_TEXT)):
        html = bytes(
            pages.home_connected(display_name="a", reconnect_reason=reason, demo=False).body
        ).decode()
        parsed = Parsed(html)
        assert ("data-np-reason", reason) in parsed.attrs
        assert any(text in s for s in parsed.strings)


def test_the_last_played_switch_reflects_the_setting() -> None:
    """The checkbox is checked exactly when "last played" is on."""
    for on in (True, False):
        share = pages.Share(links=None, last_played=on, reconnect_by="1 June 2027")
        html = pages.home_connected(
            display_name="a", reconnect_reason=None, demo=False, share=share
        )
        assert (("checked", None) in Parsed(bytes(html.body).decode()).attrs) is on


def test_pages_are_private_and_carry_their_status() -> None:
    """Pages are never cached by a shared cache; an error page has its status."""
    response = pages.error_page("Nope", "Not here.", status=404, demo=False)
    assert response.status_code == 404
    assert response.headers["cache-control"] == "private, no-store"


def test_a_missing_variable_raises() -> None:
    """StrictUndefined: a template variable nobody passed is an error, not an empty string."""
    with pytest.raises(jinja2.UndefinedError, match="message"):
        pages.render("error.html", title="t", demo=False)

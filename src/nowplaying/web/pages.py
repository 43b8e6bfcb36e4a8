"""HTML pages: Jinja2 templates from ``web/templates``, autoescaped, strict about variables.

No inline script or style anywhere: the CSP is ``script-src 'self'; style-src 'self'`` (the
embed page's is :data:`EMBED_CSP`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jinja2
from starlette.responses import HTMLResponse

from nowplaying import schema
from nowplaying.cards.options import CardOptions, OverlayOptions
from nowplaying.cards.png import SOCIAL_HEIGHT, SOCIAL_WIDTH
from nowplaying.cards.themes import THEMES
from nowplaying.engine.problems import UpstreamRefusal, Withdrawal
from nowplaying.models import SourceKind
from nowplaying.web.errors import PRIVATE

EMBED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors *"
)

UNKNOWN_KEY_TEXT = (
    "This server's secret key changed, and the key that sealed your Spotify grant is not "
    "configured any more. The operator can add the previous key to NOWPLAYING_OLD_SECRET_KEYS "
    "(nothing was deleted), or you can reconnect."
)
REVOKED_TEXT = "Spotify no longer accepts this connection."


@functools.cache
def _environment() -> jinja2.Environment:
    # Built on first use, not at import: loading templates is I/O.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("nowplaying.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """``template`` rendered with ``context``; a variable it uses and was not given raises
    :class:`jinja2.UndefinedError`."""
    return _environment().get_template(template).render(context)


class Snippet(NamedTuple):
    key: str
    label: str
    text: str
    themed: bool = False
    """Its ``theme=auto`` follows the share panel's theme picker (owner.js)."""


@dataclass(frozen=True, slots=True)
class Share:
    """What the owner's share panel shows: the public links (``None``: not published), the
    "last played" setting and the date Spotify will ask for a reconnect."""

    links: dict[str, str] | None
    last_played: bool
    reconnect_by: str | None
    """None: the widget has no Spotify grant to renew."""

    @staticmethod
    def themes() -> list[tuple[str, str, int, int]]:
        """The picker's choices: every look of the one theme set, ``(value, label, width,
        height)`` (the size an iframe of it wants)."""
        return [(str(s.theme), s.label, s.layout.width, s.layout.height) for s in THEMES.values()]

    def snippets(self) -> list[Snippet]:
        """The copy-paste snippets for the published links (plain text; the page escapes it)."""
        if self.links is None:
            return []
        svg, page, opener, js = (self.links[k] for k in ("svg", "page", "open", "json"))
        iframe = (
            f'<iframe src="{page}?theme=auto" width="420" height="120" '
            'style="border:0" title="Now playing on Spotify" loading="lazy"></iframe>'
        )
        picture = (
            f'<a href="{opener}">\n  <picture>\n'
            f'    <source media="(prefers-color-scheme: dark)" srcset="{svg}?theme=dark">\n'
            f'    <img src="{svg}?theme=light" alt="Now playing on Spotify" width="420"'
            ' height="120">\n  </picture>\n</a>'
        )
        script = f'<script src="{page}/embed.js" data-theme="auto" async></script>'
        element = (
            f'<now-playing src="{page}" theme="auto"></now-playing>\n'
            f'<script src="{page}/embed.js" async></script>'
        )
        fetch = (
            f'fetch("{js}").then(r => r.json()).then(np => {{\n'
            "  el.textContent = np.isPlaying ? `${np.title} — ${np.artist}` : 'Not playing';\n});"
        )
        return [
            Snippet("md", "Markdown for a README", f"[![Now playing on Spotify]({svg})]({opener})"),
            Snippet("picture", "A README on GitHub, light and dark (HTML)", picture),
            Snippet("iframe", "Embed on a web page (iframe)", iframe, themed=True),
            Snippet("script", "Drop-in script: the widget where it stands", script, themed=True),
            Snippet("element", "Custom element, themable with CSS (--np-accent...)", element, True),
            Snippet(
                "overlay",
                "OBS browser source (1920x1080; ?layout=strip, ?fade=10)",
                f"{page}/overlay?theme=auto&fade=10",
                themed=True,
            ),
            Snippet("fetch", "Your own front end (JSON, CORS enabled)", fetch),
        ]


@dataclass(frozen=True, slots=True)
class Sources:
    """What the owner page lists of the sources: ``(kind, label, user name, active, problem)``
    of each linked one, and ``(label, url)`` of each offered one not linked."""

    linked: list[tuple[str, str, str, bool, str | None]]
    connect: list[tuple[str, str]]

    @classmethod
    def of(cls, account: schema.Account, labels: Mapping[SourceKind, str]) -> Sources:
        return cls(
            linked=[
                (
                    s.kind,
                    labels[SourceKind(s.kind)],
                    s.user_name,
                    s.status == "active",
                    s.problem,
                )
                for s in account.sources
            ],
            connect=[(labels[SourceKind(c.kind)], c.url) for c in account.connect],
        )


def home_anonymous(*, demo: bool, sources: Sequence[tuple[str, str]]) -> HTMLResponse:
    """The start page: what this is, and a button for each source offered, ``(label, url)``."""
    return _page("home_anonymous.html", title="nowplaying", demo=demo, sources=sources)


def home_connected(
    *,
    display_name: str,
    reconnect_reason: str | None,
    demo: bool,
    share: Share | None = None,
    pause_note: str | None = None,
    refusal: UpstreamRefusal | None = None,
    removed: Sequence[Withdrawal] = (),
    budget_note: str | None = None,
    push: Mapping[str, str] | None = None,
    sources: Sources | None = None,
) -> HTMLResponse:
    """The owner's page. ``reconnect_reason`` (``unknown_key``, ``revoked``) says why a reconnect
    is needed; ``pause_note`` is Spotify's app-wide pause, when it is the long one; ``refusal``
    Spotify's development-mode 403 for the account, with its fix; ``removed`` the endpoints
    Spotify removed for the app (development mode), each with what is disabled; ``budget_note``
    the call budget in use; ``push`` the push token and the URLs players push to (``token``,
    ``listenbrainz_url``, ``web_scrobbler_url``)."""
    return _page(
        "home_connected.html",
        title="nowplaying",
        demo=demo,
        display_name=display_name,
        reconnect_reason=reconnect_reason,
        reconnect_text=UNKNOWN_KEY_TEXT if reconnect_reason == "unknown_key" else REVOKED_TEXT,
        pause_note=pause_note,
        refusal=refusal,
        removed=removed,
        budget_note=budget_note,
        share=share,
        push=push,
        sources=sources,
    )


def connect_listenbrainz(*, message: str | None, status: int, demo: bool) -> HTMLResponse:
    """The form that takes a ListenBrainz user token; ``message`` says what was wrong."""
    return _page(
        "connect_listenbrainz.html",
        status=status,
        title="Connect ListenBrainz",
        message=message,
        demo=demo,
    )


def terminal_done(*, demo: bool) -> HTMLResponse:
    """The browser's end of a login handed over by ``nowplaying login``."""
    return _page("terminal_done.html", title="Connected", demo=demo)


def error_page(title: str, message: str, *, status: int, demo: bool) -> HTMLResponse:
    """A friendly error page with a way back."""
    return _page("error.html", status=status, title=title, message=message, demo=demo)


def link_missing() -> HTMLResponse:
    """The page for a public link that does not exist, or no longer does."""
    return error_page("Not found", "This widget link does not exist.", status=404, demo=False)


def widget_data(options: CardOptions) -> dict[str, str]:
    """The card options as the widget's ``data-*`` attributes (``widget.js`` applies them)."""
    data = {
        name: str(value)
        for name in ("bg", "text", "accent", "radius", "width")
        if (value := getattr(options, name)) is not None
    }
    if options.transparent:
        data["transparent"] = "true"
    if options.hide:
        data["hide"] = ",".join(sorted(options.hide))
    if options.compact:
        data["size"] = "compact"
    data["idle"] = str(options.idle)
    if options.idle_text:
        data["idle-text"] = options.idle_text
    return data


@dataclass(frozen=True, slots=True)
class Preview:
    """The link preview of one widget page: plain text (the template escapes it)."""

    title: str
    description: str
    page_url: str
    image_url: str
    image_alt: str
    theme_color: str
    oembed_url: str
    image_width: int = SOCIAL_WIDTH
    image_height: int = SOCIAL_HEIGHT


def embed_page(link: str, options: CardOptions, *, preview: Preview | None = None) -> HTMLResponse:
    """The bare widget, for ``<iframe>`` on any site (no cookies used, no links to our pages),
    with the link preview's meta tags and the oEmbed discovery link when ``preview`` is given."""
    html = render(
        "embed.html",
        endpoint=f"{link}.json",
        events=f"{link}/events",
        theme=str(options.theme),
        data=widget_data(options),
        preview=preview,
    )
    return HTMLResponse(html)


def overlay_page(link: str, options: OverlayOptions) -> HTMLResponse:
    """The stream overlay (``web/overlay.py``): the widget on a transparent page, for OBS."""
    data = {**widget_data(options), "overlay": "", "fade": str(options.fade)}
    data["paused"] = options.paused
    html = render(
        "overlay.html",
        endpoint=f"{link}.json",
        events=f"{link}/events",
        theme=str(options.theme),
        options=options,
        data=data,
    )
    return HTMLResponse(html)


def _page(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, **context), status_code=status, headers=PRIVATE)

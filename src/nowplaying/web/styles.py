"""``/static/themes.css``: the theme set of :mod:`nowplaying.cards.themes` as CSS custom properties.

Generated, never written by hand, so the embed page, the owner's widget, the overlay and the
``<now-playing>`` element wear exactly the looks the SVG card draws. Each theme applies to
``.np[data-theme=…]`` on a page and to ``:host([theme=…])`` in the element's Shadow DOM (set on
the host, so a page's own ``now-playing { --np-accent: … }`` wins over it). Besides colours and
sizes, three properties tell ``widget.js`` how a look is laid out (it copies them to data
attributes that ``widget.css`` styles): ``--np-cover`` (square, bleed, backdrop, none),
``--np-times`` (1: ``m:ss`` under the bar) and ``--np-label`` (0: no state line). Last,
``.np[data-size="compact"]`` gives any look the compact geometry (``?size=compact``).
"""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response

from nowplaying.cards.themes import COMPACT, THEMES, Theme, stylesheet
from nowplaying.web.public import revalidated, strong_etag


def selector(theme: Theme) -> str:
    return f'.np[data-theme="{theme}"],:host([theme="{theme}"])'


@functools.cache
def themes_css() -> tuple[bytes, str]:
    """The stylesheet and its ETag, built once."""
    layout = "\n".join(
        f"{selector(s.theme)}{{--np-cover:{s.layout.cover};"
        f"--np-times:{int(s.layout.times)};--np-label:{int(s.layout.label)}}}"
        for s in THEMES.values()
    )
    # size=compact: the compact geometry in any theme's colours (after the themes, so it wins).
    compact = ";".join(f"{name}:{value}" for name, value in COMPACT.items())
    compact = f'.np[data-size="compact"]{{{compact}}}'
    body = (stylesheet(selector) + layout + "\n" + compact + "\n").encode()
    return body, strong_etag(body)


async def themes(request: Request) -> Response:
    body, etag = themes_css()
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
    return revalidated(request, body, "text/css; charset=utf-8", headers)

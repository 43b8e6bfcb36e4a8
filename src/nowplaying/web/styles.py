"""``/static/themes.css``: the theme set of :mod:`nowplaying.cards.themes` as CSS properties.

Generated, so every HTML look is the one the SVG card draws. A theme applies on the host
(``:host([theme=…])``), so a page's own ``now-playing { --np-accent: … }`` wins;
``--np-cover``, ``--np-times`` and ``--np-label`` tell ``widget.js`` how a look is laid out.
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

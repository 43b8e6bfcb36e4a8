"""HTML pages, rendered from Python with every dynamic value escaped.

No inline script or style anywhere: the CSP is ``script-src 'self'; style-src 'self'``.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse


def _layout(title: str, body: str, *, demo: bool) -> str:
    banner = (
        '<p class="demo-banner" role="note">Demo mode — simulated Spotify. '
        "Nothing here talks to the real Spotify.</p>"
        if demo
        else ""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/static/page.css">
<link rel="stylesheet" href="/static/widget.css">
</head>
<body>
{banner}
<main class="page">
<header class="page__header"><a class="page__brand" href="/">nowplaying</a></header>
{body}
</main>
</body>
</html>
"""


def page(title: str, body: str, *, demo: bool, status: int = 200) -> HTMLResponse:
    """A full page around ``body`` (already-escaped HTML)."""
    return HTMLResponse(
        _layout(title, body, demo=demo),
        status_code=status,
        headers={"Cache-Control": "private, no-store"},
    )


def home_anonymous(*, demo: bool) -> HTMLResponse:
    body = """
<section class="card hero">
  <h1>Show what you're listening to</h1>
  <p>Connect your Spotify account once. This server keeps the grant safe and shows what you play
  right now &mdash; here, on your website, or in a README.</p>
  <p><a class="button button--primary" href="/login">Connect Spotify</a></p>
  <p class="fine">Asks only to read what is currently playing. You can disconnect at any time.</p>
</section>"""
    return page("nowplaying", body, demo=demo)


def widget_container(
    *, endpoint: str, events: str | None, reconnect_url: str | None, theme: str = "auto"
) -> str:
    """The element ``widget.js`` fills in."""
    attrs = {
        "id": "np-widget",
        "class": "np",
        "data-endpoint": endpoint,
        "data-interval": "10000",
        "data-theme": theme,
    }
    if events:
        attrs["data-events"] = events
    if reconnect_url:
        attrs["data-reconnect-url"] = reconnect_url
    rendered = " ".join(f'{k}="{escape(v)}"' for k, v in attrs.items())
    return f'<div {rendered} role="status" aria-live="polite"></div>'


def home_connected(
    *, display_name: str, needs_reconnect: bool, demo: bool, profile_url: str | None = None
) -> HTMLResponse:
    notice = (
        '<p class="notice notice--warn">Spotify no longer accepts this connection. '
        '<a href="/login">Reconnect Spotify</a></p>'
        if needs_reconnect
        else ""
    )
    widget = widget_container(
        endpoint="/api/spotify", events="/api/spotify/events", reconnect_url="/login"
    )
    body = f"""
<section class="card">
  <div class="account">
    <p class="account__name">Connected as <strong>{escape(display_name)}</strong></p>
    <form method="post" action="/logout" class="account__logout">
      <button type="submit" class="button">Disconnect</button>
    </form>
  </div>
  {notice}
  {widget}
</section>
<script src="/static/widget.js" defer></script>"""
    return page("nowplaying", body, demo=demo)


def error_page(title: str, message: str, *, status: int, demo: bool) -> HTMLResponse:
    """A friendly error page with a way back."""
    body = f"""
<section class="card">
  <h1>{escape(title)}</h1>
  <p>{escape(message)}</p>
  <p><a class="button" href="/">Back to the start</a></p>
</section>"""
    return page(title, body, demo=demo, status=status)

"""HTML pages, rendered from Python with every dynamic value escaped.

No inline script or style anywhere: the CSP is ``script-src 'self'; style-src 'self'``.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse


def _layout(title: str, body: str, *, demo: bool) -> str:
    banner = (
        '<div class="notice" role="note"><strong>Demo mode — simulated Spotify.</strong> '
        "Nothing here talks to the real Spotify; set SPOTIFY_CLIENT_ID to use yours.</div>"
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
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/page.css">
<link rel="stylesheet" href="/static/widget.css">
</head>
<body>
<main class="page">
<header class="page__header"><a class="brand" href="/">nowplaying</a></header>
<div class="page__main">
{banner}
{body}
</div>
<footer class="page__footer muted">Your Spotify grant stays on this server, encrypted.</footer>
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
<section class="card">
  <h1>Show what you're listening to</h1>
  <p class="muted">Connect your Spotify account once. This server keeps the grant safe and shows
  what you play right now &mdash; here, on your website, or in a README.</p>
  <div class="actions"><a class="btn btn--primary" href="/login">Connect Spotify</a></div>
  <p class="muted">Asks only to read what is currently playing. Disconnect at any time.</p>
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


EMBED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors *"
)


def embed_page(*, endpoint: str, events: str, theme: str) -> HTMLResponse:
    """The bare widget, for ``<iframe>`` on any site (no cookies used, no links to our pages)."""
    widget = widget_container(endpoint=endpoint, events=events, reconnect_url=None, theme=theme)
    html = f"""<!doctype html>
<html lang="en" data-theme="{escape(theme)}" class="embed">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Now playing</title>
<link rel="stylesheet" href="/static/widget.css">
<link rel="stylesheet" href="/static/embed.css">
</head>
<body>
{widget}
<script src="/static/widget.js" defer></script>
</body>
</html>
"""
    return HTMLResponse(html)


def share_panel(
    *,
    links: dict[str, str] | None,
    last_played: bool,
    reconnect_by: str,
) -> str:
    """The owner's controls: publish, rotate, unpublish, last played, copy-paste snippets."""
    toggle = f"""
  <label class="switch">
    <input type="checkbox" data-np-action="settings" {"checked" if last_played else ""}>
    When nothing plays, show the last played track (labelled as such)
  </label>"""
    if links is None:
        return f"""
<section class="card stack" aria-labelledby="share-h">
  <h2 id="share-h">Share</h2>
  <p class="muted">Nothing is public. Publish to get a link for your website or README
  (an unguessable address; you can change or withdraw it at any time).</p>
  <div class="actions">
    <button class="btn btn--primary" data-np-action="publish">Publish my widget</button>
  </div>
  {toggle}
  <p class="muted">Spotify asks you to reconnect every six months: by {escape(reconnect_by)}.</p>
</section>
<script src="/static/owner.js" defer></script>"""
    svg, page, opener, js = links["svg"], links["page"], links["open"], links["json"]
    markdown = f"[![Now playing on Spotify]({svg})]({opener})"
    iframe = (
        f'<iframe src="{page}?theme=auto" width="420" height="120" '
        'style="border:0" title="Now playing on Spotify" loading="lazy"></iframe>'
    )
    fetch = (
        f'fetch("{js}").then(r => r.json()).then(np => {{\n'
        "  el.textContent = np.isPlaying ? `${np.title} — ${np.artist}` : 'Not playing';\n});"
    )
    snippets = "".join(
        f"""
  <div class="snippet">
    <label for="snip-{key}">{escape(label)}</label>
    <textarea id="snip-{key}" readonly rows="4">{escape(text)}</textarea>
    <button class="btn btn--link" data-np-copy="snip-{key}">Copy</button>
  </div>"""
        for key, label, text in (
            ("md", "Markdown for a README", markdown),
            ("iframe", "Embed on a web page", iframe),
            ("fetch", "Your own front end (JSON, CORS enabled)", fetch),
        )
    )
    return f"""
<section class="card stack" aria-labelledby="share-h">
  <h2 id="share-h">Share</h2>
  <p>Your widget is public at <a href="{escape(page)}">{escape(page)}</a>.</p>
  <p><img class="share-preview" src="{escape(svg)}" alt="Preview of the SVG card"
     width="420" height="120"></p>
  {snippets}
  {toggle}
  <div class="actions">
    <button class="btn" data-np-action="rotate">Change the link</button>
    <button class="btn btn--danger" data-np-action="unpublish">Unpublish</button>
  </div>
  <p class="muted">Changing the link stops every old one at once.</p>
  <p class="muted">Spotify asks you to reconnect every six months: by {escape(reconnect_by)}.</p>
</section>
<script src="/static/owner.js" defer></script>"""


UNKNOWN_KEY_TEXT = (
    "This server's secret key changed, and the key that sealed your Spotify grant is not "
    "configured any more. The operator can add the previous key to NOWPLAYING_OLD_SECRET_KEYS "
    "(nothing was deleted), or you can reconnect."
)
REVOKED_TEXT = "Spotify no longer accepts this connection."


def home_connected(
    *,
    display_name: str,
    reconnect_reason: str | None,
    demo: bool,
    share: str = "",
    pause_note: str | None = None,
) -> HTMLResponse:
    """The owner's page. ``reconnect_reason`` (``unknown_key``, ``revoked``) says why a reconnect
    is needed; ``pause_note`` is Spotify's app-wide pause, when it is the long one."""
    notices = []
    if reconnect_reason is not None:
        why = UNKNOWN_KEY_TEXT if reconnect_reason == "unknown_key" else REVOKED_TEXT
        notices.append(
            f'<div class="notice notice--warning" role="alert" data-np-reason='
            f'"{escape(reconnect_reason)}">{escape(why)} <a href="/login">Reconnect Spotify</a>'
            "</div>"
        )
    if pause_note is not None:
        notices.append(
            f'<div class="notice" role="status" data-np-pause>{escape(pause_note)} Nothing '
            "updates until then: Spotify extends the pause for apps that keep asking.</div>"
        )
    notice = "\n  ".join(notices)
    widget = widget_container(
        endpoint="/api/spotify", events="/api/spotify/events", reconnect_url="/login"
    )
    body = f"""
<section class="card stack">
  {notice}
  {widget}
  <div class="actions">
    <p class="muted">Connected as <strong>{escape(display_name)}</strong></p>
    <form method="post" action="/logout">
      <button type="submit" class="btn btn--danger">Disconnect</button>
    </form>
  </div>
</section>
{share}
<script src="/static/widget.js" defer></script>"""
    return page("nowplaying", body, demo=demo)


def error_page(title: str, message: str, *, status: int, demo: bool) -> HTMLResponse:
    """A friendly error page with a way back."""
    body = f"""
<section class="card">
  <h1>{escape(title)}</h1>
  <p class="muted">{escape(message)}</p>
  <div class="actions"><a class="btn" href="/">Back to the start</a></div>
</section>"""
    return page(title, body, demo=demo, status=status)

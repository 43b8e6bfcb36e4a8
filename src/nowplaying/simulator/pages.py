"""The HTML the simulated accounts service shows: the consent page and its error page.

Every value that came from a request or from user data is HTML-escaped. No JavaScript.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from nowplaying.simulator.accounts import User

SCOPE_TEXT: Mapping[str, str] = {
    "ugc-image-upload": "Upload images to personalize your profile or playlist cover",
    "user-read-playback-state": "Read your currently playing content and Spotify Connect devices",
    "user-modify-playback-state": "Control playback on your Spotify clients and Connect devices",
    "user-read-currently-playing": "Read your currently playing content",
    "app-remote-control": "Communicate with the Spotify app on your device",
    "streaming": "Play content and control playback on your other devices",
    "playlist-read-private": "Access your private playlists",
    "playlist-read-collaborative": "Access your collaborative playlists",
    "playlist-modify-private": "Manage your private playlists",
    "playlist-modify-public": "Manage your public playlists",
    "user-follow-modify": "Manage who you are following",
    "user-follow-read": "Access your followers and who you are following",
    "user-read-playback-position": "Read your position in content you have played",
    "user-top-read": "Read your top artists and content",
    "user-read-recently-played": "Access your recently played items",
    "user-library-modify": "Manage your saved content",
    "user-library-read": "Access your saved content",
    "user-read-email": "Get your real email address",
    "user-read-private": "Access your subscription details",
    "user-personalized": "Get personalized content for you",
    "user-soa-link": "Link a partner user account to a Spotify user account",
    "user-soa-unlink": "Unlink a partner user account from a Spotify account",
    "soa-manage-entitlements": "Modify entitlements for linked users",
    "soa-manage-partner": "Update partner information",
    "soa-create-partner": "Create new partners, platform partners only",
}

_STYLE = """
body{margin:0;font:16px/1.5 system-ui,sans-serif;background:#121212;color:#fff}
main{max-width:28rem;margin:3rem auto;padding:2rem;background:#181818;border-radius:.75rem}
h1{font-size:1.5rem;margin:0 0 1rem}.brand{color:#1ed760;font-weight:700}
ul{padding-left:1.2rem}li{margin:.3rem 0}label{display:block;margin:1rem 0 .3rem}
select{width:100%;padding:.4rem;border-radius:.3rem}
.buttons{display:flex;gap:1rem;margin-top:1.5rem}
button{flex:1;padding:.75rem;border:0;border-radius:2rem;font-weight:700;cursor:pointer}
.agree{background:#1ed760;color:#000}
.cancel{background:transparent;color:#fff;border:1px solid #777}
small{color:#aaa}.error{color:#f15e6c}
""".strip()


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><main><p class="brand">Spotify <small>(simulated)</small></p>{body}</main>'
        "</body></html>\n"
    )


def consent_page(
    *,
    action: str,
    app_name: str,
    scopes: Sequence[str],
    params: Mapping[str, str],
    users: Sequence[User],
    selected_user: str,
) -> str:
    """The "Agree / Cancel" page; ``params`` travel back in hidden fields."""
    items = "".join(f"<li>{escape(SCOPE_TEXT.get(s, s))}</li>" for s in scopes) or (
        "<li>Read your public profile</li>"
    )
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in params.items()
    )
    if len(users) > 1:
        options = "".join(
            f'<option value="{escape(u.user_id)}"{" selected" * (u.user_id == selected_user)}>'
            f"{escape(u.display_name)} ({escape(u.user_id)})</option>"
            for u in users
        )
        who = (
            '<label for="user">Logged in as</label>'
            f'<select id="user" name="user">{options}</select>'
        )
    else:
        user = users[0]
        who = (
            f'<input type="hidden" name="user" value="{escape(user.user_id)}">'
            f"<p><small>Logged in as {escape(user.display_name)}</small></p>"
        )
    body = (
        f"<h1>{escape(app_name)}</h1><p>would like to:</p><ul>{items}</ul>"
        f'<form method="post" action="{escape(action)}">{hidden}{who}'
        '<div class="buttons">'
        '<button class="cancel" type="submit" name="decision" value="cancel">Cancel</button>'
        '<button class="agree" type="submit" name="decision" value="agree">Agree</button>'
        "</div></form>"
        "<p><small>You can remove this access at any time in your account settings.</small></p>"
    )
    return _page(f"Authorize {app_name} - Spotify (simulated)", body)


def error_page(message: str) -> str:
    """Spotify's own error page, shown instead of redirecting (e.g. ``INVALID_CLIENT: ...``)."""
    body = (
        "<h1>Oops! Something went wrong</h1>"
        "<p>Please try again or check out our help area.</p>"
        f'<p class="error">{escape(message)}</p>'
    )
    return _page("Error - Spotify (simulated)", body)

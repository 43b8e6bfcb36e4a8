"""A pasted link as outsiders meet it, over a real loopback socket: an unfurler reads the page and
fetches the image it names; micawber (an oEmbed consumer) discovers and embeds the widget."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import extruct
import httpx
import micawber
import pytest
from harness.browser import demo_settings, publish_over_http
from harness.live_server import free_port, serve
from PIL import Image

from nowplaying.web import create_app


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A published demo widget's link on a live server."""
    port = free_port()
    folder: Path = tmp_path_factory.mktemp("unfurl")
    with serve(create_app(demo_settings(port, folder)), port) as base:
        yield f"{base}/p/{publish_over_http(base)}"


def test_an_unfurler_reads_the_page_and_fetches_its_image(link: str) -> None:
    page = httpx.get(link, timeout=10)
    assert page.status_code == 200
    [og] = extruct.extract(page.text, base_url=link, syntaxes=["opengraph"], uniform=True)[
        "opengraph"
    ]
    assert og["og:url"] == link and og["og:title"]
    image = httpx.get(og["og:image"], timeout=10)  # absolute: fetched as named
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    size = Image.open(io.BytesIO(image.content)).size
    assert size == (int(og["og:image:width"]), int(og["og:image:height"])) == (1200, 630)


def test_micawber_embeds_the_widget_through_oembed(link: str) -> None:
    base = link.split("/p/", 1)[0]
    providers = micawber.ProviderRegistry()
    providers.register(re.escape(base) + r"/p/\S+", micawber.Provider(f"{base}/oembed"))
    data = providers.request(link + "?theme=dark")
    assert data["type"] == "rich" and data["provider_name"] == "nowplaying"
    assert data["html"].startswith(f'<iframe src="{link}?theme=dark"')
    html = micawber.parse_text(f"Listening now:\n{link}\n", providers)  # a link on its own line
    assert f'<iframe src="{link}"' in html
    with pytest.raises(micawber.ProviderException):
        providers.request(link + "x")  # an unknown widget: the provider's 404

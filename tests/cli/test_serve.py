"""The server stack ``nowplaying serve`` runs: compiled parts when installed, else pure Python."""

from __future__ import annotations

import sys

import pytest
import uvicorn

from nowplaying.cli.main import build_parser
from nowplaying.cli.serve import describe_stack, resolve_stack


def test_auto_is_httptools_and_uvloop_when_installed() -> None:
    """They are dependencies, so a normal install serves on them."""
    assert resolve_stack("auto", "auto") == ("httptools", "uvloop")
    assert describe_stack("auto", "auto") == (
        "server stack: uvicorn, httptools parser, uvloop event loop"
    )


def test_auto_falls_back_to_pure_python_where_they_cannot_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without httptools and uvloop, ``auto`` is h11 on asyncio, as uvicorn itself resolves it,
    and the startup line says what that costs."""
    monkeypatch.setitem(sys.modules, "httptools", None)
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert resolve_stack("auto", "auto") == ("h11", "asyncio")
    factory = uvicorn.Config(app=None, loop="auto").get_loop_factory()  # type: ignore[arg-type]
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("asyncio.")
    finally:
        loop.close()
    assert "h11 parser, asyncio event loop (pure-Python parts" in describe_stack("auto", "auto")


def test_serve_takes_the_pure_python_stack_on_request() -> None:
    """``--http h11 --loop asyncio`` choose the fallback explicitly; other values are refused."""
    args = build_parser().parse_args(["serve", "--http", "h11", "--loop", "asyncio"])
    assert (args.http, args.loop) == ("h11", "asyncio")
    assert resolve_stack(args.http, args.loop) == ("h11", "asyncio")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--http", "zttp"])

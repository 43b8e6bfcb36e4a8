"""Log setup: one line per record (text or JSON), the request id on each, secrets redacted.

Upstream text is anyone's (a track called ``"x\\nERROR forged"``), so control characters are
escaped and a record is always one line. Redacting the configured secrets is a net under the rule
that no code logs one. httpx and httpcore log at WARNING: their line per request (every poll) is
noise.
A warning or error that repeats is written once per :data:`REPEAT_SECONDS`, and its next line
counts what was held back (:class:`RepeatFilter`): 10,000 identical failures are a few lines.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import TextIO

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()
"""The header's name as it is in ASGI's raw header lists."""
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
QUIET = ("httpx", "httpcore")
"""Loggers held at WARNING: one INFO line per HTTP request (every poll) helps nobody."""
REDACTED = "[redacted]"

_current: contextvars.ContextVar[list[str | None] | None] = contextvars.ContextVar(
    "nowplaying_request_id", default=None
)
"""A one-item holder, emptied when the request ends: tasks started during a request (a poller)
copy the context, and must not go on naming a request that is over."""


def current_request_id() -> str | None:
    """The id of the HTTP request being served, if any."""
    holder = _current.get()
    return holder[0] if holder else None


def escape_control(text: str) -> str:
    """``text`` on one line: control and line-separator characters as ``\\xNN``/``\\uNNNN``."""

    def one(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(one, text)


class _Scrub:
    """Redaction of known secret values, and the one-line rule."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Short values would redact ordinary words; the settings refuse secrets that short.
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _utc(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


class TextFormatter(logging.Formatter):
    """``time level logger [req id] [client address]: message``, the message escaped and
    scrubbed (an access line names its client)."""

    def __init__(self, scrub: _Scrub) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        where = f" [req {rid}]" if rid else ""
        client = getattr(record, "client", None)
        where += f" [client {client}]" if client else ""
        line = (
            f"{_utc(record.created)} {record.levelname} {record.name}{where}: "
            f"{escape_control(record.getMessage())}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self._scrub(line)


class JSONFormatter(logging.Formatter):
    """One JSON object per record (``json.dumps`` escapes every control character)."""

    def __init__(self, scrub: _Scrub) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, str] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": self._scrub(record.getMessage()),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            data["request_id"] = rid
        client = getattr(record, "client", None)
        if client:
            data["client"] = client
        if record.exc_info:
            data["exc"] = self._scrub(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


REPEAT_SECONDS = 10.0
SIMILAR_LINES = 10
"""Lines of one message template (e.g. ``poll failed for %s``) written per interval, however
many different values fill it."""
LOGGER_LINES = 50
"""Warnings (or errors) one logger writes per interval, however different their messages."""
_KEYS = 4096


class _Window:
    """Counts per key and interval: lines written, records held back since the last line."""

    def __init__(self, seconds: float, allowed: int) -> None:
        self.seconds = seconds
        self.allowed = allowed
        self._seen: dict[tuple[object, ...], list[float]] = {}  # key -> [start, written, held]

    def take(self, key: tuple[object, ...], now: float) -> float | None:
        """None when ``key`` has written its lines this interval (held back, counted), else
        how many it held back since its last line (reset)."""
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.seconds:
            if len(self._seen) >= _KEYS:
                self._seen.clear()  # forgetting allows a line again: the other windows bound it
            self._seen[key] = [now, 1.0, 0.0]
            return entry[2] if entry else 0.0
        if entry[1] >= self.allowed:
            entry[2] += 1
            return None
        entry[1] += 1
        held, entry[2] = entry[2], 0.0
        return held

    def give_back(self, key: tuple[object, ...], held: float) -> None:
        """Undo a :meth:`take` whose line another window held back: it and what it carried
        are held here again."""
        entry = self._seen[key]
        entry[1] -= 1
        entry[2] += held + 1


class RepeatFilter(logging.Filter):
    """Rate-limits repeating warnings and errors: each distinct line once per ``seconds``, each
    template :data:`SIMILAR_LINES` times, each logger :data:`LOGGER_LINES` times; the next line
    written says how many were held back.

    Times are the records' own (``created``), so no clock is read here. Below WARNING every
    record passes (access lines differ by design).
    """

    def __init__(self, seconds: float = REPEAT_SECONDS) -> None:
        super().__init__()
        self._windows = (
            _Window(seconds, 1),  # the line
            _Window(seconds, SIMILAR_LINES),  # its template
            _Window(seconds, LOGGER_LINES),  # its logger
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else None
        where = (record.name, record.levelno)
        keys = ((*where, exc, record.getMessage()), (*where, exc, str(record.msg)), where)
        taken: list[float] = []
        for window, key in zip(self._windows, keys, strict=True):
            held = window.take(key, record.created)
            if held is None:
                for i, earlier in enumerate(taken):
                    self._windows[i].give_back(keys[i], earlier)
                return False
            taken.append(held)
        if held := int(taken[0]):
            record.msg = f"{record.getMessage()} ({held} more like this held back)"
            record.args = None
        return True


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


def make_handler(
    fmt: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """A stream handler (stderr by default) with the chosen formatter and the request id."""
    handler = logging.StreamHandler(stream or sys.stderr)
    scrub = _Scrub(secrets)
    handler.setFormatter(JSONFormatter(scrub) if fmt == "json" else TextFormatter(scrub))
    handler.addFilter(RepeatFilter())
    handler.addFilter(_RequestIdFilter())
    return handler


def configure(
    level: str, fmt: str = "text", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one of ours; quiet the per-request loggers."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = make_handler(fmt, secrets, stream)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's own loggers propagate to ours (it is started with log_config=None).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return handler


def request_id(incoming: bytes | None) -> str:
    """The id for a request: a well-formed incoming ``X-Request-Id`` is kept, else a new one."""
    if incoming:
        text = incoming.decode("latin-1")
        if _ID.fullmatch(text):
            return text
    return os.urandom(8).hex()


def enter_request(rid: str) -> tuple[list[str | None], contextvars.Token[list[str | None] | None]]:
    """Name ``rid`` on every record logged from here on in this context; undo with
    :func:`leave_request` when the request ends (left set if it fails: the 500 handler runs
    after the edge and its log line names this id too; the request's task ends with the error,
    so nothing later inherits it)."""
    holder: list[str | None] = [rid]
    return holder, _current.set(holder)


def leave_request(
    holder: list[str | None], token: contextvars.Token[list[str | None] | None]
) -> None:
    holder[0] = None
    _current.reset(token)

"""Failures on demand: rate limits, errors, slow and hanging answers, used in the order added."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

ENDPOINTS = frozenset({"token", "me", "currently-playing", "recently-played", "player", "*"})


@dataclass(slots=True)
class Fault:
    """One planned failure, used up after ``times`` calls."""

    endpoint: str
    status: int | None = None
    retry_after: int | None = None
    reason: str | None = None
    body: str | dict[str, Any] | None = None
    delay: float = 0.0
    hang: bool = False
    times: int = 1

    async def answer(self) -> Response | None:
        """Wait as planned, then the failure response (None: answer normally after the delay)."""
        if self.hang:
            await asyncio.Event().wait()  # until the client gives up and the task is cancelled
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        if self.status is None:
            return None
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 429 and self.retry_after is None:
            headers["Retry-After"] = "1"
        if isinstance(self.body, str):
            return PlainTextResponse(self.body, self.status, headers=headers)
        if isinstance(self.body, dict):
            return JSONResponse(self.body, self.status, headers=headers)
        message = "Too many requests" if self.status == 429 else _phrase(self.status)
        error: dict[str, Any] = {"status": self.status, "message": message}
        if self.reason is not None:
            error["reason"] = self.reason
        return JSONResponse({"error": error}, self.status, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Faults:
    """The queue of planned failures."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def add(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        reason: str | None = None,
        body: str | dict[str, Any] | None = None,
        delay: float = 0.0,
        hang: bool = False,
        times: int = 1,
    ) -> Fault:
        """Plan a failure for the next ``times`` calls to ``endpoint``."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {sorted(ENDPOINTS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = Fault(endpoint, status, retry_after, reason, body, delay, hang, times)
        self._queue.append(fault)
        return fault

    def clear(self) -> None:
        """Forget every planned failure."""
        self._queue.clear()

    @property
    def pending(self) -> list[Fault]:
        """The failures still planned, in order."""
        return list(self._queue)

    def take(self, endpoint: str) -> Fault | None:
        """Use up one call of the first fault planned for ``endpoint`` (or ``*``)."""
        for fault in self._queue:
            if fault.endpoint in (endpoint, "*"):
                fault.times -= 1
                if fault.times == 0:
                    self._queue.remove(fault)
                return fault
        return None

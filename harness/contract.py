"""The app's own /openapi.json as a checker: does an answer match what the document says?"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from harness.app import Env

DOC_URI = "urn:nowplaying:openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in ("", *parts))


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.endswith("Z")


class Contract:
    """The app's own /openapi.json, answering 'does this response match what you document?'."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
        )
        self.formats = FormatChecker()
        self.formats.checks("date-time", raises=ValueError)(_date_time)

    def validator(self, pointer: str) -> Any:
        return Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}"}, registry=self.registry, format_checker=self.formats
        )

    def errors(self, template: str, response: httpx.Response) -> list[str]:
        """Why ``response`` (to a request for ``template``) is not what the document says."""
        method = response.request.method.lower()
        documented = self.doc["paths"][template][method]["responses"]
        status = str(response.status_code)
        if status not in documented:
            return [] if status == "429" else [f"{template}: undocumented status {status}"]
        content = documented[status].get("content")
        if not content:
            return []
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media not in content:
            return [f"{template} {status}: undocumented content type {media!r}"]
        if not media.endswith("json"):
            return []
        pointer = _pointer("paths", template, method, "responses", status, "content", media)
        validator = self.validator(pointer + "/schema")
        return [
            f"{template} {status}: {e.message} at {list(e.absolute_path)}"
            for e in validator.iter_errors(response.json())
        ]

    def check(self, template: str, response: httpx.Response) -> None:
        assert self.errors(template, response) == [], response.text


async def contract(env: Env) -> Contract:
    response = await env.client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    return Contract(doc)

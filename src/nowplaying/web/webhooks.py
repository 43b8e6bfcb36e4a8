"""The owner's webhooks API under ``/api/account/webhooks``: list, add, delete, test.

A URL is checked when added (https, no credentials, no private literal address) and the
addresses its host resolves to again before every delivery (:mod:`nowplaying.ops.webhooks`); the
signing secret is shown once.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from nowplaying import schema
from nowplaying.ops.webhooks import MAX_PER_ACCOUNT, Refused, Webhooks, check_url, new_secret
from nowplaying.store import Account, Webhook
from nowplaying.web.errors import PRIVATE, BadRequest, NotFound, ServiceUnavailable, json_response
from nowplaying.web.owner import owner_route
from nowplaying.web.state import Services

__all__ = ["add", "collection", "delete", "listed", "send_test"]


def _hooks(svc: Services) -> Webhooks:
    if svc.webhooks is None:
        raise ServiceUnavailable("Webhooks are starting; try again shortly.", retry_after=1)
    return svc.webhooks


@owner_route(write=False)
async def listed(request: Request, svc: Services, account: Account) -> Response:
    hooks = await svc.runtime.store.list_webhooks(account.id)
    infos = []
    for hook in hooks:
        sent = await svc.runtime.store.list_deliveries(hook.id)
        deliveries = tuple(
            schema.WebhookDelivery.model_validate(
                {
                    "event": d.event,
                    "at": datetime.fromtimestamp(d.at, UTC),
                    "status": d.status,
                    "attempts": d.attempts,
                    "detail": d.detail,
                }
            )
            for d in sent
        )
        infos.append(
            schema.WebhookInfo(
                id=hook.id,
                url=hook.url,
                created_at=datetime.fromtimestamp(hook.created_at, UTC),
                deliveries=deliveries,
            )
        )
    return json_response(schema.Webhooks(webhooks=tuple(infos)), headers=PRIVATE)


@owner_route(write=True)
async def add(request: Request, svc: Services, account: Account) -> Response:
    """``{"url": "https://..."}`` -> 201 ``{"id", "url", "secret"}``."""
    hooks = _hooks(svc)
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise BadRequest('Send {"url": "https://..."}.')
    try:
        check_url(body["url"], hooks.allowed_hosts)
    except Refused as e:
        raise BadRequest(str(e)) from e
    if len(await svc.runtime.store.list_webhooks(account.id)) >= MAX_PER_ACCOUNT:
        raise BadRequest(f"At most {MAX_PER_ACCOUNT} webhooks; delete one first.")
    hook = Webhook(
        "wh_" + secrets.token_urlsafe(12),
        account.id,
        body["url"],
        new_secret(),
        svc.runtime.clock.now(),
    )
    await svc.runtime.store.put_webhook(hook)
    await hooks.rescan(account.id)
    created = schema.WebhookCreated(id=hook.id, url=hook.url, secret=hook.secret)
    return json_response(created, 201, headers=PRIVATE)


@owner_route(write=True)
async def delete(request: Request, svc: Services, account: Account) -> Response:
    if not await svc.runtime.store.delete_webhook(account.id, request.path_params["hook_id"]):
        raise NotFound("No such webhook.")
    await _hooks(svc).rescan(account.id)
    return Response(status_code=204, headers=PRIVATE)


@owner_route(write=True)
async def send_test(request: Request, svc: Services, account: Account) -> Response:
    """Queue a ``webhook.test`` event for one webhook: 202 (its delivery shows in the list)."""
    wanted = request.path_params["hook_id"]
    found = [h for h in await svc.runtime.store.list_webhooks(account.id) if h.id == wanted]
    if not found:
        raise NotFound("No such webhook.")
    await _hooks(svc).send_test(found[0])
    return Response(status_code=202, headers=PRIVATE)


async def collection(request: Request) -> Response:
    """``/api/account/webhooks``: GET lists, POST adds. One route for the path, so a method it
    does not take is a 405 whose ``Allow`` names both."""
    if request.method == "POST":
        return await add(request)
    return await listed(request)

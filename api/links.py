"""The links in our messages: `/r/{token}` records a click, tells the journey and redirects to the shop;
`/u/{token}` is the one-click email unsubscribe (RFC 8058) that each email's List-Unsubscribe header names.

Both are public: the random token is the only credential, and an unknown one learns nothing but "Not found".
A GET never unsubscribes, because mail scanners and link previews follow every link in an email: the page asks
for a press of its button, and mail clients that support one-click send the POST themselves.
"""

import html
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from models.contracts import ClickedSignal, TriggerInput
from models.journeys import Brand, JourneysConfig
from models.links import with_utm, workflow_id_of
from models.store import lock_customer, revoke_consent
from models.tables import Channel, Click, Link, LinkKind, Message
from starter.customer_journeys import running_journeys
from starter.journeys import signal_clicked, signal_opt_out, signal_or_log
from starter.triggers import start_trigger, thanks_for_looking_follows, trigger_input

UNSUBSCRIBE_SOURCE = "list_unsubscribe"
USER_AGENT_MAX = 500
NO_STORE = {"Cache-Control": "no-store"}  # every visit must reach us: a cached redirect is an unrecorded click
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {404: {"description": "Not found", "content": {"text/plain": {}}}}


@dataclass(frozen=True)
class Clicked:
    destination: str  # the link's URL with our UTM parameters
    workflow_id: str
    signal: ClickedSignal
    thanks: TriggerInput | None  # a "thanks for looking" to start: the click may be browsing with no purchase


def links_router(engine: Engine, config: JourneysConfig, task_queue: str, temporal: Callable[[], Client]) -> APIRouter:
    router = APIRouter(tags=["links"])

    @router.get(
        "/r/{token}", status_code=status.HTTP_302_FOUND, response_class=RedirectResponse, responses=NOT_FOUND_RESPONSE
    )
    async def click(token: str, request: Request) -> Response:
        """A tracked link: the click is stored, then the browser goes on to the shop and the journey is told."""
        user_agent = request.headers.get("user-agent")
        clicked = await run_in_threadpool(record_click, engine, config, token, client_ip(request), user_agent)
        if clicked is None:
            return not_found()
        # Told once the redirect is on its way: the customer never waits for Temporal, and an outage or an
        # ended journey only costs the signal (logged); the click is stored either way.
        tell = BackgroundTask(tell_clicked, temporal, task_queue, clicked)
        return RedirectResponse(clicked.destination, status.HTTP_302_FOUND, headers=NO_STORE, background=tell)

    @router.get("/u/{token}", response_class=HTMLResponse, responses=NOT_FOUND_RESPONSE)
    async def unsubscribe_page(token: str) -> Response:
        """Asks to confirm: nothing changes until the button is pressed."""
        if not await run_in_threadpool(is_unsubscribe_token, engine, token):
            return not_found()
        return HTMLResponse(confirm_page(config.brand), headers=NO_STORE)

    @router.post("/u/{token}", response_class=HTMLResponse, responses=NOT_FOUND_RESPONSE)
    async def unsubscribe(token: str) -> Response:
        """One-click unsubscribe: the mail client's `List-Unsubscribe=One-Click` POST, or the page's button.
        Any body is accepted; a repeat changes nothing."""
        journeys = await run_in_threadpool(unsubscribe_email, engine, config, token)
        if journeys is None:
            return not_found()
        # The consent is stored: every later email is skipped even if a journey is not told.
        await signal_or_log("email unsubscribe stored", signal_opt_out(temporal(), journeys, Channel.email))
        return HTMLResponse(done_page(config.brand), headers=NO_STORE)

    return router


def not_found() -> Response:
    return PlainTextResponse("Not found", status.HTTP_404_NOT_FOUND)


def client_ip(request: Request) -> str | None:
    """The first X-Forwarded-For entry (the client, as the proxy in front of us saw it), else the peer."""
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    for candidate in (forwarded, request.client.host if request.client else ""):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def linked_message(session: Session, token: str, kind: LinkKind) -> tuple[Link, Message] | None:
    link = session.get(Link, token)
    if link is None or link.kind != kind:
        return None
    message = session.get(Message, link.message_id)
    return None if message is None else (link, message)


def record_click(
    engine: Engine, config: JourneysConfig, token: str, ip: str | None, user_agent: str | None
) -> Clicked | None:
    with Session(engine) as session:
        found = linked_message(session, token, LinkKind.click)
        if found is None:
            return None
        link, message = found
        if not link.url:  # the send policy always gives a click link its destination
            return None
        clicked = Clicked(
            destination=with_utm(
                link.url, channel=message.channel or "unknown", journey=message.journey, step=message.step
            ),
            workflow_id=workflow_id_of(message),
            signal=ClickedSignal(step=message.step, message_id=link.message_id),
            thanks=trigger_input(config, "browsed", message.customer_id)
            if thanks_for_looking_follows(message.journey, message.kind)
            else None,
        )
        session.add(Click(token=link.token, ip=ip, user_agent=user_agent[:USER_AGENT_MAX] if user_agent else None))
        session.commit()
        return clicked


async def tell_clicked(temporal: Callable[[], Client], task_queue: str, clicked: Clicked) -> None:
    what = f"click on message {clicked.signal.message_id} stored"
    await signal_or_log(what, signal_clicked(temporal(), clicked.workflow_id, clicked.signal))
    if clicked.thanks is not None:
        await signal_or_log(f"{what}; thanks for looking", start_trigger(temporal(), task_queue, clicked.thanks))


def is_unsubscribe_token(engine: Engine, token: str) -> bool:
    with Session(engine) as session:
        return linked_message(session, token, LinkKind.unsubscribe) is not None


def unsubscribe_email(engine: Engine, config: JourneysConfig, token: str) -> list[str] | None:
    """Revoke the customer's email consent (once); return the journeys to tell, or None for an unknown token."""
    with Session(engine) as session:
        found = linked_message(session, token, LinkKind.unsubscribe)
        if found is None:
            return None
        _, message = found
        customer_id, sent_by = message.customer_id, workflow_id_of(message)
        # The customer's lock first, as for STOP: a send in flight finishes before the consent is recorded,
        # and a send after it sees the consent.
        lock_customer(session, customer_id)
        wording = f"One-click unsubscribe (List-Unsubscribe) of message {message.id}"
        revoke_consent(session, customer_id, Channel.email, source=UNSUBSCRIBE_SOURCE, wording=wording)
        session.commit()
        # Told again on a repeat: harmless, and mends a first time that Temporal missed.
        return sorted({sent_by, *running_journeys(session, [customer_id], config)})


def confirm_page(brand: Brand) -> str:
    name = html.escape(brand.name)
    return _page(
        f"Unsubscribe from {name}",
        f"<h1>Unsubscribe from {name} emails?</h1>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


def done_page(brand: Brand) -> str:
    name = html.escape(brand.name)
    return _page(
        f"Unsubscribed from {name}", f"<h1>You are unsubscribed</h1><p>You will get no more emails from {name}.</p>"
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{title}</title></head>"
        f'<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto">{body}</body></html>'
    )

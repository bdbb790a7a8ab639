"""The HTTP API: order intake, the customer's outbox, tracked links, provider webhooks, health."""

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.service import RPCError

from api.catalog import catalog_router
from api.customers import customers_router
from api.events import events_router
from api.intake import StoredOrder, store_order
from api.links import links_router
from api.schemas import IntakeResult, MessageOut, OrderIn
from api.sendgrid_events import sendgrid_events
from api.webhooks import twilio_webhooks
from models.db import make_engine
from models.journeys import JourneysConfig, load_journeys
from models.settings import Settings
from models.tables import Customer, Message
from starter.client import connect
from starter.customer_journeys import order_journeys
from starter.journeys import post_purchase_id

log = logging.getLogger(__name__)
bearer = HTTPBearer(auto_error=False)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    client: Client | None = None,
    config: JourneysConfig | None = None,
) -> FastAPI:
    """`engine`, `client` and `config` default to what the settings name; tests hand in their own."""
    if not settings.api_token:
        raise ValueError("COMEBACK_API_TOKEN is not set: the API refuses to run without a bearer token")
    token = settings.api_token
    engine = engine or make_engine(settings.database_url)
    config = config or load_journeys(settings.journeys_path)
    temporal: dict[str, Client] = {"client": client} if client else {}

    def temporal_client() -> Client:  # for the routers: the client is connected when the app starts
        return temporal["client"]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if "client" not in temporal:
            temporal["client"] = await connect(settings)
        yield

    app = FastAPI(title="Comeback", summary="Customer-retention journeys on Temporal", lifespan=lifespan)

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI reads the body before the token check runs: a caller without the token learns nothing more.
        route = request.scope.get("route")
        if isinstance(route, APIRoute) and any(d.call is authorized for d in route.dependant.dependencies):
            try:
                authorized(await bearer(request))
            except HTTPException as e:
                return JSONResponse({"detail": e.detail}, e.status_code, headers=e.headers)
        errors = [_field_error(e) for e in exc.errors()]
        return JSONResponse({"detail": "invalid request", "errors": errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/orders",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=[Depends(authorized)],
        responses={200: {"model": IntakeResult, "description": "The order was already known"}},
        response_model_exclude_none=True,  # `coupon` only when the order quoted one
    )
    async def post_order(order: OrderIn, response: Response) -> IntakeResult:
        """Store the order and start its journeys (post-purchase, cross-sell, ...); a purchase ends the customer's
        journeys that it has done the job of (earlier win-backs, carts, re-engagement)."""

        def store() -> StoredOrder:
            with Session(engine) as session:
                return store_order(session, order, config)

        stored = await run_in_threadpool(store)
        workflow_id = post_purchase_id(order.order_id)
        try:
            # Tried for a known order too: its first POST may have been stored while Temporal was down.
            started = await order_journeys(temporal["client"], settings.temporal_task_queue, config, order, stored)
        except RPCError as e:
            log.error("order %s stored, Temporal unreachable: %s", order.order_id, e)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, "order stored; Temporal could not be reached: retry this request"
            ) from e
        if not started:
            response.status_code = status.HTTP_200_OK
        return IntakeResult(workflow_id=workflow_id, status="started" if started else "exists", coupon=stored.coupon)

    @app.get("/customers/{customer_id}/messages", dependencies=[Depends(authorized)])
    def customer_messages(customer_id: str) -> list[MessageOut]:
        """The customer's outbox: every message a journey sent, skipped or failed, oldest first."""
        with Session(engine) as session:
            if session.get(Customer, customer_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer {customer_id!r}")
            rows = session.exec(
                select(Message).where(Message.customer_id == customer_id).order_by(col(Message.id))
            ).all()
            return [MessageOut.model_validate(row, from_attributes=True) for row in rows]

    # Authenticated by Twilio's signature, not the bearer token; every request is a 403 without TWILIO_AUTH_TOKEN.
    app.include_router(twilio_webhooks(settings, engine, config, temporal_client))
    # SendGrid's ECDSA signature; every request is a 403 without SENDGRID_WEBHOOK_PUBLIC_KEY.
    app.include_router(sendgrid_events(settings, engine, config, temporal_client))
    app.include_router(customers_router(engine, config, authorized, settings.temporal_task_queue, temporal_client))
    app.include_router(catalog_router(engine, authorized))
    app.include_router(events_router(engine, config, settings.temporal_task_queue, authorized, temporal_client))
    # Public: the random token is the credential.
    app.include_router(links_router(engine, config, settings.temporal_task_queue, temporal_client))

    return app


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    if error["type"] == "json_invalid":
        return {"field": "body", "message": f"{error['msg']} at character {error['loc'][-1]}"}
    return {"field": ".".join(str(p) for p in error["loc"][1:]) or "body", "message": error["msg"]}

"""POST /products: the shop's catalog, upserted in bulk, all or nothing (SQLite and PostgreSQL)."""

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.client import Client

from api.app import create_app
from api.intake import store_order
from api.schemas import OrderIn
from models.journeys import JourneysConfig
from models.settings import Settings
from models.tables import Product
from tests.conftest import NoJourneys
from tests.factories import order_payload

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def http(engine: Engine, config: JourneysConfig) -> AsyncIterator[httpx.AsyncClient]:
    # No journey is started here: the Temporal client is never called.
    app = create_app(
        Settings(COMEBACK_API_TOKEN=TOKEN), engine=engine, client=cast(Client, NoJourneys()), config=config
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://comeback.test") as http:
        yield http


def coat(**fields: Any) -> dict[str, Any]:
    return {
        "sku": "COAT-ALP-M",
        "name": "Alpine wool coat",
        "category": "coats",
        "line": "Alpine",
        "color": "black",
        "sizes": ["S", " M ", "L"],
        "season": "Winter",
        "price": "249.00",
        "url": "https://shop.example/p/alpine-coat",
        "image_url": "https://cdn.shop.example/i/alpine-coat.jpg",
    } | fields


def scarf(**fields: Any) -> dict[str, Any]:
    return {"sku": "SCARF-1", "name": "Cashmere scarf", "category": "scarves", "price": "59"} | fields


def products(engine: Engine) -> dict[str, Product]:
    with Session(engine) as session:
        return {p.sku: p for p in session.exec(select(Product)).all()}


async def test_products_are_created_with_what_recommendations_match_on(http: httpx.AsyncClient, engine: Engine):
    response = await http.post("/products", json={"products": [coat(), scarf(season="fall")]}, headers=AUTH)

    assert response.status_code == 200, response.text
    assert response.json() == {"created": 2, "updated": 0}
    stored = products(engine)
    assert stored["COAT-ALP-M"].sizes == "S,M,L"
    assert (stored["COAT-ALP-M"].line, stored["COAT-ALP-M"].color) == ("Alpine", "black")
    assert (stored["COAT-ALP-M"].season, stored["SCARF-1"].season) == ("winter", "autumn")
    assert stored["COAT-ALP-M"].price == Decimal("249.00") and stored["COAT-ALP-M"].active is True
    assert stored["SCARF-1"].sizes is None  # one size


async def test_an_upsert_updates_what_is_given_and_keeps_the_rest(http: httpx.AsyncClient, engine: Engine):
    await http.post("/products", json={"products": [coat(), scarf()]}, headers=AUTH)
    changed = {"sku": "COAT-ALP-M", "name": "Alpine wool coat", "season": None, "active": False, "sizes": []}
    response = await http.post("/products", json={"products": [changed, scarf(sku="GLOVES-1")]}, headers=AUTH)

    assert response.json() == {"created": 1, "updated": 1}
    updated = products(engine)["COAT-ALP-M"]
    assert (updated.season, updated.active, updated.sizes) == (None, False, None)  # null clears: for all year
    assert (updated.line, updated.color, updated.price) == ("Alpine", "black", Decimal("249.00"))  # left out: kept


async def test_a_product_first_seen_in_an_order_is_completed_by_the_catalog(
    http: httpx.AsyncClient, engine: Engine, config: JourneysConfig
):
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload("o-1")), config)
    jeans = {"sku": "JEANS-32", "name": "Slim jeans", "line": "Everyday", "sizes": ["30", "32"], "color": "indigo"}
    response = await http.post("/products", json={"products": [jeans]}, headers=AUTH)

    assert response.json() == {"created": 0, "updated": 1}
    stored = products(engine)["JEANS-32"]
    assert (stored.category, stored.line, stored.sizes) == ("jeans", "Everyday", "30,32")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"season": "monsoon"}, "products.1.season"),
        ({"sizes": ["S,M"]}, "products.1.sizes.0"),
        ({"sizes": "S,M"}, "products.1.sizes"),
        ({"sizes": [f"{n:030d}" for n in range(11)]}, "products.1.sizes"),  # over 300 characters stored
        ({"price": "-1"}, "products.1.price"),
        ({"url": "ftp://shop.example/coat"}, "products.1.url"),
        ({"image_url": "coat.jpg"}, "products.1.image_url"),
        ({"sku": "COAT M"}, "products.1.sku"),
        ({"sku": "SCARF-1"}, "products.1.sku"),  # the same sku twice in one batch
        ({"name": ""}, "products.1.name"),
        ({"active": "maybe"}, "products.1.active"),
        ({"colour": "black"}, "products.1.colour"),  # unknown field
    ],
)
async def test_a_bad_field_is_named_and_nothing_is_stored(
    http: httpx.AsyncClient, engine: Engine, bad: dict[str, Any], field: str
):
    response = await http.post("/products", json={"products": [scarf(), coat(**bad)]}, headers=AUTH)

    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert products(engine) == {}


@pytest.mark.parametrize("body", [{"products": []}, [{"sku": "A", "name": "A"}], {}])
async def test_a_body_without_products_is_refused(http: httpx.AsyncClient, engine: Engine, body: Any):
    response = await http.post("/products", json=body, headers=AUTH)
    assert response.status_code == 422
    assert products(engine) == {}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_without_the_token_nothing_is_read_or_stored(
    http: httpx.AsyncClient, engine: Engine, headers: dict[str, str]
):
    assert (await http.post("/products", json={"products": [coat()]}, headers=headers)).status_code == 401
    assert (await http.post("/products", json={"products": [coat(season="x")]}, headers=headers)).status_code == 401
    assert products(engine) == {}

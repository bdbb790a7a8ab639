"""Recommendations from the catalog (SQLite and PostgreSQL): complements and similar items, ranked by line, size,
colour and season; never what the customer bought, never an inactive or off-season product; [] when nothing fits."""

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.testing import ActivityEnvironment

from activities.recommendations import RecommendationActivities, recommend, season_of, seasons_at
from api.catalog import ProductIn, upsert_catalog
from api.intake import store_order
from api.schemas import OrderIn
from models.contracts import RecommendRequest
from models.journeys import JourneysConfig
from tests.factories import order_payload

NOVEMBER = date(2026, 11, 15)  # autumn, and winter starts within a month
JULY = date(2026, 7, 10)  # summer only
COMPLEMENTS = {"coats": ["jackets", "scarves", "gloves"], "jeans": ["shirts", "belts"]}


def product(sku: str, category: str, **fields: Any) -> ProductIn:
    return ProductIn(
        sku=sku, name=sku.title(), category=category, price=Decimal("50"), url=f"https://shop.example/p/{sku}", **fields
    )


def stock(engine: Engine, *products: ProductIn) -> None:
    with Session(engine) as session:
        upsert_catalog(session, list(products))
        session.commit()


def buy(
    engine: Engine, config: JourneysConfig, order_id: str, customer_id: str, *items: tuple[str, str | None, str | None]
) -> None:
    """An order of (sku, size, colour) items of the catalog."""
    lines = [
        {"sku": sku, "name": sku.title(), "quantity": 1, "unit_price": "50.00", "size": size, "color": colour}
        for sku, size, colour in items
    ]
    payload = order_payload(order_id, customer_id) | {"items": lines}
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(payload), config)


def recommended(engine: Engine, order_id: str, customer_id: str = "c_1", **request: Any) -> list[str]:
    fields = {"mode": "complements", "on": NOVEMBER, "complements": COMPLEMENTS, "max_items": 10} | request
    with Session(engine) as session:
        return recommend(session, RecommendRequest(customer_id=customer_id, order_id=order_id, **fields))


@pytest.fixture
def coat_bought(engine: Engine, config: JourneysConfig) -> Engine:
    """Customer c_1 bought a black Alpine winter coat in size M."""
    stock(engine, product("coat-alpine", "Coats", line="Alpine", color="black", sizes=["S", "M", "L"], season="winter"))
    buy(engine, config, "o-coat", "c_1", ("coat-alpine", "M", "black"))
    return engine


def test_recommends_only_complementary_categories(coat_bought: Engine):
    stock(
        coat_bought,
        product("jacket", "jackets"),
        product("scarf", "Scarves"),  # categories match in any case
        product("gloves", "gloves"),
        product("coat-other", "coats"),  # the category bought: no complement
        product("shirt", "shirts"),  # a complement of jeans, not of coats
        product("uncategorised", None),
    )
    assert set(recommended(coat_bought, "o-coat")) == {"jacket", "scarf", "gloves"}


def test_ranked_by_line_then_size_then_colour_then_season(coat_bought: Engine):
    other = {"line": "Urban", "sizes": ["XL"], "color": "green"}
    stock(
        coat_bought,
        product("j-none", "jackets", **other),
        product("j-season", "jackets", **other | {"season": "winter"}),
        product("j-colour", "jackets", **other | {"color": "Black"}),
        product("j-size", "jackets", **other | {"sizes": ["m", "L"]}),
        product("j-rest", "jackets", line="Urban", sizes=["M"], color="black", season="winter"),
        product("j-line", "jackets", **other | {"line": "alpine"}),
        product("j-all", "jackets", line="Alpine", sizes=["M"], color="black", season="winter"),
    )
    assert recommended(coat_bought, "o-coat") == [
        "j-all",
        "j-line",  # the same line outweighs size, colour and season together
        "j-rest",
        "j-size",
        "j-colour",
        "j-season",
        "j-none",
    ]
    assert recommended(coat_bought, "o-coat", max_items=2) == ["j-all", "j-line"]


def test_a_size_matches_one_of_the_sizes_exactly_and_one_size_fits_all(coat_bought: Engine):
    stock(
        coat_bought,
        product("a-near-miss", "jackets", sizes=["XM", "MM", "M_"]),
        product("b-one-size", "jackets"),  # no sizes: one size
        product("c-fits", "jackets", sizes=["S", "M"]),
    )
    assert recommended(coat_bought, "o-coat") == ["b-one-size", "c-fits", "a-near-miss"]


def test_equal_scores_follow_the_marketers_order_of_categories(coat_bought: Engine):
    stock(coat_bought, product("a-gloves", "gloves"), product("b-scarf", "scarves"), product("c-jacket", "jackets"))
    assert recommended(coat_bought, "o-coat") == ["c-jacket", "b-scarf", "a-gloves"]


def test_products_of_another_season_are_never_offered(coat_bought: Engine):
    stock(
        coat_bought,
        product("winter-jacket", "jackets", season="winter"),
        product("summer-jacket", "jackets", season="summer", line="Alpine"),
        product("all-year-jacket", "jackets"),
    )
    assert recommended(coat_bought, "o-coat", on=NOVEMBER) == ["winter-jacket", "all-year-jacket"]
    assert recommended(coat_bought, "o-coat", on=JULY) == ["summer-jacket", "all-year-jacket"]


@pytest.mark.parametrize(
    ("day", "seasons"),
    [
        (date(2026, 1, 20), ["winter"]),
        (date(2026, 2, 20), ["spring", "winter"]),
        (date(2026, 4, 1), ["spring"]),
        (date(2026, 7, 10), ["summer"]),
        (date(2026, 8, 15), ["autumn", "summer"]),
        (date(2026, 9, 5), ["autumn"]),
        (date(2026, 11, 15), ["autumn", "winter"]),
        (date(2026, 12, 31), ["winter"]),
    ],
)
def test_seasons_are_the_northern_hemispheres_and_sold_a_month_ahead(day: date, seasons: list[str]):
    assert seasons_at(day) == seasons
    assert season_of(day) in seasons


def test_never_what_the_customer_ever_bought(coat_bought: Engine, config: JourneysConfig):
    stock(coat_bought, product("jacket", "jackets"), product("scarf", "scarves"))
    buy(coat_bought, config, "o-earlier", "c_1", ("jacket", "M", None))
    assert recommended(coat_bought, "o-coat") == ["scarf"]
    # Another customer with the same coat is offered the jacket.
    buy(coat_bought, config, "o-coat-2", "c_2", ("coat-alpine", "M", "black"))
    assert recommended(coat_bought, "o-coat-2", customer_id="c_2") == ["jacket", "scarf"]


def test_inactive_products_are_never_offered(coat_bought: Engine):
    stock(coat_bought, product("jacket", "jackets", line="Alpine"), product("scarf", "scarves"))
    stock(coat_bought, product("jacket", "jackets", active=False))
    assert recommended(coat_bought, "o-coat") == ["scarf"]


def test_nothing_good_is_nothing(coat_bought: Engine, config: JourneysConfig):
    assert recommended(coat_bought, "o-coat") == []  # no product in a complementary category
    stock(coat_bought, product("shirt", "shirts"), product("coat-2", "coats"))
    assert recommended(coat_bought, "o-coat") == []  # products, but none that goes with a coat
    assert recommended(coat_bought, "o-coat", complements={}) == []  # no complements configured
    assert recommended(coat_bought, "o-unknown") == []
    stock(
        coat_bought, product("summer-scarf", "scarves", season="summer"), product("old-gloves", "gloves", active=False)
    )
    assert recommended(coat_bought, "o-coat") == []  # only off-season and inactive ones


def test_similar_items_share_the_category_or_the_line(engine: Engine, config: JourneysConfig):
    stock(
        engine,
        product("jeans-slim", "jeans", line="Everyday", sizes=["30", "32"], color="indigo"),
        product("jeans-wide", "jeans", line="Workwear", sizes=["32"]),
        product("jeans-loose", "jeans", line="Workwear", sizes=["36"]),
        product("shirt-everyday", "shirts", line="Everyday"),
        product("socks", "socks"),
    )
    buy(engine, config, "o-jeans", "c_1", ("jeans-slim", "32", "indigo"))
    assert recommended(engine, "o-jeans", mode="similar") == ["jeans-wide", "jeans-loose", "shirt-everyday"]
    assert recommended(engine, "o-jeans", mode="complements") == ["shirt-everyday"]


def test_the_activity_answers_skus_best_first(coat_bought: Engine):
    stock(coat_bought, product("jacket", "jackets", line="Alpine"), product("scarf", "scarves"))
    request = RecommendRequest(
        customer_id="c_1", order_id="o-coat", mode="complements", on=NOVEMBER, complements=COMPLEMENTS
    )
    activities = RecommendationActivities(coat_bought)
    assert ActivityEnvironment().run(activities.recommend_products, request) == ["jacket", "scarf"]

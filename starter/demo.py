"""Demo data: a small catalog, three customers (first-time, repeat, VIP) and a sample order."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from api.intake import store_order, upsert_customer
from api.schemas import CustomerIn, OrderIn
from models.journeys import JourneysConfig
from models.tables import Product


def _product(sku: str, name: str, category: str, price: str, **matched_on: Any) -> Product:
    """`matched_on`: what cross-sell matches (line, color, sizes as "S,M,L", season; none: all year)."""
    return Product(
        sku=sku,
        name=name,
        category=category,
        price=Decimal(price),
        url=f"https://northwind.example/p/{sku.lower()}",
        image_url=f"https://northwind.example/i/{sku.lower()}.jpg",
        **matched_on,
    )


# Categories as in the journeys file's cross-sell complements: Ava's jeans and tee (the sample order) find an
# Everyday shirt and belt in her sizes, and a winter sweater; the linen shirt waits for summer.
CATALOG = [
    _product("JEANS-32", "Slim jeans", "jeans", "59.95", line="Everyday", color="indigo", sizes="30,32,34,36"),
    _product("TEE-M-WHT", "Organic tee", "tops", "24.00", line="Everyday", color="white", sizes="S,M,L,XL"),
    _product("COAT-BLK-M", "Black winter coat", "outerwear", "189.00", line="Alpine", color="black", sizes="S,M,L",
             season="winter"),
    _product("JACKET-BLK-M", "Black field jacket", "outerwear", "129.00", line="Alpine", color="black",
             sizes="S,M,L", season="autumn"),
    _product("SCARF-WOOL", "Wool scarf", "scarves", "35.00", line="Alpine", color="grey", season="winter"),
    _product("SOCKS-3P", "Merino socks, 3 pairs", "socks", "18.00", sizes="S,M,L"),
    _product("SHIRT-OXF", "Oxford shirt", "shirts", "69.00", line="Everyday", color="white", sizes="S,M,L,XL"),
    _product("SHIRT-LINEN", "Linen shirt", "shirts", "65.00", line="Everyday", color="white", sizes="S,M,L",
             season="summer"),
    _product("BELT-LTHR", "Leather belt", "belts", "45.00", line="Everyday", color="brown", sizes="30,32,34,36"),
    _product("SNEAKER-CNV", "Canvas sneakers", "sneakers", "75.00", color="white", sizes="7,8,9,10,11,12"),
    _product("SWEATER-MRN", "Merino sweater", "sweaters", "89.00", line="Alpine", color="grey", sizes="S,M,L",
             season="winter"),
    _product("GLOVES-LTHR", "Leather gloves", "gloves", "49.00", color="black", sizes="S,M,L", season="winter"),
]  # fmt: skip

CUSTOMERS = [
    {"id": "c_ava", "first_name": "Ava", "last_name": "Stone", "phone": "+14155550101",
     "email": "ava@example.com", "timezone": "America/Los_Angeles", "sms_consent": True, "email_consent": True},
    {"id": "c_ben", "first_name": "Ben", "last_name": "Okafor", "phone": "+12125550102",
     "email": "ben@example.com", "timezone": "America/New_York", "sms_consent": False, "email_consent": True},
    {"id": "c_cleo", "first_name": "Cleo", "last_name": "Marchetti", "phone": "+13125550103",
     "email": "cleo@example.com", "timezone": "America/Chicago", "sms_consent": True, "email_consent": True,
     "preferred_channel": "sms"},
]  # fmt: skip

# Earlier orders, so that Ben is a repeat buyer and Cleo a VIP. They start no journeys.
HISTORY = {"c_ben": ["89.00"], "c_cleo": ["240.00", "180.00", "95.00"]}


def seed(engine: Engine, config: JourneysConfig) -> None:
    """Idempotent: run it as often as you like."""
    with Session(engine) as session:
        for product in CATALOG:
            session.merge(product)
        for customer in CUSTOMERS:
            upsert_customer(session, CustomerIn.model_validate(customer), config, source="demo")
        session.commit()
        for customer_id, totals in HISTORY.items():
            for n, total in enumerate(totals, start=1):
                placed = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=30 * n)
                order = sample_order(customer_id, order_id=f"hist-{customer_id}-{n}", total=total, placed_at=placed)
                store_order(session, OrderIn.model_validate(order), config)


def sample_order(
    customer_id: str = "c_ava",
    *,
    order_id: str | None = None,
    total: str = "83.95",
    placed_at: datetime | None = None,
    cart_id: str | None = None,
    coupon_code: str | None = None,
) -> dict[str, Any]:
    """An order as a shop's backend would POST it; `cart_id`: the cart it buys, `coupon_code`: a code it quotes."""
    customer = next((c for c in CUSTOMERS if c["id"] == customer_id), {"id": customer_id})
    return {
        "order_id": order_id or f"demo-{uuid.uuid4().hex[:8]}",
        "placed_at": (placed_at or datetime.now(UTC)).isoformat(),
        "currency": "USD",
        "total": total,
        "cart_id": cart_id,
        "coupon_code": coupon_code,
        "customer": customer,
        "items": [
            {"sku": "JEANS-32", "name": "Slim jeans", "category": "jeans", "quantity": 1,
             "unit_price": "59.95", "size": "32", "color": "indigo"},
            {"sku": "TEE-M-WHT", "name": "Organic tee", "category": "tops", "quantity": 1,
             "unit_price": "24.00", "size": "M", "color": "white"},
        ],
    }  # fmt: skip


EVENT_KINDS = {
    "cart": "cart_updated",
    "checkout": "checkout_started",
    "visit": "site_visit",
    "shipped": "order_shipped",
    "delivered": "order_delivered",
    "review": "review_posted",
}


def sample_event(
    kind: str,
    customer_id: str = "c_ava",
    *,
    cart_id: str | None = None,
    order_id: str | None = None,
    rating: int = 5,
    text: str | None = None,
) -> dict[str, Any]:
    """An event as a shop's backend would POST it to /events; `kind` is a key of EVENT_KINDS."""
    event: dict[str, Any] = {
        "type": EVENT_KINDS[kind],
        "customer_id": customer_id,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if kind in ("cart", "checkout"):
        event["cart_id"] = cart_id or f"cart-{customer_id}"
    if kind == "cart":
        event["currency"] = "USD"
        event["items"] = [
            {"sku": "COAT-BLK-M", "name": "Black winter coat", "category": "outerwear", "quantity": 1,
             "unit_price": "189.00", "size": "M", "color": "black"},
        ]  # fmt: skip
    if kind in ("shipped", "delivered", "review"):
        if order_id is None:
            raise ValueError(f"a {kind} event needs the order's id")
        event["order_id"] = order_id
    if kind == "shipped":
        event |= {"carrier": "UPS", "tracking_url": f"https://www.ups.com/track?tracknum=1Z{order_id}"}
    if kind == "review":
        event |= {"rating": rating, "text": text}
    return event

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


def _product(sku: str, name: str, category: str, price: str) -> Product:
    return Product(
        sku=sku, name=name, category=category, price=Decimal(price), url=f"https://northwind.example/p/{sku.lower()}"
    )


CATALOG = [
    _product("JEANS-32", "Slim jeans", "jeans", "59.95"),
    _product("TEE-M-WHT", "Organic tee", "tops", "24.00"),
    _product("COAT-BLK-M", "Black winter coat", "outerwear", "189.00"),
    _product("JACKET-BLK-M", "Black field jacket", "outerwear", "129.00"),
    _product("SCARF-WOOL", "Wool scarf", "accessories", "35.00"),
    _product("SOCKS-3P", "Merino socks, 3 pairs", "accessories", "18.00"),
]

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
) -> dict[str, Any]:
    """An order as a shop's backend would POST it."""
    customer = next((c for c in CUSTOMERS if c["id"] == customer_id), {"id": customer_id})
    return {
        "order_id": order_id or f"demo-{uuid.uuid4().hex[:8]}",
        "placed_at": (placed_at or datetime.now(UTC)).isoformat(),
        "currency": "USD",
        "total": total,
        "customer": customer,
        "items": [
            {"sku": "JEANS-32", "name": "Slim jeans", "category": "jeans", "quantity": 1,
             "unit_price": "59.95", "size": "32", "color": "indigo"},
            {"sku": "TEE-M-WHT", "name": "Organic tee", "category": "tops", "quantity": 1,
             "unit_price": "24.00", "size": "M", "color": "white"},
        ],
    }  # fmt: skip

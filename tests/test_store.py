"""The store and its migrations, against SQLite and PostgreSQL alike."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import inspect
from sqlmodel import Session, col, select

from api.intake import store_order, upsert_customer
from api.schemas import CustomerIn, OrderIn
from models.contracts import Segment
from models.db import downgrade, migrate
from models.settings import ROOT
from models.store import consent_status
from models.tables import Channel, Consent, ConsentStatus, Customer, Order, OrderItem, Product
from tests.factories import order_payload

TABLES = {"customer", "consent", "product", "order", "orderitem", "message", "webhookreceipt", "suppression"}


def test_migrations_go_down_and_up_again(engine):
    assert set(inspect(engine).get_table_names()) >= TABLES
    downgrade(engine, "0002")
    assert "suppression" not in inspect(engine).get_table_names()
    assert not {"ip", "user_agent"} & {c["name"] for c in inspect(engine).get_columns("consent")}
    downgrade(engine, "0001")
    assert "webhookreceipt" not in inspect(engine).get_table_names()
    assert "delivery_status" not in {c["name"] for c in inspect(engine).get_columns("message")}
    downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate(engine)
    migrate(engine)  # an up-to-date schema is left alone
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_an_order_is_stored_whole_with_exact_money_and_utc_times(engine, config):
    payload = order_payload(total="129.905") | {"placed_at": "2026-11-20T07:04:05-08:00"}
    with Session(engine) as session:
        stored = store_order(session, OrderIn.model_validate(payload), config)
        assert stored.created and stored.segment == Segment.first_time
    with Session(engine) as session:
        order = session.get(Order, "1001")
        assert order is not None
        assert order.total == Decimal("129.905")
        assert order.placed_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
        assert order.placed_at.utcoffset() == timedelta(0)
        [item] = session.exec(select(OrderItem)).all()
        assert (item.sku, item.quantity, item.unit_price, item.size) == ("JEANS-32", 1, Decimal("59.950"), "32")
        product = session.get(Product, "JEANS-32")
        assert product is not None and product.category == "jeans" and product.price == Decimal("59.95")
        customer = session.get(Customer, "c_42")
        assert customer is not None and customer.phone == "+14155550100"
        consents = session.exec(select(Consent).order_by(Consent.channel)).all()
        assert [(c.channel, c.status, c.source) for c in consents] == [
            ("email", "granted", "checkout"),
            ("sms", "granted", "checkout"),
        ]
        assert consents[1].wording == config.brand.sms_consent_wording
        assert consents[1].wording_version == config.brand.consent_wording_version


def test_the_same_order_twice_changes_nothing(engine, config):
    with Session(engine) as session:
        store_order(session, OrderIn.model_validate(order_payload()), config)
        again = store_order(session, OrderIn.model_validate(order_payload(first_name="Changed")), config)
        assert not again.created
        assert session.exec(select(Order)).all().__len__() == 1
        customer = session.get(Customer, "c_42")
        assert customer is not None and customer.first_name == "John"


def test_segment_counts_orders_and_lifetime_value(engine, config):
    with Session(engine) as session:
        segments = [
            store_order(session, OrderIn.model_validate(order_payload(f"o{n}", total="100")), config).segment
            for n in range(1, 6)
        ]
    assert segments == [Segment.first_time, Segment.repeat, Segment.repeat, Segment.repeat, Segment.vip]


def test_consent_an_unticked_box_never_revokes_an_opt_in(engine, config):
    def customer(**consent) -> CustomerIn:
        return CustomerIn.model_validate({"id": "c_1", "phone": "+14155550100"} | consent)

    with Session(engine) as session:
        upsert_customer(session, customer(sms_consent=False), config, source="checkout")
        assert consent_status(session, "c_1", Channel.sms) == ConsentStatus.denied
        upsert_customer(session, customer(sms_consent=True), config, source="checkout")
        assert consent_status(session, "c_1", Channel.sms) == ConsentStatus.granted
        upsert_customer(session, customer(sms_consent=False), config, source="checkout")
        upsert_customer(session, customer(), config, source="checkout")
        assert consent_status(session, "c_1", Channel.sms) == ConsentStatus.granted
        assert consent_status(session, "c_1", Channel.email) is None
        session.commit()
        assert len(session.exec(select(Consent)).all()) == 2


def test_consent_to_a_new_wording_is_recorded_again(engine, config):
    """The evidence must show the text the customer last agreed to: a ticked box under new wording is a new row;
    under the same wording, nothing new."""
    ticked = CustomerIn.model_validate({"id": "c_3", "phone": "+14155550100", "sms_consent": True})
    renewed = config.model_copy(update={"brand": config.brand.model_copy(update={"consent_wording_version": "v9"})})
    with Session(engine) as session:
        upsert_customer(session, ticked, config, source="checkout")
        upsert_customer(session, ticked, config, source="checkout")
        upsert_customer(session, ticked, renewed, source="checkout")
        upsert_customer(session, ticked, renewed, source="checkout")
        session.commit()
        rows = session.exec(select(Consent).where(Consent.customer_id == "c_3").order_by(col(Consent.id))).all()
    assert [(r.status, r.wording_version) for r in rows] == [
        (ConsentStatus.granted, config.brand.consent_wording_version),
        (ConsentStatus.granted, "v9"),
    ]


def test_a_profile_update_keeps_what_it_does_not_mention(engine, config):
    with Session(engine) as session:
        upsert_customer(
            session,
            CustomerIn(id="c_2", first_name="Ana", email="ana@example.com", timezone="Europe/Paris"),
            config,
            source="api",
        )
        upsert_customer(session, CustomerIn(id="c_2", first_name="Anna"), config, source="api")
        session.commit()
        customer = session.get(Customer, "c_2")
        assert customer is not None
        assert (customer.first_name, customer.email, customer.timezone) == ("Anna", "ana@example.com", "Europe/Paris")


def test_aware_times_in_any_zone_come_back_as_the_same_instant_in_utc(engine):
    paris = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as session:
        session.add(Customer(id="c_tz", created_at=paris, updated_at=paris))
        session.commit()
    with Session(engine) as session:
        customer = session.get(Customer, "c_tz")
        assert customer is not None and customer.created_at == paris and customer.created_at.tzinfo == UTC


def test_in_ci_an_unreachable_postgresql_fails_the_run():
    env = os.environ | {"CI": "true", "COMEBACK_TEST_PG": "postgresql://postgres@127.0.0.1:1/test"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_store.py::test_migrations_go_down_and_up_again[postgresql]",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "PostgreSQL is required in CI" in run.stdout


def test_concurrent_orders_sharing_a_new_customer_and_product_are_all_stored(engine, config):
    """The second writer hits the first one's new rows; it retries and updates them instead."""
    orders = [OrderIn.model_validate(order_payload(f"race-{n}", customer_id="c_race")) for n in range(8)]

    def store(order: OrderIn) -> bool:
        with Session(engine) as session:
            return store_order(session, order, config).created

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(store, orders))
    with Session(engine) as session:
        assert len(session.exec(select(Order).where(Order.customer_id == "c_race")).all()) == 8
        assert len(session.exec(select(Product)).all()) == 1

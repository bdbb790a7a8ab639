"""Coupon redemption at order intake, on SQLite and PostgreSQL: once per code, attributed to the coupon's message;
a code that cannot be redeemed is recorded with the reason, and the order is accepted all the same."""

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select
from temporalio.testing import WorkflowEnvironment

from api.intake import StoredOrder, store_order
from api.schemas import OrderIn
from models.journeys import JourneysConfig
from models.links import new_coupon_code
from models.tables import Channel, Coupon, CouponRejection, Customer, Message, MessageStatus, Order, utcnow
from tests.factories import order_payload
from tests.test_api import AUTH, api_client, new_order, snapshot

RACERS = 6


@pytest.fixture
def message_id(engine: Engine) -> int:
    """The win-back email of customer c1 that carried the coupons below."""
    with Session(engine) as session:
        session.add(Customer(id="c1", email="ada@example.com"))
        session.commit()
        message = Message(
            idempotency_key="post-purchase-1/win_back_incentive",
            customer_id="c1",
            channel=Channel.email,
            journey="post_purchase",
            step="win_back_incentive",
            status=MessageStatus.sent,
        )
        session.add(message)
        session.commit()
        assert message.id is not None
        return message.id


def add_coupon(engine: Engine, message_id: int, expires_at: datetime | None = None) -> str:
    code = new_coupon_code()
    with Session(engine) as session:
        session.add(
            Coupon(
                code=code,
                customer_id="c1",
                message_id=message_id,
                journey="post_purchase",
                percent_off=15,
                expires_at=expires_at or utcnow() + timedelta(days=14),
            )
        )
        session.commit()
    return code


@pytest.fixture
def code(engine: Engine, message_id: int) -> str:
    return add_coupon(engine, message_id)


def place(
    engine: Engine, config: JourneysConfig, order_id: str, coupon_code: str, customer_id: str = "c1"
) -> StoredOrder:
    order = OrderIn.model_validate(order_payload(order_id, customer_id) | {"coupon_code": coupon_code})
    with Session(engine) as session:
        return store_order(session, order, config)


def coupon(engine: Engine, code: str) -> Coupon:
    with Session(engine) as session:
        found = session.get(Coupon, code)
        assert found is not None
        return found


def order(engine: Engine, order_id: str) -> Order:
    with Session(engine) as session:
        found = session.get(Order, order_id)
        assert found is not None
        return found


def rejections(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(CouponRejection).order_by(col(CouponRejection.id))).all()
        return [(row.order_id, row.code, row.reason) for row in rows]


def test_a_valid_code_is_redeemed_and_the_order_attributed(
    engine: Engine, config: JourneysConfig, message_id: int, code: str
):
    typed = f" {code[:5].lower()}-{code[5:].lower()} "  # as a customer types it from a text message
    before = utcnow()

    stored = place(engine, config, "o1", typed)

    assert (stored.created, stored.coupon) == (True, "redeemed")
    redeemed = coupon(engine, code)
    assert redeemed.redeemed_order_id == "o1"
    assert redeemed.redeemed_at is not None and before <= redeemed.redeemed_at <= utcnow()
    placed = order(engine, "o1")
    assert (placed.attributed_message_id, placed.attributed_journey) == (message_id, "post_purchase")
    assert placed.coupon_code == typed  # as quoted
    assert rejections(engine) == []


def test_a_code_is_redeemed_once(engine: Engine, config: JourneysConfig, message_id: int, code: str):
    assert place(engine, config, "o1", code).coupon == "redeemed"

    second = place(engine, config, "o2", code, customer_id="c2")  # shared with a friend

    assert (second.created, second.coupon) == (True, "already_redeemed")
    assert coupon(engine, code).redeemed_order_id == "o1"
    assert order(engine, "o2").attributed_message_id is None
    assert order(engine, "o1").attributed_message_id == message_id
    assert rejections(engine) == [("o2", code, "already_redeemed")]


@pytest.mark.parametrize("reason", ["expired", "unknown"])
def test_an_expired_or_unknown_code_is_rejected_and_the_order_accepted(
    engine: Engine, config: JourneysConfig, message_id: int, reason: str
):
    if reason == "expired":
        quoted = add_coupon(engine, message_id, expires_at=utcnow() - timedelta(seconds=1))
    else:
        quoted = "NOPE-NOPE-2"

    stored = place(engine, config, "o1", quoted)

    assert (stored.created, stored.coupon) == (True, reason)
    placed = order(engine, "o1")
    assert (placed.attributed_message_id, placed.attributed_journey) == (None, None)
    assert rejections(engine) == [("o1", quoted.replace("-", ""), reason)]
    with Session(engine) as session:
        assert session.exec(select(Coupon).where(col(Coupon.redeemed_order_id).is_not(None))).all() == []


@pytest.mark.parametrize("first_order", ["o1", "o2"], ids=["redeemed", "rejected"])
def test_an_order_posted_again_redeems_and_rejects_nothing_more(
    engine: Engine, config: JourneysConfig, code: str, first_order: str
):
    if first_order == "o2":  # o2 is rejected: o1 has the code
        place(engine, config, "o1", code)
    first = place(engine, config, first_order, code)
    before = snapshot(engine)

    again = place(engine, config, first_order, code)

    assert again.created is False
    assert again.coupon == first.coupon  # reported as the first time
    assert snapshot(engine) == before


def test_orders_quoting_a_code_at_once_redeem_it_once(engine: Engine, config: JourneysConfig, code: str):
    # Other customers and products each: nothing but the coupon's row is shared between the orders.
    orders = [order_payload(f"race-{i}", f"c_race_{i}") | {"coupon_code": code} for i in range(RACERS)]
    for i, payload in enumerate(orders):
        payload["items"][0]["sku"] = f"SKU-{i}"
    start = threading.Barrier(RACERS, timeout=30)

    def place_at_once(payload: dict) -> StoredOrder:
        start.wait()
        with Session(engine) as session:
            return store_order(session, OrderIn.model_validate(payload), config)

    with ThreadPoolExecutor(RACERS) as pool, coupon_row_locked(engine, code) as until_waiting:
        futures = [pool.submit(place_at_once, payload) for payload in orders]
        until_waiting(RACERS)
    outcomes = [future.result(timeout=60).coupon for future in futures]

    assert Counter(outcomes) == {"redeemed": 1, "already_redeemed": RACERS - 1}
    winner = coupon(engine, code).redeemed_order_id
    assert winner == f"race-{outcomes.index('redeemed')}"
    assert sorted(order_id for order_id, _, _ in rejections(engine)) == sorted(
        f"race-{i}" for i in range(RACERS) if f"race-{i}" != winner
    )
    with Session(engine) as session:
        attributed = session.exec(select(Order.id).where(col(Order.attributed_message_id).is_not(None))).all()
    assert attributed == [winner]


@contextmanager
def coupon_row_locked(engine: Engine, code: str) -> Iterator[Callable[[int], None]]:
    """On PostgreSQL, lock the coupon's row until `n` transactions wait for it, so that they all read it while
    it is unredeemed and then race for it: a read-then-write redemption would let every one of them redeem it.
    SQLite runs one writer at a time: there, the barrier alone lines the orders up."""
    if engine.dialect.name != "postgresql":
        yield lambda n: None
        return
    with engine.connect() as holder, engine.connect() as observer:
        holder.execute(text("SELECT code FROM coupon WHERE code = :code FOR UPDATE"), {"code": code})

        def until_waiting(n: int) -> None:
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + 30
            while observer.execute(waiting).scalar_one() < n:
                assert time.monotonic() < deadline, f"{n} orders never queued for the coupon's row"
                observer.rollback()  # a fresh snapshot of pg_stat_activity
                time.sleep(0.02)

        try:
            yield until_waiting
        finally:
            holder.rollback()


async def test_the_answer_says_what_became_of_the_code(
    engine: Engine, config: JourneysConfig, dev_server: WorkflowEnvironment, code: str
):
    first, second = new_order(), new_order()
    async with api_client(engine, dev_server.client, config) as http:
        response = await http.post("/orders", json=first | {"coupon_code": code}, headers=AUTH)
        assert response.status_code == 202, response.text
        assert response.json() == {
            "workflow_id": f"post-purchase-{first['order_id']}",
            "status": "started",
            "coupon": "redeemed",
        }

        for status_code, status in [(202, "started"), (200, "exists")]:  # the second order, and its retry
            response = await http.post("/orders", json=second | {"coupon_code": code}, headers=AUTH)
            assert response.status_code == status_code, response.text
            assert response.json()["status"] == status
            assert response.json()["coupon"] == "already_redeemed"
    assert rejections(engine) == [(second["order_id"], code, "already_redeemed")]
    assert coupon(engine, code).redeemed_order_id == first["order_id"]

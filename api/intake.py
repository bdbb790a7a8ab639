"""Storing an order: customer, consent, products, order and items, and the redemption of the coupon code it
quotes, in one transaction."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.schemas import CouponOutcome, CustomerIn, DateIn, OrderIn, OrderItemIn
from models.contracts import Segment
from models.journeys import JourneysConfig
from models.links import normalize_coupon_code
from models.store import latest_consent
from models.tables import (
    Cart,
    CartStatus,
    Channel,
    Consent,
    ConsentStatus,
    Coupon,
    CouponRejection,
    Customer,
    CustomerDate,
    DateKind,
    Order,
    OrderItem,
    Product,
    utcnow,
)


@dataclass(frozen=True)
class StoredOrder:
    created: bool  # False: the order was already stored, and nothing was changed
    customer_id: str
    segment: Segment
    earlier_orders: list[str]  # the customer's orders placed before this one whose journeys may still run
    coupon: CouponOutcome | None = None  # what became of the code the order quoted, if it quoted one
    personal_code: bool = False  # the order redeemed a code made for this customer (a thank-you is due)
    open_carts: tuple[str, ...] = ()  # the customer's carts whose reminders the purchase ends


def store_order(session: Session, order: OrderIn, config: JourneysConfig, attempts: int = 3) -> StoredOrder:
    created = False
    for attempt in range(1, attempts + 1):
        if session.get(Order, order.order_id) is not None:
            break
        try:
            _insert_order(session, order, config)
            session.commit()
            created = True
            break
        except IntegrityError:
            # A concurrent order inserted the same new customer or product (or this very order) first:
            # try again, now updating what it inserted.
            session.rollback()
            if attempt == attempts:
                raise
    stored = session.get(Order, order.order_id)
    assert stored is not None
    horizon = config.post_purchase_horizon
    earlier = session.exec(
        select(Order.id).where(
            Order.customer_id == stored.customer_id,
            Order.id != stored.id,
            col(Order.placed_at) <= stored.placed_at,
            col(Order.placed_at) > stored.placed_at - horizon,
        )
    ).all()
    redeemed = session.exec(select(Coupon).where(Coupon.redeemed_order_id == stored.id)).first()
    carts = session.exec(
        select(Cart.id).where(
            Cart.customer_id == stored.customer_id,
            or_(col(Cart.status) == CartStatus.open, col(Cart.order_id) == stored.id),
        )
    ).all()
    return StoredOrder(
        created,
        stored.customer_id,
        customer_segment(session, stored.customer_id, config),
        list(earlier),
        coupon_outcome(session, stored),
        personal_code=redeemed is not None and redeemed.customer_id == stored.customer_id,
        open_carts=tuple(carts),
    )


def customer_segment(session: Session, customer_id: str, config: JourneysConfig) -> Segment:
    count, value = session.exec(
        select(func.count(col(Order.id)), func.coalesce(func.sum(Order.total), 0)).where(
            Order.customer_id == customer_id
        )
    ).one()
    return config.segments.of(int(count), Decimal(value))


def _insert_order(session: Session, order: OrderIn, config: JourneysConfig) -> None:
    upsert_customer(session, order.customer, config, source="checkout")
    upsert_products(session, order.items)
    placed = Order(
        id=order.order_id,
        customer_id=order.customer.id,
        placed_at=order.placed_at,
        currency=order.currency,
        total=order.total,
        coupon_code=order.coupon_code,
        cart_id=order.cart_id,
    )
    session.add(placed)
    session.flush()  # the order row exists before its items and its coupon reference it
    session.add_all(OrderItem(order_id=order.order_id, **line_of(item)) for item in order.items)
    if order.coupon_code:
        redeem_coupon(session, placed, order.coupon_code)
    cart = session.get(Cart, order.cart_id) if order.cart_id else None
    if cart is not None and cart.customer_id == placed.customer_id:
        cart.status, cart.order_id = CartStatus.ordered, placed.id
        session.add(cart)


def line_of(item: OrderItemIn) -> dict[str, Any]:
    """What an order's or a cart's line keeps of the item posted (the product's other fields go to the catalog)."""
    return item.model_dump(include={"sku", "name", "quantity", "unit_price", "size", "color"})


def upsert_products(session: Session, items: list[OrderItemIn]) -> None:
    """The products an order or a cart names, as the shop describes them there (the catalog may say more)."""
    for item in items:
        product = session.get(Product, item.sku) or Product(sku=item.sku, name=item.name)
        product.name = item.name
        product.category = item.category or product.category
        product.url = item.url or product.url
        product.image_url = item.image_url or product.image_url
        product.price = product.price if product.price is not None else item.unit_price
        session.add(product)
    session.flush()  # a cart's items reference the products


def redeem_coupon(session: Session, order: Order, quoted: str) -> None:
    """Redeem the quoted code for the order and attribute the order to the coupon's message, or record why not.

    One conditional UPDATE both checks and redeems, so two orders quoting a code at the same moment cannot both
    have it: PostgreSQL re-checks `redeemed_order_id IS NULL` once the first one commits, and SQLite runs one
    writer at a time. Expiry is judged at intake, not at `placed_at`, which the shop's backend sets."""
    code, now = normalize_coupon_code(quoted), utcnow()
    redeemed = session.exec(
        update(Coupon)
        .where(col(Coupon.code) == code, col(Coupon.redeemed_order_id).is_(None), col(Coupon.expires_at) > now)
        .values(redeemed_order_id=order.id, redeemed_at=now)
    )
    coupon = session.get(Coupon, code)
    if redeemed.rowcount == 1 and coupon is not None:
        order.attributed_message_id, order.attributed_journey = coupon.message_id, coupon.journey
        return
    session.add(CouponRejection(order_id=order.id, code=code, reason=_rejection(coupon)))


def _rejection(coupon: Coupon | None) -> CouponOutcome:
    if coupon is None:
        return "unknown"
    return "already_redeemed" if coupon.redeemed_order_id is not None else "expired"


def coupon_outcome(session: Session, order: Order) -> CouponOutcome | None:
    """What became of the order's code, read back: a repeated POST of the order reports what the first did."""
    if not order.coupon_code:
        return None
    if session.exec(select(Coupon.code).where(Coupon.redeemed_order_id == order.id)).first() is not None:
        return "redeemed"
    reason = session.exec(select(CouponRejection.reason).where(CouponRejection.order_id == order.id)).first()
    return cast(CouponOutcome | None, reason)  # written by redeem_coupon, from the same values


def upsert_customer(
    session: Session, incoming: CustomerIn, config: JourneysConfig, *, source: str, wording_version: str | None = None
) -> Customer:
    """Fields that are given replace stored ones; fields left out keep what we know (given dates replace the dates
    told earlier). Consent is recorded with the brand's wording, in `wording_version` (default: the brand's current
    one)."""
    customer = session.get(Customer, incoming.id) or Customer(id=incoming.id)
    profile = incoming.model_dump(
        exclude_unset=True, exclude_none=True, exclude={"id", "sms_consent", "email_consent", "dates"}
    )
    for field, value in profile.items():
        setattr(customer, field, value)
    customer.updated_at = utcnow()
    session.add(customer)
    session.flush()
    if incoming.dates is not None:
        replace_dates(session, customer.id, incoming.dates)
    brand = config.brand
    version = wording_version or brand.consent_wording_version
    for channel, given, wording in (
        (Channel.sms, incoming.sms_consent, brand.sms_consent_wording),
        (Channel.email, incoming.email_consent, brand.email_consent_wording),
    ):
        status = _consent_change(latest_consent(session, customer.id, channel), given, version)
        if status is not None:
            session.add(
                Consent(
                    customer_id=customer.id,
                    channel=channel,
                    status=status,
                    source=source,
                    wording=wording,
                    wording_version=version,
                )
            )
    return customer


def replace_dates(session: Session, customer_id: str, dates: list[DateIn]) -> None:
    """The dates the customer told us are now these. A date is known by its kind and label: one told again keeps
    its row (moved to the day given, if it moved), so its id, which the dates journey names its steps by, stays."""
    wanted: dict[tuple[str, str], DateIn] = {(d.kind, d.label.casefold()): d for d in dates}
    for row in session.exec(select(CustomerDate).where(CustomerDate.customer_id == customer_id)).all():
        same = wanted.pop((row.kind, row.label.casefold()), None)
        if same is None:
            session.delete(row)
        else:
            row.label, row.month, row.day, row.year = same.label, same.month, same.day, same.year
            session.add(row)
    session.add_all(
        CustomerDate(
            customer_id=customer_id, kind=DateKind(d.kind), label=d.label, month=d.month, day=d.day, year=d.year
        )
        for d in wanted.values()
    )
    session.flush()


def customer_has_dates(session: Session, customer_id: str) -> bool:
    """A birthday, or a date the customer told us: what the dates journey runs for."""
    customer = session.get(Customer, customer_id)
    if customer is not None and customer.birthday is not None:
        return True
    return session.exec(select(CustomerDate.id).where(CustomerDate.customer_id == customer_id)).first() is not None


def _consent_change(latest: Consent | None, given: bool | None, version: str) -> ConsentStatus | None:
    """A ticked box grants consent, and is recorded again when the customer agreed to a new version of the
    wording (the evidence must show the text they last agreed to). An unticked one is recorded as denied only
    where nothing was known: it never revokes an earlier opt-in (opting out is STOP or unsubscribe, which are
    explicit)."""
    current = ConsentStatus(latest.status) if latest else None
    if given is True and (current != ConsentStatus.granted or (latest and latest.wording_version != version)):
        return ConsentStatus.granted
    if given is False and current is None:
        return ConsentStatus.denied
    return None

"""What a message shows beyond the customer's name, read from the database at send time by the ids its request
carries: the order (with its shipment), the cart, recommended products, the occasion, the customer's review."""

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from models.contracts import SendRequest
from models.tables import Cart, CartItem, CustomerDate, Order, OrderItem, Product, Review


def message_context(session: Session, request: SendRequest) -> dict[str, Any]:
    """The data a template reads: `order`, `cart`, `products`, `occasion`, `review` (None or [] when the request
    does not name one). Namespaces, not dicts: in a template `order.items` must be the items, not dict.items."""
    return {
        "order": order_context(session, request.order_id) if request.order_id else None,
        "cart": cart_context(session, request.cart_id) if request.cart_id else None,
        "products": products_context(session, request.products),
        "occasion": occasion_context(session, request.date_id) if request.date_id is not None else None,
        "review": review_context(session, request.review_id) if request.review_id is not None else None,
    }


def order_context(session: Session, order_id: str) -> SimpleNamespace | None:
    order = session.get(Order, order_id)
    if order is None:
        return None
    rows = session.exec(
        select(OrderItem, Product)
        .join(Product, col(OrderItem.sku) == col(Product.sku))
        .where(OrderItem.order_id == order_id)
        .order_by(col(OrderItem.id))
    ).all()
    items = [
        {
            "sku": item.sku,
            "name": item.name,
            "quantity": item.quantity,
            "size": item.size,
            "color": item.color,
            "url": product.url,
            "image_url": product.image_url,
            "category": product.category,
        }
        for item, product in rows
    ]
    return SimpleNamespace(
        id=order.id,
        total=order.total,
        currency=order.currency,
        items=items,
        carrier=order.carrier,
        tracking_url=order.tracking_url,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
    )


def cart_context(session: Session, cart_id: str) -> SimpleNamespace | None:
    cart = session.get(Cart, cart_id)
    if cart is None:
        return None
    rows = session.exec(
        select(CartItem, Product)
        .join(Product, col(CartItem.sku) == col(Product.sku))
        .where(CartItem.cart_id == cart_id)
        .order_by(col(CartItem.id))
    ).all()
    ratings = _ratings(session, [item.sku for item, _ in rows])
    items = []
    for item, product in rows:
        rating, count, quote = ratings.get(item.sku, (None, 0, None))
        items.append(
            {
                "sku": item.sku,
                "name": item.name,
                "quantity": item.quantity,
                "unit_price": item.unit_price,
                "size": item.size,
                "color": item.color,
                "url": product.url,
                "image_url": product.image_url,
                "rating": rating,  # the product's average review, e.g. 4.6, or None
                "reviews": count,
                "quote": quote,  # the text of its best recent review, or None
            }
        )
    total = sum((item.unit_price * item.quantity for item, _ in rows), start=Decimal(0))
    return SimpleNamespace(id=cart.id, currency=cart.currency, items=items, total=total)


def _ratings(session: Session, skus: list[str]) -> dict[str, tuple[float, int, str | None]]:
    if not skus:
        return {}
    averages = session.exec(
        select(Review.sku, func.avg(Review.rating), func.count(col(Review.id)))
        .where(col(Review.sku).in_(skus))
        .group_by(col(Review.sku))
    ).all()
    result: dict[str, tuple[float, int, str | None]] = {}
    for sku, average, count in averages:
        quote = session.exec(
            select(Review.text)
            .where(Review.sku == sku, col(Review.rating) >= 4, col(Review.text).is_not(None))
            .order_by(col(Review.posted_at).desc())
        ).first()
        result[str(sku)] = (round(float(average), 1), int(count), quote)
    return result


def products_context(session: Session, skus: list[str]) -> list[dict[str, Any]]:
    """The products in the order given (a recommendation's ranking); unknown skus are left out."""
    if not skus:
        return []
    found = {p.sku: p for p in session.exec(select(Product).where(col(Product.sku).in_(skus))).all()}
    return [
        {
            "sku": p.sku,
            "name": p.name,
            "category": p.category,
            "line": p.line,
            "color": p.color,
            "price": p.price,
            "url": p.url,
            "image_url": p.image_url,
        }
        for sku in skus
        if (p := found.get(sku)) is not None
    ]


def occasion_context(session: Session, date_id: int) -> SimpleNamespace | None:
    date = session.get(CustomerDate, date_id)
    if date is None:
        return None
    return SimpleNamespace(kind=date.kind, label=date.label, month=date.month, day=date.day)


def review_context(session: Session, review_id: int) -> SimpleNamespace | None:
    review = session.get(Review, review_id)
    if review is None:
        return None
    return SimpleNamespace(rating=review.rating, text=review.text, order_id=review.order_id, sku=review.sku)

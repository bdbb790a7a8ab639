"""What to recommend after an order, from the catalog: one query that scores and ranks in the database.

Candidates are active products the customer has never bought, in season (or for all year), and either in a
category that goes with what the order bought (`complements`, the cross-sell) or in the same category or line
(`similar`, the thanks for a purchase with a personal code). They are ranked by the same line, a size bought
being available (a product without sizes is one size, and fits), the same colour, and being for this season, in
that order of weight (`similar` puts the same category first); then by the marketer's order of complementary
categories. Nothing that fits: no recommendation, and the journey sends nothing.

Seasons are the northern hemisphere's, by month (winter is December to February). A product for the season
that starts within a month is in season too: shops sell a season ahead. A product for another season is not
offered at all.
"""

from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, String, case, false, func, literal, or_
from sqlmodel import Session, col, select
from temporalio import activity

from models.contracts import RecommendRequest
from models.tables import Order, OrderItem, Product

SEASONS = ("winter", "spring", "summer", "autumn")
SELLING_AHEAD = timedelta(days=30)

# Points per match: each outweighs all the ones after it together.
SAME_CATEGORY, SAME_LINE, SIZE_AVAILABLE, SAME_COLOUR, IN_SEASON = 16, 8, 4, 2, 1


def season_of(day: date) -> str:
    return SEASONS[day.month % 12 // 3]


def seasons_at(day: date) -> list[str]:
    """The season of the day, and the next one if it starts within a month."""
    return sorted({season_of(day), season_of(day + SELLING_AHEAD)})


def recommend(session: Session, request: RecommendRequest) -> list[str]:
    """Skus, best first; [] when nothing fits."""
    bought = session.exec(
        select(Product.category, Product.line, OrderItem.size, OrderItem.color)
        .join(Product, col(OrderItem.sku) == col(Product.sku))
        .where(OrderItem.order_id == request.order_id)
    ).all()
    categories = _lowered(category for category, _, _, _ in bought)
    lines = _lowered(line for _, line, _, _ in bought)
    sizes = _lowered(size for _, _, size, _ in bought)
    colours = _lowered(colour for _, _, _, colour in bought)

    category = func.lower(col(Product.category))
    line = func.lower(col(Product.line))
    if request.mode == "complements":
        wanted = _lowered(c for bought_category in categories for c in request.complements.get(bought_category, []))
        wanted = [c for c in wanted if c not in categories]  # another coat is no complement to a coat
        if not wanted:
            return []
        matches: ColumnElement[bool] = category.in_(wanted)
        score: Any = literal(0)
        tie_breaks = [case({c: i for i, c in enumerate(wanted)}, value=category), col(Product.sku)]
    else:
        if not categories and not lines:
            return []
        matches = or_(category.in_(categories) if categories else false(), line.in_(lines) if lines else false())
        score = _points(category.in_(categories), SAME_CATEGORY) if categories else literal(0)
        tie_breaks = [col(Product.sku)]

    in_season = seasons_at(request.on)
    if lines:
        score = score + _points(line.in_(lines), SAME_LINE)
    if sizes:
        score = score + _points(or_(col(Product.sizes).is_(None), *(_has_size(s) for s in sizes)), SIZE_AVAILABLE)
    if colours:
        score = score + _points(func.lower(col(Product.color)).in_(colours), SAME_COLOUR)
    score = score + _points(col(Product.season).in_(in_season), IN_SEASON)

    ever_bought = (
        select(OrderItem.sku)
        .join(Order, col(Order.id) == col(OrderItem.order_id))
        .where(Order.customer_id == request.customer_id)
    )
    rows = session.exec(
        select(Product.sku)
        .where(
            col(Product.active).is_(True),
            matches,
            col(Product.sku).not_in(ever_bought),
            or_(col(Product.season).is_(None), col(Product.season).in_(in_season)),
        )
        .order_by(score.desc(), *tie_breaks)
        .limit(request.max_items)
    ).all()
    return list(rows)


def _lowered(values: Any) -> list[str]:
    """Distinct, lowercased, in order of first appearance; blanks left out."""
    return list(dict.fromkeys(v.strip().lower() for v in values if v and v.strip()))


def _points(condition: ColumnElement[bool], points: int) -> Any:
    return case((condition, points), else_=0)


def _has_size(size: str) -> ColumnElement[bool]:
    """`size` is one of the product's comma-separated sizes (stored as "S,M,L")."""
    escaped = size.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    sizes = literal(",", String) + func.lower(col(Product.sizes)) + literal(",", String)
    return sizes.like(f"%,{escaped},%", escape="\\")


class RecommendationActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn
    def recommend_products(self, request: RecommendRequest) -> list[str]:
        """Skus to show, best first; [] when nothing fits (the journey then sends nothing)."""
        with Session(self._engine) as session:
            return recommend(session, request)

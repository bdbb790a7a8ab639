"""The product catalog: the shop's backend upserts its products in bulk; cross-sell and the thanks for a code
purchase recommend from it.

A product's line, colour, sizes and season are what recommendations match on; `active: false` takes a product
out of every recommendation without deleting it (orders still name it).
"""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from api.schemas import Identifier, Money
from models.tables import Product

MAX_BATCH = 1000
ATTEMPTS = 3  # a concurrent insert of the same new sku makes an attempt fail
SIZES_MAX_LENGTH = 300  # Product.sizes, comma-separated

Season = Literal["spring", "summer", "autumn", "winter"]
Size = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[^,]+$")]
Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://")]


def _season(value: Any) -> Any:
    """Any case; American "fall" is autumn."""
    if isinstance(value, str):
        value = value.strip().lower()
        return "autumn" if value == "fall" else value
    return value


class ProductIn(BaseModel):
    """Fields left out keep what is stored; `null` clears one (`season: null`: for all year)."""

    model_config = ConfigDict(extra="forbid")

    sku: Identifier
    name: str = Field(min_length=1, max_length=300)
    category: str | None = Field(None, max_length=100)
    line: str | None = Field(None, max_length=100)  # the product line, e.g. "Alpine"
    color: str | None = Field(None, max_length=32)
    sizes: list[Size] | None = None  # the sizes it comes in; none: one size
    season: Annotated[Season | None, BeforeValidator(_season)] = None  # none: all year
    price: Money | None = None
    url: Url | None = None
    image_url: Url | None = None
    active: bool = True

    @field_validator("sizes")
    @classmethod
    def _stored_sizes_fit(cls, sizes: list[str] | None) -> list[str] | None:
        if sizes is None:
            return None
        sizes = list(dict.fromkeys(sizes))
        if len(",".join(sizes)) > SIZES_MAX_LENGTH:
            raise ValueError(f"at most {SIZES_MAX_LENGTH} characters of sizes in all")
        return sizes


class CatalogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    products: list[ProductIn] = Field(min_length=1, max_length=MAX_BATCH)


class CatalogResult(BaseModel):
    created: int
    updated: int


def upsert_catalog(session: Session, products: list[ProductIn]) -> CatalogResult:
    """Create or update each product; not committed here (all or nothing)."""
    skus = [p.sku for p in products]
    stored = {p.sku: p for p in session.exec(select(Product).where(col(Product.sku).in_(skus))).all()}
    created = 0
    for incoming in products:
        product = stored.get(incoming.sku)
        if product is None:
            product = Product(sku=incoming.sku, name=incoming.name)
            created += 1
        fields = incoming.model_dump(exclude_unset=True, exclude={"sku"})
        if "sizes" in fields:
            fields["sizes"] = ",".join(fields["sizes"]) if fields["sizes"] else None
        for field, value in fields.items():
            setattr(product, field, value)
        session.add(product)
    return CatalogResult(created=created, updated=len(products) - created)


def _no_repeated_sku(products: list[ProductIn]) -> None:
    first: dict[str, int] = {}
    errors = []
    for i, product in enumerate(products):
        if product.sku in first:
            msg = f"sku {product.sku!r} is also products.{first[product.sku]}"
            errors.append({"type": "value_error", "loc": ("body", "products", i, "sku"), "msg": msg})
        first.setdefault(product.sku, i)
    if errors:
        raise RequestValidationError(errors)


def catalog_router(engine: Engine, authorized: Callable[..., None]) -> APIRouter:
    router = APIRouter(prefix="/products", tags=["catalog"], dependencies=[Depends(authorized)])

    @router.post("")
    async def post_products(catalog: CatalogIn) -> CatalogResult:
        """Create or update up to 1000 products, all or nothing: a bad field is a 422 naming it
        (`products.2.season`), and nothing is stored."""
        _no_repeated_sku(catalog.products)

        def store() -> CatalogResult:
            with Session(engine) as session:
                result = upsert_catalog(session, catalog.products)
                session.commit()
                return result

        def store_retrying() -> CatalogResult:
            for _ in range(ATTEMPTS - 1):
                try:
                    return store()
                except IntegrityError:
                    continue  # an order or another upsert inserted one of these new skus first: again, updating it
            return store()

        return await run_in_threadpool(store_retrying)

    return router

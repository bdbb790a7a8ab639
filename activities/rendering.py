"""Message texts: Jinja templates rendered in a sandbox, so a template can read the data it is given and
nothing else."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from activities.personalisation import Personalisation
from models.journeys import TEMPLATES_DIR, Brand
from models.tables import Channel, utcnow


@dataclass(frozen=True)
class Rendered:
    body: str
    subject: str | None = None


class TemplateRenderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(directory),
            undefined=StrictUndefined,
            autoescape=False,  # SMS and plain-text email
            trim_blocks=True,
            keep_trailing_newline=False,
            auto_reload=True,  # a corrected text reaches running journeys without a restart
        )

    def render(self, template: str, channel: Channel, context: dict[str, Any]) -> Rendered:
        text = self._env.get_template(f"{template}.{channel}.j2").render(context).strip()
        if channel == Channel.email:
            first, _, rest = text.partition("\n")
            if not first.startswith("Subject:"):
                raise ValueError(f"email template {template} must start with 'Subject: ...'")
            return Rendered(subject=first.removeprefix("Subject:").strip(), body=rest.strip())
        return Rendered(body=" ".join(text.split()))  # an SMS is one paragraph; spacing costs segments


def template_context(
    brand: Brand, customer: dict[str, str | None], personal: Personalisation, data: dict[str, Any]
) -> dict[str, Any]:
    """Everything a template sees: the brand, the customer's name, the message's data (`order`, `cart`,
    `products`, `occasion`, `review`) and the makers of links and coupons."""
    return {
        "brand": brand.model_dump(),
        "customer": customer,
        **data,
        "link": personal.link,
        "coupon": personal.coupon,
    }


# The longest text a template is likely to produce: a long name, two items (links and coupon codes have a fixed
# length). Used to check a text's segment budget when the journeys config loads.
SAMPLE_CUSTOMER: dict[str, str | None] = {"first_name": "Maximiliana", "last_name": "Worthington-Smythe"}
_SAMPLE_ITEMS: list[dict[str, Any]] = [
    {
        "sku": "SWEATER-XL",
        "name": "Merino Wool Crew Sweater",
        "quantity": 1,
        "unit_price": Decimal("129.00"),
        "size": "XL",
        "color": "Heather Grey",
        "category": "sweaters",
        "url": "https://shop.example/p/merino-wool-crew-sweater",
        "image_url": "https://shop.example/i/merino-wool-crew-sweater.jpg",
        "rating": 4.8,
        "reviews": 1234,
        "quote": "Warm, soft and it still looks new after a winter of wear.",
    },
    {
        "sku": "SNEAKER-10",
        "name": "Trail Runner Sneakers",
        "quantity": 2,
        "unit_price": Decimal("89.50"),
        "size": "10.5",
        "color": "Navy",
        "category": "sneakers",
        "url": "https://shop.example/p/trail-runner-sneakers",
        "image_url": "https://shop.example/i/trail-runner-sneakers.jpg",
        "rating": 4.6,
        "reviews": 87,
        "quote": None,
    },
]
SAMPLE_ORDER = SimpleNamespace(
    id="1000042",
    total=Decimal("1234.50"),
    currency="USD",
    items=_SAMPLE_ITEMS,
    carrier="UPS",
    tracking_url="https://www.ups.com/track?tracknum=1Z999AA10123456784",
    shipped_at=None,
    delivered_at=None,
)
SAMPLE_DATA: dict[str, Any] = {
    "order": SAMPLE_ORDER,
    "cart": SimpleNamespace(id="cart-1000042", currency="USD", items=_SAMPLE_ITEMS, total=Decimal("308.00")),
    "products": [
        {**item, "line": "Alpine", "price": item["unit_price"]} for item in [*_SAMPLE_ITEMS, *_SAMPLE_ITEMS[:1]]
    ],
    "occasion": SimpleNamespace(kind="partner_birthday", label="Alexandra's birthday", month=12, day=24),
    "review": SimpleNamespace(rating=5, text="Love it", order_id="1000042", sku="SWEATER-XL"),
}


def sample_sms(renderer: TemplateRenderer, template: str, brand: Brand, public_url: str) -> str:
    personal = Personalisation(public_url, timedelta(days=14), utcnow())
    context = template_context(brand, SAMPLE_CUSTOMER, personal, SAMPLE_DATA)
    return renderer.render(template, Channel.sms, context).body

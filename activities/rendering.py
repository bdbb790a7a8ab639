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
    brand: Brand, customer: dict[str, str | None], order: object | None, personal: Personalisation
) -> dict[str, Any]:
    """Everything a template sees: the data, and the makers of links and coupons."""
    return {
        "brand": brand.model_dump(),
        "customer": customer,
        "order": order,
        "link": personal.link,
        "coupon": personal.coupon,
    }


# The longest text a template is likely to produce: a long name, two items (links and coupon codes have a fixed
# length). Used to check a text's segment budget when the journeys config loads.
SAMPLE_CUSTOMER: dict[str, str | None] = {"first_name": "Maximiliana", "last_name": "Worthington-Smythe"}
SAMPLE_ORDER = SimpleNamespace(
    id="1000042",
    total=Decimal("1234.50"),
    currency="USD",
    items=[
        {"name": "Merino Wool Crew Sweater", "quantity": 1, "size": "XL", "color": "Heather Grey", "url": None},
        {"name": "Trail Runner Sneakers", "quantity": 2, "size": "10.5", "color": "Navy", "url": None},
    ],
)


def sample_sms(renderer: TemplateRenderer, template: str, brand: Brand, public_url: str) -> str:
    personal = Personalisation(public_url, timedelta(days=14), utcnow())
    context = template_context(brand, SAMPLE_CUSTOMER, SAMPLE_ORDER, personal)
    return renderer.render(template, Channel.sms, context).body

"""What a template may ask for beyond the data it is given: per-recipient tracking links and unique coupons.

They are made while the message is rendered and stored with its outbox row, in the same transaction, so a
retried send shows the customer the same link and the same code as the first attempt.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlmodel import Session

from models.links import click_url, new_coupon_code, new_token, unsubscribe_url
from models.tables import Coupon, Link, LinkKind, Message


@dataclass(frozen=True)
class IssuedCoupon:
    """`{{ coupon(15) }}` prints the code; `{{ offer.expires_on }}` and `{{ offer.percent_off }}` are there too."""

    code: str
    percent_off: int
    expires_on: date

    def __str__(self) -> str:
        return self.code


@dataclass
class Personalisation:
    public_url: str
    coupon_valid_for: timedelta
    now: datetime
    links: list[Link] = field(default_factory=list)
    coupons: list[Coupon] = field(default_factory=list)

    def link(self, url: str) -> str:
        """A short link for this recipient that records the click and redirects to `url` (with UTM tags)."""
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"link({url!r}): only http(s) destinations")
        token = new_token()
        self.links.append(Link(token=token, message_id=0, kind=LinkKind.click, url=url))  # message_id: see attach
        return click_url(self.public_url, token)

    def coupon(self, percent_off: int) -> IssuedCoupon:
        """A unique, single-use code for this recipient, valid for the policy's `coupon_valid_for`."""
        if not isinstance(percent_off, int) or not 1 <= percent_off <= 100:
            raise ValueError(f"coupon({percent_off!r}): a whole percentage from 1 to 100")
        expires_at = self.now + self.coupon_valid_for
        code = new_coupon_code()
        # Whose, for which message and journey: filled in by `attach`, once the message has its id.
        coupon = Coupon(
            code=code, percent_off=percent_off, expires_at=expires_at, message_id=0, customer_id="", journey=""
        )
        self.coupons.append(coupon)
        return IssuedCoupon(coupon.code, percent_off, expires_at.date())

    def unsubscribe_url(self) -> str:
        token = new_token()
        self.links.append(Link(token=token, message_id=0, kind=LinkKind.unsubscribe))
        return unsubscribe_url(self.public_url, token)

    def attach(self, session: Session, message: Message) -> None:
        """Store what the rendering made, tied to the message (flushed, so it has its id)."""
        assert message.id is not None
        for link in self.links:
            link.message_id = message.id
        for coupon in self.coupons:
            coupon.message_id, coupon.customer_id, coupon.journey = message.id, message.customer_id, message.journey
        session.add_all([*self.links, *self.coupons])

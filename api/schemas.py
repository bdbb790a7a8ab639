"""What the shop's backend sends us, validated before anything is stored."""

import calendar
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from models.settings import get_settings
from models.tables import Channel

# Ids from the shop's systems end up in workflow ids and visibility queries: no quotes, no spaces.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@/+\-]+$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=3, allow_inf_nan=False)]


def _phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, get_settings().default_region)
    except phonenumbers.NumberParseException as e:
        raise ValueError(f"not a phone number: {e}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as e:
        raise ValueError(str(e)) from None


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as 'America/Los_Angeles'") from None
    return value


def _currency(value: str) -> str:
    code = value.upper()
    if not re.fullmatch(r"[A-Z]{3}", code) or pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return code


Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
Currency = Annotated[str, AfterValidator(_currency)]


class DateIn(BaseModel):
    """A yearly date the customer told us. 29 February is one (celebrated on 28 February in other years)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["partner_birthday", "anniversary", "other"]  # the customer's own birthday is `birthday`
    label: str = Field(min_length=1, max_length=100)  # what the messages call it: "Sam's birthday"
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    year: int | None = Field(None, ge=1900, le=2100)  # when it began; not celebrated in the years before

    @field_validator("day")
    @classmethod
    def _day_of_month(cls, day: int, info: ValidationInfo) -> int:
        month = info.data.get("month")
        if month is not None and day > calendar.monthrange(2000, month)[1]:  # 2000 had a 29 February
            raise ValueError(f"{calendar.month_name[month]} has no day {day}")
        return day

    @field_validator("year")
    @classmethod
    def _leap_year(cls, year: int | None, info: ValidationInfo) -> int | None:
        if year is not None and (info.data.get("month"), info.data.get("day")) == (2, 29) and not calendar.isleap(year):
            raise ValueError(f"{year} had no 29 February")
        return year


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    email: Email | None = None
    phone: Phone | None = None
    timezone: TimeZone | None = None
    birthday: date | None = None
    preferred_channel: Channel | None = None
    sms_consent: bool | None = None  # ticked at checkout; None: not asked
    email_consent: bool | None = None
    dates: list[DateIn] | None = Field(None, max_length=20)  # replace the dates told earlier; None keeps them

    @field_validator("dates")
    @classmethod
    def _distinct_dates(cls, dates: list[DateIn] | None) -> list[DateIn] | None:
        seen: dict[tuple[str, str], int] = {}
        for index, told in enumerate(dates or []):
            key = (told.kind, told.label.casefold())
            if key in seen:
                raise ValueError(f"dates {seen[key]} and {index} are the same {told.kind} ({told.label!r})")
            seen[key] = index
        return dates


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Identifier
    name: str = Field(min_length=1, max_length=300)
    category: str | None = Field(None, max_length=100)
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money
    size: str | None = Field(None, max_length=32)
    color: str | None = Field(None, max_length=32)
    url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    image_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Identifier
    placed_at: AwareDatetime
    currency: Currency
    total: Money
    coupon_code: str | None = Field(None, max_length=64)
    cart_id: Identifier | None = None  # the cart this order bought: its abandoned-cart journey ends
    customer: CustomerIn
    items: list[OrderItemIn] = Field(min_length=1, max_length=500)


# What became of the coupon code an order quoted; the order is accepted either way.
CouponOutcome = Literal["redeemed", "unknown", "expired", "already_redeemed"]


class IntakeResult(BaseModel):
    workflow_id: str
    status: str  # "started" | "exists"
    coupon: CouponOutcome | None = None  # only when the order quoted a code; the same when the order is posted again


class MessageOut(BaseModel):
    id: int
    journey: str
    step: str
    channel: Channel | None
    status: str
    reason: str | None  # why it was skipped, failed, deferred or sent late (quiet_hours, frequency_cap)
    kind: str  # marketing or transactional
    not_before: datetime | None  # deferred: when it is tried again
    template: str | None
    subject: str | None
    body: str | None
    provider: str | None
    provider_id: str | None
    created_at: datetime
    sent_at: datetime | None
    delivery_status: str | None  # what the provider last reported: delivered, undelivered, open, bounce, ...

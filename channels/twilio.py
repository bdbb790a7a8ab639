"""SMS through Twilio's Programmable Messaging API, on the `twilio` SDK.

One HTTP request per attempt: the SDK's HTTP client is built with no retries (Temporal retries, with backoff),
a short timeout, and a validity period so a text stuck in Twilio's queue expires instead of landing hours later
in the recipient's quiet hours. Refusals no retry can mend raise `PermanentFailure` (21610 raises
`RecipientOptedOut`); rate limits, 5xx and network trouble raise `ProviderUnavailable`, which Temporal retries.

A timeout or dropped connection after the POST leaves the outcome unknown: Twilio may have accepted the text.
`send_once(message, maybe_sent=True)` looks for it first (`find_sent`) and sends only if it is not there.

With `max_rate` (TWILIO_MAX_RATE), `pace()` spreads this process's sends evenly at that many per second, and `send`
holds back one that bunched with others after its slot, so that a campaign keeps to the sender's rate instead of
meeting 429s (each one retried, with a lookup, after backoff).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import requests
from requests.adapters import HTTPAdapter
from twilio.base import values
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from channels.base import OutcomeUnknown, OutgoingMessage, PermanentFailure, ProviderUnavailable, RecipientOptedOut

if TYPE_CHECKING:
    from models.settings import Settings

OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
# Invalid 'To' number, not a valid mobile number, unknown destination handset, unreachable carrier.
PERMANENT = frozenset({21211, 21614, 30005, 30006})
# Bad credentials or a suspended account: fix the configuration, and the waiting messages go out then.
MISCONFIGURED_STATUSES = frozenset({401, 403})
TOO_MANY_REQUESTS = 20429  # over the account's or sender's rate: retried like any 429, never a failure
LOOKBACK = timedelta(days=1)
LOOKUP_LIMIT = 50


class TwilioChannel:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        public_url: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        validity_period: int = 3600,
        timeout: float = 10.0,
        max_rate: float | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        if bool(from_number) == bool(messaging_service_sid):
            raise ValueError("Twilio needs exactly one of TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        if not 1 <= validity_period <= 36000:
            raise ValueError(f"Twilio validity_period must be 1..36000 seconds, not {validity_period}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = f"{public_url.rstrip('/')}/webhooks/twilio/status"
        self.validity_period = validity_period
        self.pacer = RatePacer(max_rate) if max_rate else None
        self.client = Client(account_sid, auth_token, http_client=_http_client(timeout))
        if api_base_url:
            # Every `client.messages` call resolves its URL against the Api domain's base_url.
            self.client.api.base_url = api_base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioChannel:
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            raise ValueError("Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            public_url=settings.public_url,
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_base_url=settings.twilio_api_base_url,
            max_rate=settings.twilio_max_rate,
        )

    def pace(self) -> None:
        """Wait for this process's next send slot (no wait without TWILIO_MAX_RATE); called before the send locks
        the customer."""
        if self.pacer:
            self.pacer.wait()

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        """Send unless `maybe_sent` and Twilio already has this text; return Twilio's message SID.

        `maybe_sent` is for the caller that finds its outbox row still pending: an earlier attempt called
        Twilio and its outcome is unknown.
        """
        if maybe_sent:
            found = self.find_sent(message)
            if found is not None:
                return found
        if self.pacer:
            self.pacer.admit()
        with _translated_errors(posting=True):
            created = self.client.messages.create(
                to=message.to,
                body=message.body,
                status_callback=self.status_callback,
                validity_period=self.validity_period,
                from_=self.from_number or values.unset,
                messaging_service_sid=self.messaging_service_sid or values.unset,
            )
        if not created.sid:
            raise ProviderUnavailable("Twilio accepted the message without a SID")
        return created.sid

    def find_sent(self, message: OutgoingMessage) -> str | None:
        """The SID of a text Twilio already has for this message, created in the last day, or None.

        Twilio has no idempotency key on Messages, so this matches on recipient, sender and exact body among the
        most recent messages to that number: the best available. Two identical texts to one number within a day
        are one message to us (our frequency caps make that rare), and a body Twilio rewrote (smart encoding)
        would not match. We filter on `date_created` here, not with the API's `DateSent>` filter: a text still
        queued has no `date_sent` yet.
        """
        since = datetime.now(UTC) - LOOKBACK
        with _translated_errors(posting=False):
            recent = self.client.messages.list(
                to=message.to, from_=self.from_number or values.unset, limit=LOOKUP_LIMIT, page_size=LOOKUP_LIMIT
            )
        for sent in recent:
            if sent.date_created is not None and sent.date_created < since:
                continue
            if self.messaging_service_sid and sent.messaging_service_sid != self.messaging_service_sid:
                continue
            if sent.body == message.body and sent.sid:
                return sent.sid
        return None


class RatePacer:
    """Keeps this process's sends to `rate` a second, from any number of threads, in two steps.

    `wait()`, before the send takes any lock, gives each call the next free slot and sleeps until it (outside the
    pacer's lock): queued sends hold nothing. `admit()`, just before the request, holds back one that bunched with
    others after their slots (a process short of CPU wakes its threads late, and together): never more than `burst`
    requests (a quarter of a second's worth) ahead of the rate. Idle time is not saved up into a burst.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate, self.interval = rate, 1.0 / rate
        self.burst = max(1.0, rate / 4 if burst is None else burst)
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")
        self._tokens, self._at = self.burst, clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Sleep until this call's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
        return slot - now

    def admit(self) -> float:
        """Sleep until the request may go (a token bucket of `rate` a second holding `burst`, each call reserving
        its token first, so that callers go in turn); returns the seconds waited. It rarely waits: the slots of
        `wait()` spread the calls already."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate) - 1
            self._at = now
            delay = max(0.0, -self._tokens / self.rate)
        if delay:
            self._sleep(delay)
        return delay


def _http_client(timeout: float) -> TwilioHttpClient:
    """The SDK's client with retries off for both schemes (http is the test fake's): one request per attempt."""
    http_client = TwilioHttpClient(timeout=timeout, max_retries=0)
    assert http_client.session is not None  # pool_connections=True, the default
    for scheme in ("https://", "http://"):
        http_client.session.mount(scheme, HTTPAdapter(max_retries=0))
    return http_client


@contextmanager
def _translated_errors(*, posting: bool) -> Iterator[None]:
    """Map the SDK's and requests' exceptions onto the send policy's: permanent, opted out or retryable."""
    try:
        yield
    except (TwilioRestException, TwilioServiceException) as e:
        raise _classify(e.status, e.code, str(getattr(e, "msg", "") or e)) from e
    except TwilioException as e:  # a list page that failed: never read as "not sent", so retry the lookup
        raise ProviderUnavailable(f"Twilio request failed: {e}") from e
    except requests.ConnectTimeout as e:  # never connected: nothing was sent
        raise ProviderUnavailable(f"Twilio unreachable: {e}") from e
    except (requests.Timeout, requests.ConnectionError) as e:
        # A read timeout or a dropped connection on the POST: Twilio may have the message.
        raise (OutcomeUnknown if posting else ProviderUnavailable)(f"Twilio request failed: {e}") from e
    except requests.RequestException as e:
        raise ProviderUnavailable(f"Twilio request failed: {e}") from e


def _classify(status: int, code: int | None, text: str) -> Exception:
    if code == OPTED_OUT:
        return RecipientOptedOut(str(code), text)
    if code in PERMANENT:
        return PermanentFailure(str(code), text)
    if status == 429 or code == TOO_MANY_REQUESTS or status >= 500 or status in MISCONFIGURED_STATUSES:
        return ProviderUnavailable(f"Twilio HTTP {status} ({code}): {text}")
    if 400 <= status < 500:
        return PermanentFailure(str(code or status), text)
    return ProviderUnavailable(f"Twilio HTTP {status} ({code}): {text}")

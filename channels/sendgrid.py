"""Email through SendGrid's v3 Mail Send API, on the `sendgrid` SDK.

One HTTP request per attempt: the SDK's HTTP client (`python_http_client`, on `urllib`) has no retry logic of its
own, and every request carries a socket timeout (the SDK's default is none at all). Temporal retries, with
backoff. Our outbox row id travels as the custom argument `comeback_message_id`, so every event SendGrid posts to
the webhook maps back to its row; the journey travels as the message's category.

Outcomes: 2xx returns SendGrid's `X-Message-Id`. Refusals no retry can mend (400 invalid request, 413 too large
and other 4xx) raise `PermanentFailure` with the HTTP status as the code and SendGrid's error messages.
Rate limits (429), 5xx, timeouts and network trouble raise `ProviderUnavailable`, which Temporal retries. So do
401 (bad API key), 403 (key without `mail.send`, unverified sender, no credits) and 404 (wrong API host): they
are configuration errors that fail every send alike, so the messages wait, logged loudly, and go out once the
configuration is fixed instead of each being failed for good.

SendGrid has no idempotency key on Mail Send: a read timeout, a dropped connection or a worker that died after
the POST leaves the outcome unknown. The next attempt (`maybe_sent`) then looks the message up by its custom
argument in the Email Activity API (`GET /v3/messages`, a paid add-on) before sending again. Without the add-on
(403/404), or for an email SendGrid has not yet listed (it can take a minute), the retry may deliver it twice.
SendGrid never refuses a suppressed (unsubscribed, bounced) recipient at send time: it accepts the message and
reports a `dropped` event to the webhook, so this channel never raises `RecipientOptedOut`.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
from typing import TYPE_CHECKING, Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Asm, Category, CustomArg, Header, Mail

from channels.base import OutcomeUnknown, OutgoingMessage, PermanentFailure, ProviderUnavailable

if TYPE_CHECKING:
    from models.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_API_HOST = "https://api.sendgrid.com"
MESSAGE_ID_ARG = "comeback_message_id"
# Bad API key, a key without the mail.send scope or an unverified sender, a wrong API host: fix the
# configuration, and the waiting messages go out then.
MISCONFIGURED_STATUSES = frozenset({401, 403, 404})
RETRYABLE_STATUSES = frozenset({408, 429})


class SendGridChannel:
    name = "sendgrid"

    def __init__(
        self,
        api_key: str,
        from_email: str,
        *,
        public_url: str,
        api_host: str | None = None,
        unsubscribe_group_id: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not api_key or not from_email:
            raise ValueError("SendGrid needs SENDGRID_API_KEY and SENDGRID_FROM_EMAIL")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self.from_email = from_email
        self.public_url = public_url.rstrip("/")
        self.unsubscribe_group_id = unsubscribe_group_id
        self.timeout = timeout
        self.client = SendGridAPIClient(api_key, host=(api_host or DEFAULT_API_HOST).rstrip("/"))
        # Every request is built from this client (`client.mail.send.post`), which hands its timeout on; urllib
        # applies it to the connect and to each read on the socket.
        self.client.client.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridChannel:
        if not settings.sendgrid_api_key or not settings.sendgrid_from_email:
            raise ValueError("SendGrid needs SENDGRID_API_KEY and SENDGRID_FROM_EMAIL")
        group_id = settings.sendgrid_unsubscribe_group_id
        return cls(
            settings.sendgrid_api_key,
            settings.sendgrid_from_email,
            public_url=settings.public_url,
            api_host=settings.sendgrid_api_host,
            unsubscribe_group_id=int(group_id) if group_id is not None else None,
        )

    def build(self, message: OutgoingMessage) -> Mail:
        """The Mail Send request for one message: plain text, tagged so webhook events find their row."""
        if not message.subject:
            raise PermanentFailure("no_subject", f"email {message.message_id} has no subject")
        mail = Mail(
            from_email=self.from_email,
            to_emails=message.to,
            subject=message.subject,
            plain_text_content=message.body,
        )
        mail.add_custom_arg(CustomArg(MESSAGE_ID_ARG, str(message.message_id)))
        if message.journey:
            mail.add_category(Category(message.journey))
        if message.unsubscribe_url:
            # One click in the mail client revokes email consent here, where every send checks it (RFC 8058).
            mail.add_header(Header("List-Unsubscribe", f"<{message.unsubscribe_url}>"))
            mail.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        if self.unsubscribe_group_id is not None:
            # SendGrid's group too: its suppressions reach us through the event webhook (group_unsubscribe).
            mail.asm = Asm(self.unsubscribe_group_id)
        return mail

    def send(self, message: OutgoingMessage, *, maybe_sent: bool = False) -> str:
        if maybe_sent:
            found = self.find_sent(message.message_id)
            if found is not None:
                return found
        mail = self.build(message)
        try:
            response = self.client.send(mail)
        except HTTPError as e:
            raise _classify(e) from e
        except TimeoutError as e:  # a read timed out: SendGrid may have the message
            raise OutcomeUnknown(f"SendGrid timed out after {self.timeout}s: {e}") from e
        except urllib.error.URLError as e:  # never connected (refused, DNS, connect timeout): nothing was sent
            raise ProviderUnavailable(f"SendGrid unreachable: {e.reason}") from e
        except (OSError, http.client.HTTPException) as e:  # connection reset or dropped mid-response
            raise OutcomeUnknown(f"SendGrid request failed: {e!r}") from e
        provider_id = response.headers.get("X-Message-Id")
        if not provider_id:
            # Accepted (sandbox mode answers 200 without an id): retrying would send it again. Webhook events
            # still find the row by the custom argument.
            log.warning("SendGrid accepted message %s without an X-Message-Id", message.message_id)
            return ""
        return str(provider_id)

    def find_sent(self, message_id: int) -> str | None:
        """The id of an email SendGrid already has for this outbox row, from the Email Activity API, or None
        (not there, or the account has no access to the API, in which case the retry sends)."""
        query = f"unique_args['{MESSAGE_ID_ARG}']=\"{message_id}\""
        try:
            response = self.client.client.messages.get(query_params={"query": query, "limit": 1})
        except HTTPError as e:
            if int(e.status_code) in MISCONFIGURED_STATUSES:
                log.warning(
                    "SendGrid Email Activity API unavailable (HTTP %s): message %s may be sent twice",
                    e.status_code,
                    message_id,
                )
                return None
            raise _classify(e) from e
        except (OSError, http.client.HTTPException) as e:  # cannot look: wait rather than risk a second email
            raise ProviderUnavailable(f"SendGrid lookup failed: {e!r}") from e
        try:
            found = json.loads(response.body or b"{}").get("messages") or []
        except (ValueError, AttributeError):
            found = []
        if not found:
            return None
        # An activity msg_id is the X-Message-Id, a dot, then the recipient's part.
        return str(found[0].get("msg_id", "")).split(".")[0]


def _classify(error: HTTPError) -> Exception:
    status = int(error.status_code)
    text = _error_text(error.body) or str(getattr(error, "reason", "")) or "no details"
    if status in MISCONFIGURED_STATUSES:
        log.error(
            "SendGrid refused the request with HTTP %s (%s): check SENDGRID_API_KEY (mail.send scope), "
            "SENDGRID_FROM_EMAIL (a verified sender) and SENDGRID_API_HOST; the send will be retried",
            status,
            text,
        )
        return ProviderUnavailable(f"SendGrid HTTP {status} (configuration): {text}")
    if status in RETRYABLE_STATUSES or status >= 500 or status < 400:
        return ProviderUnavailable(f"SendGrid HTTP {status}: {text}")
    return PermanentFailure(str(status), text)


def _error_text(body: Any) -> str:
    """SendGrid's `{"errors": [{"message", "field", "help"}]}` as `field: message; ...`, else the raw body."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        errors = json.loads(raw)["errors"]
        parts = [f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"]) for e in errors]
    except (ValueError, KeyError, TypeError):
        return raw.strip()[:500]
    return "; ".join(parts)[:500]

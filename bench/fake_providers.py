"""A stand-in for Twilio and SendGrid on one local HTTP server, in their wire formats, that counts what reaches it.

Twilio (Programmable Messaging, as `channels/twilio.py` calls it):
  POST /2010-04-01/Accounts/{sid}/Messages.json   form fields To, From or MessagingServiceSid, Body → 201 JSON
  GET  /2010-04-01/Accounts/{sid}/Messages.json   ?To=&From= → the messages accepted for that number, newest first
SendGrid (v3 Mail Send, as `channels/sendgrid.py` calls it):
  POST /v3/mail/send                              JSON → 202 with X-Message-Id
  GET  /v3/messages                                ?query=unique_args['comeback_message_id']="N" → the emails
                                                  accepted with that custom argument (the Email Activity API)
Ours:
  GET  /_stats      counts as JSON;   GET /_accepted   every accepted message as JSON

Twilio's rate limit (off by default): with `rate` N, sends beyond N a second (a token bucket holding `burst`,
default one second's worth) are answered 429 with Twilio's error 20429 and not accepted; they are counted
(`twilio_429` in the stats).

Faults, for provoking retries (all off by default), apply to the sends, never to lookups:
  latency     each send is accepted first, then answered after a random delay: the window in which a crash
              leaves the outcome unknown to the caller, as with a real provider
  error_rate  answered 500 and not accepted: the caller retries, nothing was sent
  drop_rate   accepted, then the connection closed without an answer: the caller cannot know it was sent

In-process: `with FakeProviders() as fake: ... fake.url, fake.accepted(), fake.hold(...)`.
Standalone: `python -m bench.fake_providers --port 8787 [--latency-ms 0:200] [--error-rate 0.02] [--drop-rate 0]
[--rate 50]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TWILIO_PREFIX = "/2010-04-01/Accounts/"
TWILIO_SUFFIX = "/Messages.json"
SENDGRID_PATH = "/v3/mail/send"
SENDGRID_ACTIVITY_PATH = "/v3/messages"
HOLD_TIMEOUT = 120.0  # a held answer never blocks a server thread for longer than this
# Credentials our processes present to the fake: well-formed, and good for nothing else.
TWILIO_ACCOUNT_SID = "AC" + "f" * 32
TWILIO_FROM_NUMBER = "+15005550006"
SENDGRID_FROM_EMAIL = "shop@northwind.example"


@dataclass(frozen=True)
class Accepted:
    """One message the fake provider took: what a real one would now deliver."""

    provider: str  # "twilio" or "sendgrid"
    id: str  # Twilio's SID or SendGrid's X-Message-Id
    to: str
    body: str
    sender: str | None = None  # From (Twilio, SendGrid) or MessagingServiceSid (Twilio)
    subject: str | None = None
    message_id: str | None = None  # our outbox row id (SendGrid custom argument comeback_message_id)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    at: float = field(default_factory=time.monotonic)  # when it was accepted, on this process's monotonic clock


@dataclass(frozen=True)
class Faults:
    latency: tuple[float, float] = (0.0, 0.0)  # seconds, uniformly drawn, between accepting and answering
    error_rate: float = 0.0
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        low, high = self.latency
        if not 0 <= low <= high:
            raise ValueError(f"latency must be 0 <= low <= high, not {self.latency}")
        if not (0 <= self.error_rate <= 1 and 0 <= self.drop_rate <= 1):
            raise ValueError("error_rate and drop_rate are fractions between 0 and 1")


class TokenBucket:
    """`rate` requests a second on average, at most `burst` at once: the usual shape of an API's rate limit."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate, self.burst = rate, max(burst or rate, 1.0)
        self._clock = clock
        self._tokens, self._at = self.burst, clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class Hold:
    """Holds back the answer to the first send that `matches`: it is accepted, `arrived` is set, and its answer
    waits until `release()`, so a test can kill the caller in between."""

    def __init__(self, matches: Callable[[Accepted], bool]) -> None:
        self.matches = matches
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.message: Accepted | None = None

    def release(self) -> None:
        self.released.set()


class FakeProviders:
    def __init__(
        self,
        port: int = 0,
        faults: Faults | None = None,
        seed: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.rate_limit = TokenBucket(rate, burst) if rate else None  # Twilio sends only
        self._random = random.Random(seed)
        self._lock = threading.RLock()  # a hold's `matches` may read the fake
        self._accepted: list[Accepted] = []
        self._counts: Counter[str] = Counter()
        self._holds: list[Hold] = []
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProviders:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-providers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for hold in self._holds:
            hold.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The settings that point our worker's Twilio and SendGrid channels at this fake."""
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": "fake-token",
            "TWILIO_FROM_NUMBER": TWILIO_FROM_NUMBER,
            "TWILIO_MESSAGING_SERVICE_SID": "",  # blank is unset: exactly one sender
            "TWILIO_API_BASE_URL": self.url,
            "SENDGRID_API_KEY": "SG.fake-key",
            "SENDGRID_FROM_EMAIL": SENDGRID_FROM_EMAIL,
            "SENDGRID_API_HOST": self.url,
        }

    def hold(self, matches: Callable[[Accepted], bool]) -> Hold:
        hold = Hold(matches)
        with self._lock:
            self._holds.append(hold)
        return hold

    def accepted(self, provider: str | None = None) -> list[Accepted]:
        with self._lock:
            return [a for a in self._accepted if provider in (None, a.provider)]

    def save(self, path: Path) -> None:
        """Every accepted message as a JSON line: what a failed run leaves behind to be read."""
        with path.open("w") as out:
            for accepted in self.accepted():
                out.write(json.dumps(_jsonable(accepted)) + "\n")

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    # What the handler calls, one thread per connection.

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):032x}"

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def _over_rate(self, provider: str) -> bool:
        """A Twilio send beyond the rate limit: counted, to be answered 429."""
        if provider != "twilio" or self.rate_limit is None or self.rate_limit.take():
            return False
        self._count("twilio_429")
        return True

    def _fault(self) -> str | None:
        """None, "error" or "drop" for this send."""
        with self._lock:
            roll = self._random.random()
        if roll < self.faults.error_rate:
            return "error"
        if roll < self.faults.error_rate + self.faults.drop_rate:
            return "drop"
        return None

    def _accept(self, message: Accepted) -> Hold | None:
        """Record the message; the hold it triggers, if any (each hold catches one message)."""
        with self._lock:
            self._accepted.append(message)
            self._counts[f"{message.provider}_accepted"] += 1
            hold = next((h for h in self._holds if h.message is None and h.matches(message)), None)
            if hold:
                hold.message = message
        return hold

    def _wait_to_answer(self, hold: Hold | None) -> None:
        if hold:
            hold.arrived.set()
            hold.released.wait(HOLD_TIMEOUT)
        low, high = self.faults.latency
        if high:
            with self._lock:
                delay = self._random.uniform(low, high)
            time.sleep(delay)

    def _lookup(self, to: str | None, sender: str | None) -> list[Accepted]:
        """Twilio's list: messages to `to` (and from `sender`, when given), newest first."""
        with self._lock:
            found = [
                a
                for a in self._accepted
                if a.provider == "twilio" and a.to == to and (sender is None or a.sender == sender)
            ]
        return found[::-1]

    def _email_activity(self, query: str) -> list[Accepted]:
        """SendGrid's Email Activity search, for the one query the channel makes: by our message id."""
        match = re.fullmatch(r"unique_args\['comeback_message_id'\]=\"(\d+)\"", query)
        if match is None:
            return []
        with self._lock:
            found = [a for a in self._accepted if a.provider == "sendgrid" and a.message_id == match.group(1)]
        return found[::-1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of new connections is queued, not reset, as a real provider's would be

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller killed mid-request resets its connection: expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _handler_for(fake: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the counts say what happened
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/_stats":
                self._json(200, fake.stats())
            elif url.path == "/_accepted":
                self._json(200, [_jsonable(a) for a in fake.accepted()])
            elif _is_twilio(url.path):
                fake._count("twilio_lookups")
                found = fake._lookup(query.get("To"), query.get("From") or query.get("MessagingServiceSid"))
                size = int(query.get("PageSize", "50"))
                self._json(200, _twilio_page(url.path, [_twilio_message(url.path, m) for m in found[:size]], size))
            elif url.path == SENDGRID_ACTIVITY_PATH:
                fake._count("sendgrid_lookups")
                found = fake._email_activity(query.get("query", ""))
                self._json(200, {"messages": [_activity_message(m) for m in found[: int(query.get("limit", "10"))]]})
            else:
                self._json(404, {"message": f"no such resource {url.path}"})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if len(raw) < length:  # the caller died mid-request: a provider takes no half a message
                fake._count("incomplete")
                self.close_connection = True
            elif _is_twilio(url.path):
                self._send("twilio", lambda: _twilio_accepted(raw), lambda m: (201, _twilio_message(url.path, m)))
            elif url.path == SENDGRID_PATH:
                self._send("sendgrid", lambda: _sendgrid_accepted(raw), lambda m: (202, None))
            else:
                self._json(404, {"message": f"no such resource {url.path}"})

        def _send(
            self,
            provider: str,
            parse: Callable[[], Accepted],
            answer: Callable[[Accepted], tuple[int, dict[str, Any] | None]],
        ) -> None:
            if fake._over_rate(provider):
                self._json(429, _too_many_requests())
                return
            fault = fake._fault()
            if fault == "error":
                fake._count(f"{provider}_errors")
                self._json(500, _error_body(provider))
                return
            message = replace(parse(), id=fake._new_id("SM" if provider == "twilio" else "sg"))
            hold = fake._accept(message)
            fake._wait_to_answer(hold)
            if fault == "drop":
                fake._count(f"{provider}_dropped")
                self.close_connection = True  # no answer at all: the caller's outcome is unknown
                return
            status, payload = answer(message)
            self._json(status, payload, {"X-Message-Id": message.id} if provider == "sendgrid" else {})

        def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            try:
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the caller is gone (killed, timed out): what it missed is already recorded
                self.close_connection = True

    return Handler


def _jsonable(message: Accepted) -> dict[str, Any]:
    return asdict(message) | {"created": message.created.isoformat()}


def _is_twilio(path: str) -> bool:
    return path.startswith(TWILIO_PREFIX) and path.endswith(TWILIO_SUFFIX)


def _twilio_accepted(raw: bytes) -> Accepted:
    form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    return Accepted(
        provider="twilio",
        id="",
        to=form.get("To", ""),
        body=form.get("Body", ""),
        sender=form.get("From") or form.get("MessagingServiceSid"),
    )


def _sendgrid_accepted(raw: bytes) -> Accepted:
    mail = json.loads(raw)
    to = mail["personalizations"][0]["to"][0]["email"]
    body = next((c["value"] for c in mail.get("content", []) if c.get("type") == "text/plain"), "")
    return Accepted(
        provider="sendgrid",
        id="",
        to=to,
        body=body,
        sender=mail.get("from", {}).get("email"),
        subject=mail.get("subject"),
        message_id=(mail.get("custom_args") or {}).get("comeback_message_id"),
    )


def _activity_message(message: Accepted) -> dict[str, Any]:
    return {
        "from_email": message.sender,
        "msg_id": f"{message.id}.filter0001p1las1-1-1",  # the X-Message-Id, a dot, the recipient's part
        "subject": message.subject,
        "to_email": message.to,
        "status": "delivered",
        "opens_count": 0,
        "clicks_count": 0,
        "last_event_time": message.created.isoformat(),
    }


def _twilio_message(path: str, message: Accepted) -> dict[str, Any]:
    when = format_datetime(message.created, usegmt=True)
    account = path.removeprefix(TWILIO_PREFIX).removesuffix(TWILIO_SUFFIX)
    service = message.sender if message.sender and message.sender.startswith("MG") else None
    return {
        "sid": message.id,
        "account_sid": account,
        "to": message.to,
        "from": None if service else message.sender,
        "messaging_service_sid": service,
        "body": message.body,
        "status": "queued",
        "date_created": when,
        "date_updated": when,
        "date_sent": None,
        "direction": "outbound-api",
        "num_segments": "1",
        "api_version": "2010-04-01",
        "uri": f"{TWILIO_PREFIX}{account}/Messages/{message.id}.json",
    }


def _twilio_page(path: str, messages: list[dict[str, Any]], size: int) -> dict[str, Any]:
    uri = f"{path}?PageSize={size}&Page=0"
    return {
        "messages": messages,
        "first_page_uri": uri,
        "next_page_uri": None,
        "previous_page_uri": None,
        "page": 0,
        "page_size": size,
        "start": 0,
        "end": max(len(messages) - 1, 0),
        "uri": uri,
    }


def _error_body(provider: str) -> dict[str, Any]:
    if provider == "twilio":
        return {"code": 20500, "message": "Internal Server Error (injected)", "status": 500}
    return {"errors": [{"message": "Internal Server Error (injected)", "field": None, "help": None}]}


def _too_many_requests() -> dict[str, Any]:
    return {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }


def _range(text: str) -> tuple[float, float]:
    """ "50" or "0:200" (milliseconds) → seconds."""
    low, _, high = text.partition(":")
    return float(low) / 1000, float(high or low) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--latency-ms", type=_range, default=(0.0, 0.0), help="e.g. 50 or 0:200")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None, help="Twilio sends per second; beyond it: 429")
    parser.add_argument("--burst", type=float, default=None, help="sends at once within the rate (default: rate)")
    args = parser.parse_args()
    faults = Faults(args.latency_ms, args.error_rate, args.drop_rate)
    with FakeProviders(args.port, faults, args.seed, args.rate, args.burst) as fake:
        print(f"fake Twilio and SendGrid at {fake.url} (TWILIO_API_BASE_URL, SENDGRID_API_HOST); stats: /_stats")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(json.dumps(fake.stats()))


if __name__ == "__main__":
    main()

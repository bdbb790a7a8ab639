"""Chaos in CI: 100 journeys while the worker is SIGKILLed every few seconds and the dev server is killed and
restarted once (`bench/chaos.py`; `make chaos` runs 500). Nothing is lost and nothing is sent twice: a send
whose worker died after the provider took it is looked up at the provider (Twilio's message list, SendGrid's
Email Activity API) before it is sent again.

About two minutes: a send caught by a kill is retried when its 60 s start-to-close timeout expires.
"""

import time
from pathlib import Path

from bench.chaos import ChaosOptions, run_chaos

OPTIONS = ChaosOptions(journeys=100, duration=30, deadline=150)


async def test_no_message_lost_or_duplicated_while_worker_and_server_crash(tmp_path: Path) -> None:
    began = time.monotonic()

    report = await run_chaos(OPTIONS, tmp_path)

    assert report.completed == report.journeys, report.summary()
    assert report.worker_kills >= 4 and report.server_restarts == 1, report.summary()
    assert report.expected == 4 * report.journeys
    assert (report.lost, report.unexpected) == (0, 0), report.summary()
    assert report.duplicated == 0, report.summary()
    assert report.delivered + report.duplicated == report.expected
    assert time.monotonic() - began < 240, report.summary()

"""Record workflow histories for the replay test: `python -m tests.record_histories`.

Run it after a workflow change that is guarded with workflow.patched(...), then keep the older files
(`git checkout` them back): every file in tests/histories/ must keep replaying against today's code.
"""

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from channels.base import Channels
from channels.outbox import OutboxChannel
from models.contracts import ClickedSignal, MessageEventSignal, OptOutSignal, PurchaseSignal
from models.db import make_engine, migrate
from models.journeys import load_journeys
from models.settings import ROOT
from models.tables import Channel
from starter.binaries import temporal_test_server
from tests.conftest import register_search_attributes
from tests.shop import running_shop

HISTORIES = Path(__file__).parent / "histories"


async def record() -> None:
    config = load_journeys(ROOT / "config" / "journeys.toml")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/record.db")
        migrate(engine)
        outbox = OutboxChannel()
        async with running_shop(env, engine, config, Channels(outbox, outbox)) as shop:
            full = await shop.order("h-full", customer_id="c_h1")
            await full.result()
            early = await shop.order("h-early", customer_id="c_h2")
            await env.sleep(timedelta(days=10))  # after thank-you and loyalty, waiting for the soft win-back
            await early.signal("purchase", PurchaseSignal(order_id="h-next"))
            await early.result()
            no_consent = await shop.order("h-none", customer_id="c_h3", sms_consent=False, email_consent=False)
            await no_consent.result()
            leaving = await shop.order("h-leaving", customer_id="c_h4")
            await env.sleep(timedelta(days=3))
            for channel in (Channel.sms, Channel.email):
                await leaving.signal("opted_out", OptOutSignal(channel=channel))
            await leaving.result()
            # Due at night in the customer's zone: deferred to 09:00; then a click and a delivery report arrive.
            due = await env.get_current_time() + config.journeys.post_purchase.steps[0].after
            offset = (3 - due.hour) % 24
            offset = offset - 24 if offset > 14 else offset
            night = await shop.order("h-night", customer_id="c_h5", timezone=f"Etc/GMT{-offset:+d}")
            await env.sleep(timedelta(days=8))
            await night.signal("clicked", ClickedSignal(step="thank_you", message_id=1))
            await night.signal("message_event", MessageEventSignal(step="loyalty_review", message_id=2, event="open"))
            await night.result()
            recorded = [
                ("full", full),
                ("purchased_early", early),
                ("no_consent", no_consent),
                ("opted_out", leaving),
                ("deferred_clicked", night),
            ]
            for name, handle in recorded:
                path = HISTORIES / f"post_purchase_{name}.json"
                path.write_text((await handle.fetch_history()).to_json())
                print(f"recorded {path.relative_to(ROOT)}")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())

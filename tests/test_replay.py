"""Every recorded history replays against today's workflows: a change that would break running journeys
fails here, before it is deployed."""

import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.shop import decoded_history
from workflows import ALL_WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay():
    names = {path.stem for path in HISTORIES}
    assert {"post_purchase_full", "post_purchase_purchased_early"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_recorded_histories_hold_no_phone_number_or_email(path: Path):
    text = decoded_history(path.read_text())
    assert not re.search(r"\+\d{8,15}", text), "a phone number in E.164"
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), "an email address"

"""Inbound keywords and plain-sentence opt-outs."""

import pytest

from api.keywords import classify

STOP = [
    "STOP",
    "stop",
    "Stop",
    " stop ",
    "STOP.",
    "Stop!",
    "stop!!!",
    "*STOP*",
    "STOPALL",
    "stopall",
    "UNSUBSCRIBE",
    "Unsubscribe.",
    "CANCEL",
    "cancel",
    "END",
    "end",
    "QUIT",
    "quit",
    "REVOKE",
    "OPTOUT",
    "OptOut",
    '"STOP"',
    "\tSTOP\n",
    "please stop",
    "Stop please",
    "stop, please!",
    "STOP NOW",
    "please stop texting me",
    "Please stop texting me.",
    "stop sending me messages",
    "Stop sending me these messages!",
    "STOP TEXTING ME",
    "stop messaging me",
    "stop contacting me",
    "pls stop these texts",
    "remove me from your list",
    "Remove me from this list please",
    "please remove my number",
    "take me off your list",
    "unsubscribe me",
    "I want to unsubscribe",
    "opt me out",
    "opt-out please",
    "don't text me anymore",
    "Don\u2019t text me anymore",
    "do not contact me",
    "never text me again",
    "dont message me",
    "no more texts please",
    "leave me alone",
    "I don't want these messages",
    "not interested, stop texting me",
    "I can't stop smiling but stop texting me",
]

NOT_STOP = [
    "don't stop",
    "Don't stop!",
    "please don't stop sending deals",
    "I can't stop smiling",
    "can't stop smiling :)",
    "I don't want you to stop sending me deals",
    "do not unsubscribe me",
    "don't remove me from the list",
    "never stop",
    "I'll stop by the store tomorrow",
    "where does the bus stop",
    "stopping by later",
    "the weekend",
    "hello",
    "thanks!",
    "when does my order arrive?",
    "is this the end of the sale?",
    "cancel my order?",
    "yes please send the coupon",
    "help me find my size",
    "",
    "   ",
    "?",
]


@pytest.mark.parametrize("body", STOP)
def test_stop(body: str):
    assert classify(body) == "stop"


@pytest.mark.parametrize("body", NOT_STOP)
def test_not_stop(body: str):
    assert classify(body) != "stop"


@pytest.mark.parametrize("body", ["START", "start", "Start.", " UNSTOP ", "unstop", "YES", "yes!", "Yes"])
def test_start(body: str):
    assert classify(body) == "start"


@pytest.mark.parametrize("body", ["HELP", "help", "Help?", "INFO", "info.", " Info "])
def test_help(body: str):
    assert classify(body) == "help"


@pytest.mark.parametrize(
    "body", ["hello", "start the order", "yes please send the coupon", "help me find my size", "more info please", ""]
)
def test_other(body: str):
    assert classify(body) == "other"

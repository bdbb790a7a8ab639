"""What an inbound text asks for: the carrier keywords (STOP, START, HELP and synonyms) and plain-sentence opt-outs.

A keyword counts only as the whole message (surrounding whitespace and punctuation ignored): "Stop!" is STOP, "stop
by the store" is not. A sentence counts as STOP when it plainly asks us to stop ("please stop texting me", "remove
me from your list", "don't text me anymore"); a negated stop ("don't stop", "can't stop smiling") never does.
START and HELP are keywords only: resubscribing someone on a sentence we misread would be worse than not.
"""

import re
from typing import Literal

Intent = Literal["stop", "start", "help", "other"]

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
START_WORDS = frozenset({"start", "unstop", "yes"})
HELP_WORDS = frozenset({"help", "info"})

_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_STOP_VERB = r"(?:stop|unsubscribe|unsub|opt[\s-]?out|remove|delete|cancel|quit)"
# "don't stop", "I can't stop smiling", "I don't want you to stop sending deals", "do not unsubscribe me".
_NEGATED_STOP = re.compile(
    r"\b(?:don'?t|dont|do not|does not|doesn'?t|can'?t|cant|cannot|can not|couldn'?t|won'?t|will not|wouldn'?t|"
    r"shouldn'?t|never|no need to)\s+(?:\w+\s+){0,3}?" + _STOP_VERB + r"\w*"
)
_STOP_SENTENCES = (
    # "please stop", "stop please", "stop now", "stop it"
    re.compile(r"^(?:please\s+)?(?:stop|unsubscribe)(?:\s+(?:please|now|it|already|thanks|thank you|asap))*$"),
    # "please stop texting me", "stop sending me messages", "stop these texts", "stop contacting me"
    re.compile(r"\bstop\s+(?:\w+\s+){0,2}?(?:text|txt|messag|msg|sms|send|contact|spam|email|bother|call|mess)\w*"),
    # "remove me from your list", "delete my number", "take me off your list"
    re.compile(r"\b(?:remove|delete|drop|erase)\s+(?:me|my\s+(?:number|phone|cell|info|details|data))\b"),
    re.compile(r"\btake\s+(?:me|my\s+(?:number|phone|cell))\s+off\b"),
    # "unsubscribe me", "I want to unsubscribe", "opt me out", "opt-out"
    re.compile(r"\b(?:unsubscribe|unsub|opt[\s-]?out|opt\s+me\s+out)\b"),
    # "don't text me anymore", "do not contact me", "never message me again"
    re.compile(
        r"\b(?:don'?t|dont|do not|never)\s+(?:\w+\s+)?(?:text|txt|message|msg|contact|sms|email|spam|call)\w*\s+me\b"
    ),
    # "no more texts", "leave me alone", "I don't want these messages"
    re.compile(r"\bno more (?:texts|txts|messages|msgs|sms|marketing|promos?|offers)\b"),
    re.compile(r"\bleave me alone\b"),
    re.compile(
        r"\b(?:don'?t|dont|do not)\s+want\s+(?:any\s+more\s+|any\s+|your\s+|these\s+|those\s+|the\s+)*"
        r"(?:texts|txts|messages|msgs|sms|offers|promos?)\b"
    ),
)


def classify(body: str) -> Intent:
    text = _normalize(body)
    word = _EDGES.sub("", text)
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    # Negations first, while punctuation still ends a clause: "not now, stop texting me" is a stop.
    sentence = " ".join(re.sub(r"[^\w']+", " ", _NEGATED_STOP.sub(" ", word)).split())
    if any(pattern.search(sentence) for pattern in _STOP_SENTENCES):
        return "stop"
    return "other"


def _normalize(body: str) -> str:
    text = body.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())

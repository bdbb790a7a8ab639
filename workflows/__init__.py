"""One file per journey; every journey the worker runs is listed here."""

from workflows.post_purchase import PostPurchaseJourney

ALL_WORKFLOWS = [PostPurchaseJourney]

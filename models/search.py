"""Search attributes that let an operator find any run in the Temporal UI (all Keyword)."""

from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")

ALL = (CUSTOMER_ID, JOURNEY, JOURNEY_STEP, ORDER_ID)

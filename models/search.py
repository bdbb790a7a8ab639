"""Search attributes that let an operator find any run in the Temporal UI (all Keyword)."""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
JOURNEY = SearchAttributeKey.for_keyword("Journey")
JOURNEY_STEP = SearchAttributeKey.for_keyword("JourneyStep")
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")

ALL = (CUSTOMER_ID, JOURNEY, JOURNEY_STEP, ORDER_ID)


def journey_attributes(
    customer_id: str, journey: str, stage: str, order_id: str | None = None
) -> TypedSearchAttributes:
    """What an operator finds a journey's run by, set when it starts (free then; each later upsert is billed)."""
    pairs = [
        SearchAttributePair(CUSTOMER_ID, customer_id),
        SearchAttributePair(JOURNEY, journey),
        SearchAttributePair(JOURNEY_STEP, stage),
    ]
    if order_id is not None:
        pairs.append(SearchAttributePair(ORDER_ID, order_id))
    return TypedSearchAttributes(pairs)

"""One file per journey; every journey the worker runs is listed here."""

from workflows.cart import AbandonedCartJourney
from workflows.cross_sell import CrossSellJourney
from workflows.dates import DatesJourney
from workflows.follow_through import FollowThroughJourney
from workflows.post_purchase import PostPurchaseJourney
from workflows.reengage import ReengageCampaignWorkflow, ReengageJourney
from workflows.triggers import TriggerJourney

ALL_WORKFLOWS = [
    PostPurchaseJourney,
    AbandonedCartJourney,
    FollowThroughJourney,
    CrossSellJourney,
    TriggerJourney,
    DatesJourney,
    ReengageJourney,
    ReengageCampaignWorkflow,
]

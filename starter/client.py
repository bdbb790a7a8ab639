"""Connecting to Temporal: the dev server, a self-hosted cluster or Temporal Cloud, from the same settings."""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from models.settings import Settings


async def connect(settings: Settings) -> Client:
    """Temporal Cloud: set TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and TEMPORAL_API_KEY (TLS turns on)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key,
        tls=settings.temporal_tls_enabled,
        data_converter=pydantic_data_converter,
    )

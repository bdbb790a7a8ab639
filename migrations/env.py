"""Alembic environment: runs against the engine the application hands in, or COMEBACK_DATABASE_URL."""

from alembic import context
from sqlalchemy import text
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers the tables on the metadata)
from models.db import make_engine
from models.settings import get_settings

engine = context.config.attributes.get("engine") or make_engine(get_settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Workers and API replicas all migrate on start: one at a time, the others then find it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(7233001)"))
        context.run_migrations()
    connection.commit()

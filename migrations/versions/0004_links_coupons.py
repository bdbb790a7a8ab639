"""links, clicks, coupons; deferred messages; order attribution; inbound replies

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:38:47.759673
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.tables

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "link",
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("created_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
        ),
        sa.PrimaryKeyConstraint("token"),
    )
    with op.batch_alter_table("link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_link_message_id"), ["message_id"], unique=False)

    op.create_table(
        "click",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("clicked_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=45), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["token"],
            ["link.token"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("click", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_click_token"), ["token"], unique=False)

    op.create_table(
        "coupon",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("journey", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=False),
        sa.Column("expires_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("redeemed_order_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("redeemed_at", models.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
        ),
        sa.ForeignKeyConstraint(
            ["redeemed_order_id"],
            ["order.id"],
        ),
        sa.PrimaryKeyConstraint("code"),
        sa.UniqueConstraint("redeemed_order_id", name="uq_coupon_redeemed_order_id"),
    )
    with op.batch_alter_table("coupon", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_coupon_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_coupon_message_id"), ["message_id"], unique=False)

    op.create_table(
        "couponrejection",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("rejected_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["order.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("couponrejection", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_couponrejection_order_id"), ["order_id"], unique=False)

    op.create_table(
        "reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("provider_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("received_at", models.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider_key", name="uq_reply_provider_key"),
    )
    with op.batch_alter_table("reply", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reply_customer_id"), ["customer_id"], unique=False)

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default="marketing")
        )
        batch_op.add_column(sa.Column("not_before", models.tables.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attributed_message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("attributed_journey", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_foreign_key("fk_order_attributed_message_id", "message", ["attributed_message_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("order", schema=None) as batch_op:
        batch_op.drop_constraint("fk_order_attributed_message_id", type_="foreignkey")
        batch_op.drop_column("attributed_journey")
        batch_op.drop_column("attributed_message_id")

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("not_before")
        batch_op.drop_column("kind")

    with op.batch_alter_table("couponrejection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_couponrejection_order_id"))

    op.drop_table("couponrejection")
    with op.batch_alter_table("reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reply_customer_id"))

    op.drop_table("reply")
    with op.batch_alter_table("coupon", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coupon_message_id"))
        batch_op.drop_index(batch_op.f("ix_coupon_customer_id"))

    op.drop_table("coupon")
    with op.batch_alter_table("click", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_click_token"))

    op.drop_table("click")
    with op.batch_alter_table("link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_message_id"))

    op.drop_table("link")

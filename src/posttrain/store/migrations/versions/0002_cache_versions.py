"""cache_versions: topic -> version, for cross-process cache invalidation (store/invalidation.py)

Revision ID: 0002_cache_versions
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_cache_versions"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_versions",
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("topic"),
    )


def downgrade() -> None:
    op.drop_table("cache_versions")

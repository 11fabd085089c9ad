"""datasets: export snapshots and the users whose rows each snapshot holds

Revision ID: 0002_datasets
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_datasets"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_snapshots",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("test_path", sa.Text(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("test_rows", sa.Integer(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "dataset_snapshot_users",
        sa.Column("snapshot_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["snapshot_hash"], ["dataset_snapshots.hash"]),
        sa.PrimaryKeyConstraint("snapshot_hash", "user_id"),
    )
    with op.batch_alter_table("dataset_snapshot_users", schema=None) as batch_op:
        batch_op.create_index("ix_dataset_snapshot_users_user", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("dataset_snapshot_users")
    op.drop_table("dataset_snapshots")

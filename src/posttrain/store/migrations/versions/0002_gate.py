"""gate: decisions, blind review items, verdicts

Revision ID: 0002_gate
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_gate"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("candidate", sa.String(length=200), nullable=False),
        sa.Column("baseline", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("policy_text", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("final", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gate_decisions_candidate"), ["candidate"], unique=False)
    op.create_table(
        "gate_review_items",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("left_text", sa.Text(), nullable=False),
        sa.Column("right_text", sa.Text(), nullable=False),
        sa.Column("left_is_candidate", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["gate_decisions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_review_items", schema=None) as batch_op:
        batch_op.create_index("ix_gate_review_items_decision", ["decision_id", "position"], unique=False)
    op.create_table(
        "gate_verdicts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("decision_id", sa.String(length=40), nullable=False),
        sa.Column("item_id", sa.String(length=40), nullable=True),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("choice", sa.String(length=10), nullable=True),
        sa.Column("feels_off", sa.Boolean(), nullable=False),
        sa.Column("veto", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["gate_decisions.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["gate_review_items.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_verdicts", schema=None) as batch_op:
        batch_op.create_index("ix_gate_verdicts_decision", ["decision_id"], unique=False)


def downgrade() -> None:
    op.drop_table("gate_verdicts")
    op.drop_table("gate_review_items")
    op.drop_table("gate_decisions")

"""serve: tool calls on completions and transcript messages, and output checks

completions.tool_calls   the OpenAI tool calls the model made (null: none)
completions.checks       checks of the answer against the request, e.g. response_format JSON
messages.tool_calls      an assistant turn's tool calls, as the client sent them
messages.tool_call_id    a tool turn's answer to which call

Revision ID: 0002_serve
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_serve"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("completions") as batch:
        batch.add_column(sa.Column("tool_calls", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("checks", sa.JSON(), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("tool_calls", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tool_call_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("tool_call_id")
        batch.drop_column("tool_calls")
    with op.batch_alter_table("completions") as batch:
        batch.drop_column("checks")
        batch.drop_column("tool_calls")

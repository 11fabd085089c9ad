"""arena and online experiments: experiments, experiment_events, experiments_version, arena_models

Revision ID: 0002_experiments
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_experiments"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("baseline", sa.String(length=200), nullable=False),
        sa.Column("candidate", sa.String(length=200), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_experiments_status", "experiments", ["status"], unique=False)
    op.create_table(
        "experiment_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("experiment_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_experiment_events_experiment_id", "experiment_events", ["experiment_id"], unique=False)
    op.create_table(
        "experiments_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO experiments_version (id, version) VALUES (1, 0)")
    op.create_table(
        "arena_models",
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_votes", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )
    # Append-only, enforced by the database itself: an entered model cannot be retracted.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER arena_models_no_{verb.lower()} BEFORE {verb} ON arena_models "
                "BEGIN SELECT RAISE(ABORT, 'arena_models is append-only'); END"
            )
    elif op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION arena_models_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'arena_models is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER arena_models_append_only BEFORE UPDATE OR DELETE ON arena_models "
            "FOR EACH ROW EXECUTE FUNCTION arena_models_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS arena_models_append_only ON arena_models")
        op.execute("DROP FUNCTION IF EXISTS arena_models_append_only()")
    op.drop_table("arena_models")
    op.drop_table("experiments_version")
    op.drop_index("ix_experiment_events_experiment_id", table_name="experiment_events")
    op.drop_table("experiment_events")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_table("experiments")

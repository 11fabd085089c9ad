"""Tables of the datasets stage: export snapshots and which users' rows each one holds.

A snapshot's `hash` is the sha256 of its kind, format and file contents, so a model trained on
it names its data exactly (ModelEntry.data_snapshot). `dataset_snapshot_users` has no foreign
key to users on purpose: after `users delete` it still says which snapshots held that user's
rows, which is how the models trained on them are found.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from posttrain.store.schema import Base, utcnow


class DatasetSnapshot(Base):
    __tablename__ = "dataset_snapshots"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    format: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(Text)  # the train JSONL under $POSTTRAIN_HOME/snapshots/
    test_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    test_rows: Mapped[int] = mapped_column(Integer, default=0)
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    rules: Mapped[list] = mapped_column(JSON, default=list)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)  # the export report
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SnapshotUser(Base):
    __tablename__ = "dataset_snapshot_users"
    __table_args__ = (Index("ix_dataset_snapshot_users_user", "user_id"),)
    snapshot_hash: Mapped[str] = mapped_column(ForeignKey("dataset_snapshots.hash"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer, default=0)

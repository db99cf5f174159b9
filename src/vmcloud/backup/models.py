"""What the platform remembers of its backups and restore drills (pgBackRest's repository is the
record of the backups themselves; these rows feed ``/metrics`` and the staff's problems list)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Float, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vmcloud.db.base import Base, uuid_pk


class BackupRun(Base):
    """One ``pgbackrest backup`` run, successful or not."""

    __tablename__ = "backup_runs"
    __table_args__ = (
        CheckConstraint("kind IN ('monthly', 'daily', 'manual')", name="kind"),
        CheckConstraint("outcome IN ('ok', 'failed')", name="outcome"),
        Index("ix_backup_runs_kind_started_at", "kind", "started_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(10))  # full or diff
    label: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime())
    finished_at: Mapped[datetime] = mapped_column(DateTime())
    size_bytes: Mapped[int | None] = mapped_column(BigInteger())  # the database's size
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger())  # this backup in repo1
    outcome: Mapped[str] = mapped_column(String(10))
    error: Mapped[str | None] = mapped_column(Text())


class BackupDrill(Base):
    """One restore drill: the latest backup restored to a scratch cluster and checked."""

    __tablename__ = "backup_drills"
    __table_args__ = (
        CheckConstraint("outcome IN ('passed', 'failed')", name="outcome"),
        Index("ix_backup_drills_started_at", "started_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    started_at: Mapped[datetime] = mapped_column(DateTime())
    finished_at: Mapped[datetime] = mapped_column(DateTime())
    backup_label: Mapped[str | None] = mapped_column(String(100))
    # Seconds from the start of the restore until the copy accepted writes.
    rto_seconds: Mapped[float | None] = mapped_column(Float())
    # Age of the newest archived WAL when the drill began: what a loss then would have cost.
    rpo_seconds: Mapped[float | None] = mapped_column(Float())
    outcome: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text())

"""equity_points: index on (run_id, equity) for a run's peak

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("equity_points", schema=None) as batch_op:
        batch_op.create_index("ix_equity_points_run_id_equity", ["run_id", "equity"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("equity_points", schema=None) as batch_op:
        batch_op.drop_index("ix_equity_points_run_id_equity")

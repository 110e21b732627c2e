"""agent_commands: the close command and its payload

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "command IN ('pause', 'resume', 'stop', 'emergency_stop', 'reset')"
_AFTER = "command IN ('pause', 'resume', 'stop', 'emergency_stop', 'reset', 'close')"


def upgrade() -> None:
    with op.batch_alter_table("agent_commands", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "payload",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.drop_constraint(op.f("ck_agent_commands_command_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_agent_commands_command_valid"), _AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM agent_commands WHERE command = 'close'")
    with op.batch_alter_table("agent_commands", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_agent_commands_command_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_agent_commands_command_valid"), _BEFORE)
        batch_op.drop_column("payload")

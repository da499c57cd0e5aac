"""create items table

Revision ID: 1975ea83b712
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "1975ea83b712"
down_revision = None


def upgrade() -> None:
    op.create_table("items", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))


def downgrade() -> None:
    op.drop_table("items")

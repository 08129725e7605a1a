"""Ledger tables: accounts and immutable transfers. Balances are sums of transfers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, func
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: str = Field(primary_key=True, max_length=200)
    currency: str = Field(max_length=3)
    created_at: datetime


class TransferRecord(SQLModel, table=True):
    __tablename__ = "transfer"

    id: str = Field(primary_key=True, max_length=36)
    debit_account_id: str = Field(foreign_key="account.id", index=True, max_length=200)
    credit_account_id: str = Field(foreign_key="account.id", index=True, max_length=200)
    amount_cents: int = Field(sa_type=BigInteger)  # integer cents, never floats
    currency: str = Field(max_length=3)
    reason: str
    source_event_id: str = Field(max_length=100)
    posted_at: datetime


async def totals(session: AsyncSession, account_id: str) -> tuple[int, int]:
    """(debits, credits) posted to the account, in cents."""
    debits = (
        await session.exec(
            select(func.coalesce(func.sum(TransferRecord.amount_cents), 0)).where(
                TransferRecord.debit_account_id == account_id
            )
        )
    ).one()
    credits = (
        await session.exec(
            select(func.coalesce(func.sum(TransferRecord.amount_cents), 0)).where(
                TransferRecord.credit_account_id == account_id
            )
        )
    ).one()
    return int(debits), int(credits)


async def transfers_of(session: AsyncSession, account_id: str, limit: int) -> list[TransferRecord]:
    query = select(TransferRecord).order_by(col(TransferRecord.posted_at)).limit(limit)
    if account_id:
        query = query.where(
            (TransferRecord.debit_account_id == account_id) | (TransferRecord.credit_account_id == account_id)
        )
    return list((await session.exec(query)).all())

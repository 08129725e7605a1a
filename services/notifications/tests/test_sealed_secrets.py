"""Webhook secrets stored before sealing are sealed once at start-up, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from ach_notifications.sealing import SecretBox
from ach_notifications.store import PartnerChannel, seal_stored_secrets
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession


async def test_secrets_stored_before_sealing_are_sealed_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    box = SecretBox([Fernet.generate_key()])
    async with sessions() as session, session.begin():
        for i, secret in enumerate(("plain-old-secret", box.seal("already-sealed"), "")):
            session.add(
                PartnerChannel(
                    id=f"ch-{i}",
                    partner_id="cbo-1",
                    kind="webhook" if secret else "email",
                    address="https://hooks.example.org/x",
                    secret=secret,
                    created_at=datetime.now(UTC),
                )
            )
    assert await seal_stored_secrets(sessions, box) == 1
    assert await seal_stored_secrets(sessions, box) == 0
    async with sessions() as session:
        kept = {c.id: c.secret for c in (await session.exec(select(PartnerChannel))).all()}
    assert kept["ch-0"].startswith("fernet:") and box.open(kept["ch-0"]) == "plain-old-secret"
    assert box.open(kept["ch-1"]) == "already-sealed" and kept["ch-2"] == ""

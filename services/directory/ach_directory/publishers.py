"""The directory publishes each service's latest state on a compacted topic keyed by service id
(ServiceChanged), so other services keep a replica without calling the directory on their hot path.
What it consumes (partners' reports about their services) is in subscribers.py."""

from __future__ import annotations

from ach.directory.v1 import directory_pb2
from ach_events.outbox import Outbox
from ach_events.topics import DIRECTORY_SERVICES
from sqlmodel.ext.asyncio.session import AsyncSession


def publish_service_changed(
    session: AsyncSession, outbox: Outbox, service: directory_pb2.Service, version: int
) -> None:
    outbox.add(
        session,
        DIRECTORY_SERVICES,
        directory_pb2.ServiceChanged(service=service, version=version),
        key=service.service_id,
    )

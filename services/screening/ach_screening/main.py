"""Wiring of the screening service: its gRPC API; it consumes nothing yet."""

from __future__ import annotations

from pathlib import Path

from ach.screening.v1 import screening_pb2_grpc
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli

from ach_screening.api import ScreeningApi
from ach_screening.store import ScreeningRecord


def wire(runtime: Runtime) -> None:
    api = ScreeningApi(runtime.sessions, runtime.outbox)
    runtime.serve_grpc(
        lambda server: screening_pb2_grpc.add_ScreeningServiceServicer_to_server(api, server),
        "ach.screening.v1.ScreeningService",
    )

    async def screening_owners(screening_id: str) -> set[str] | None:
        async with runtime.sessions() as session:
            record = await session.get(ScreeningRecord, screening_id)
        return {record.submitter_partner_id} if record else None

    runtime.resolve_owners("screening", screening_owners)


DEFINITION = ServiceDefinition("screening", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()

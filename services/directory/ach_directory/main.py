"""Wiring of the directory service: its gRPC API; it publishes service changes."""

from __future__ import annotations

from pathlib import Path

from ach.directory.v1 import directory_pb2_grpc
from ach_events.runtime import Runtime, ServiceDefinition
from ach_events.runtime import cli as run_cli

from ach_directory.api import DirectoryApi
from ach_directory.store import ServiceRecord


def wire(runtime: Runtime) -> None:
    api = DirectoryApi(runtime.sessions, runtime.outbox)
    runtime.serve_grpc(
        lambda server: directory_pb2_grpc.add_DirectoryServiceServicer_to_server(api, server),
        "ach.directory.v1.DirectoryService",
    )

    async def service_owners(service_id: str) -> set[str] | None:
        async with runtime.sessions() as session:
            record = await session.get(ServiceRecord, service_id)
        return {record.organization_id} if record else None

    runtime.resolve_owners("service", service_owners)


DEFINITION = ServiceDefinition("directory", Path(__file__).parent / "migrations", wire)


def cli() -> None:
    run_cli(DEFINITION)


if __name__ == "__main__":
    cli()

"""The baseline for the screening bench: a bare grpcio unary call. The same service, message and
mutual TLS as the screening service, and nothing else (no interceptors, no database, no Kafka).
Usage: python -m bench.bare_grpc PORT PKI_DIR"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
from ach.screening.v1 import screening_pb2, screening_pb2_grpc
from ach_platform.dev_pki import DevPki

ANSWER = screening_pb2.SubmitScreeningResponse(
    screening_id="00000000-0000-0000-0000-000000000000",
    positive_domains=["housing-instability", "food-insecurity", "utility-insecurity"],
)


class Bare(screening_pb2_grpc.ScreeningServiceServicer):
    async def SubmitScreening(
        self, request: screening_pb2.SubmitScreeningRequest, context: grpc.aio.ServicerContext
    ) -> screening_pb2.SubmitScreeningResponse:
        return ANSWER


async def serve(port: int, pki: DevPki) -> None:
    server = grpc.aio.server()
    screening_pb2_grpc.add_ScreeningServiceServicer_to_server(Bare(), server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.partners_ca_cert.read_bytes(),  # the clients: partners
        require_client_auth=True,
    )
    server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), DevPki(Path(sys.argv[2]))))

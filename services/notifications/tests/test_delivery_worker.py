"""The delivery worker against a real database (SQLite and PostgreSQL), a real HTTP endpoint and a
real SMTP server: retries then a failure with its reason and event, the circuit breaker, e-mail,
and two workers (replicas) on one queue sending each delivery once."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn
from ach.notifications.v1 import notifications_pb2
from ach_events.outbox import Outbox, OutboxEvent
from ach_notifications.answer_pages import AnswerPages
from ach_notifications.deliveries import DeliveryWorker
from ach_notifications.destinations import DestinationPolicy
from ach_notifications.domain import RESIDENTS, BreakerPolicy, RetryPolicy
from ach_notifications.residents import ContactUnavailable, ResidentAddress
from ach_notifications.sealing import SecretBox
from ach_notifications.settings import DeliverySettings
from ach_notifications.store import DeliveryRecord, HelpQuestion, PartnerChannel, PartnerCircuit
from ach_notifications.transports import ADDRESS_DIGESTS
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select, text
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette

from tests.harness import free_port
from tests.sms_gateway import SmsGateway, sms_gateway
from tests.webhook_receiver import signature_valid

PENDING = notifications_pb2.DELIVERY_STATUS_PENDING
DELIVERED = notifications_pb2.DELIVERY_STATUS_DELIVERED
FAILED = notifications_pb2.DELIVERY_STATUS_FAILED
SECRET = "test-secret"


@dataclass
class Endpoint:
    """A partner's webhook: answers ``code`` and keeps the delivery ids of valid signed requests."""

    url: str
    code: int = 204
    seen: list[str] = field(default_factory=list)
    bad_signatures: int = 0


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    found = Endpoint(f"http://127.0.0.1:{server.server_address[1]}/hook")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                if signature_valid(SECRET, self.headers["ACH-Signature"], body, time.time()):
                    found.seen.append(self.headers["ACH-Delivery-Id"])
                else:
                    found.bad_signatures += 1
            self.send_response(found.code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


def settings(**overrides: Any) -> DeliverySettings:
    base: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.02),
        "breaker": BreakerPolicy(failures_to_open=100, cooldown_s=0.3),
        "timeout_s": 2.0,
        "destinations": DestinationPolicy.parse("127.0.0.1"),  # the test receivers, on loopback
    }
    return DeliverySettings(**{**base, **overrides})


async def add_channel(
    sessions: async_sessionmaker[AsyncSession], address: str, kind: str = "webhook", partner: str = "cbo-1"
) -> str:
    channel_id = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        session.add(
            PartnerChannel(
                id=channel_id,
                partner_id=partner,
                kind=kind,
                address=address,
                secret=SECRET,
                created_at=datetime.now(UTC),
            )
        )
    return channel_id


async def add_deliveries(
    sessions: async_sessionmaker[AsyncSession], channel_id: str, n: int, kind: str = "webhook"
) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        for i, delivery_id in enumerate(ids):
            session.add(
                DeliveryRecord(
                    id=delivery_id,
                    partner_id="cbo-1",
                    channel=kind,
                    channel_id=channel_id,
                    subject_type="referral",
                    subject_id=f"ref-{i}",
                    event_type="referral.created",
                    status=PENDING,
                    source_event_id=f"evt-{i}",
                    created_at=now,
                    next_attempt_at=now,
                    payload={
                        "delivery_id": delivery_id,
                        "partner_id": "cbo-1",
                        "event_type": "referral.created",
                        "subject_type": "referral",
                        "subject_id": f"ref-{i}",
                        "occurred_at": "2026-11-23T12:00:00Z",
                    },
                )
            )
    return ids


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[DeliveryRecord]:
    async with sessions() as session:
        return list((await session.exec(select(DeliveryRecord))).all())


async def run_until(worker: DeliveryWorker, done: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not await done():
        assert time.monotonic() < deadline, "not done in time"
        if not await worker.step():
            await asyncio.sleep(0.01)


async def test_a_failing_endpoint_is_retried_then_the_delivery_fails_with_its_reason(
    sessions: async_sessionmaker[AsyncSession], endpoint: Endpoint
) -> None:
    endpoint.code = 500
    channel = await add_channel(sessions, endpoint.url)
    [delivery_id] = await add_deliveries(sessions, channel, 1)
    worker = DeliveryWorker(sessions, Outbox(source="/ach/notifications"), settings())

    async def failed() -> bool:
        return (await rows(sessions))[0].status == FAILED

    await run_until(worker, failed)
    [row] = await rows(sessions)
    assert (row.attempts, row.last_error) == (3, "answered HTTP 500")
    assert endpoint.seen == [delivery_id] * 3 and endpoint.bad_signatures == 0
    async with sessions() as session:
        [event] = (await session.exec(select(OutboxEvent))).all()
    message = notifications_pb2.NotificationDelivered()
    message.ParseFromString(event.payload)
    assert (message.status, message.attempts, message.reason) == (FAILED, 3, "answered HTTP 500")


async def test_the_circuit_opens_and_then_one_probe_goes(
    sessions: async_sessionmaker[AsyncSession], endpoint: Endpoint
) -> None:
    endpoint.code = 503
    channel = await add_channel(sessions, endpoint.url)
    await add_deliveries(sessions, channel, 4)
    worker = DeliveryWorker(
        sessions,
        Outbox(source="/ach/notifications"),
        settings(
            retry=RetryPolicy(max_attempts=50, base_s=0.001, cap_s=0.001),
            breaker=BreakerPolicy(failures_to_open=4, cooldown_s=0.5),
        ),
    )
    assert await worker.step() == 4  # four failures: the circuit opens
    async with sessions() as session:
        circuit = await session.get(PartnerCircuit, "cbo-1")
    assert circuit is not None and circuit.failures == 4 and circuit.open_until is not None
    await asyncio.sleep(0.05)
    for _ in range(5):
        assert await worker.step() == 0  # nothing is tried while it is open
    assert len(endpoint.seen) == 4
    await asyncio.sleep(0.5)
    assert await worker.step() == 1  # half-open: one probe, which fails: open again
    assert await worker.step() == 0
    endpoint.code = 204
    await asyncio.sleep(0.55)

    async def all_delivered() -> bool:
        return all(r.status == DELIVERED for r in await rows(sessions))

    await run_until(worker, all_delivered)
    async with sessions() as session:
        circuit = await session.get(PartnerCircuit, "cbo-1")
    assert circuit is not None and (circuit.failures, circuit.open_until) == (0, None)


@dataclass
class HeldEndpoint:
    """A webhook that answers 204 only once the test releases it: a slow but healthy partner."""

    url: str
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def held_endpoint() -> Iterator[HeldEndpoint]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    found = HeldEndpoint(f"http://127.0.0.1:{server.server_address[1]}/slow")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            found.arrived.set()
            found.release.wait(20)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.release.set()
    server.shutdown()
    server.server_close()


async def test_a_slow_endpoint_holds_up_none_of_the_other_deliveries(
    sessions: async_sessionmaker[AsyncSession], endpoint: Endpoint, held_endpoint: HeldEndpoint
) -> None:
    """Issue 16 point 12: a webhook that takes its time (and then says 2xx) holds one slot only.
    The others of its batch are recorded delivered, and the running worker goes on claiming and
    sending new ones, while it is still being answered."""
    slow = await add_channel(sessions, held_endpoint.url)
    fast = await add_channel(sessions, endpoint.url)
    [held] = await add_deliveries(sessions, slow, 1)
    first = await add_deliveries(sessions, fast, 5)
    worker = DeliveryWorker(sessions, Outbox(source="/ach/notifications"), settings(timeout_s=30.0))

    async def delivered(ids: list[str]) -> bool:
        return all(r.status == DELIVERED for r in await rows(sessions) if r.id in ids)

    async def wait_for(done: Any) -> None:
        deadline = time.monotonic() + 15
        while not await done():
            assert time.monotonic() < deadline, "held up behind the slow endpoint"
            await asyncio.sleep(0.02)

    step = asyncio.create_task(worker.step())
    assert await asyncio.to_thread(held_endpoint.arrived.wait, 10), "the slow endpoint was not called"
    await wait_for(lambda: delivered(first))
    assert not step.done() and not await delivered([held])
    held_endpoint.release.set()
    assert await step == 6
    assert await delivered([held])

    held_endpoint.arrived.clear()
    held_endpoint.release.clear()
    [held] = await add_deliveries(sessions, slow, 1)
    running = asyncio.create_task(worker.run())
    try:
        assert await asyncio.to_thread(held_endpoint.arrived.wait, 10), "the slow endpoint was not called"
        later = await add_deliveries(sessions, fast, 5)  # claimed while the slow one is in flight
        worker.new_deliveries.set()
        await wait_for(lambda: delivered(later))
        assert not await delivered([held])
        held_endpoint.release.set()
        await wait_for(lambda: delivered([held]))
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert sorted(endpoint.seen) == sorted(first + later)


async def test_two_workers_on_one_queue_send_each_delivery_once(
    sessions: async_sessionmaker[AsyncSession], endpoint: Endpoint
) -> None:
    channel = await add_channel(sessions, endpoint.url)
    ids = await add_deliveries(sessions, channel, 40)
    workers = [
        DeliveryWorker(sessions, Outbox(source="/ach/notifications"), settings(concurrency=8))
        for _ in range(2)
    ]

    async def all_delivered() -> bool:
        return all(r.status == DELIVERED for r in await rows(sessions))

    async def drive(worker: DeliveryWorker) -> None:
        await run_until(worker, all_delivered, 30)

    await asyncio.gather(*(drive(w) for w in workers))
    assert sorted(endpoint.seen) == sorted(ids)  # each once


async def test_an_email_channel_sends_ids_only_through_smtp(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = await add_channel(sessions, "intake@pantry.example.org", kind="email")
        [delivery_id] = await add_deliveries(sessions, channel, 1, kind="email")
        worker = DeliveryWorker(
            sessions, Outbox(source="/ach/notifications"), settings(smtp_host="127.0.0.1", smtp_port=port)
        )

        async def delivered() -> bool:
            return (await rows(sessions))[0].status == DELIVERED

        await run_until(worker, delivered)
    finally:
        controller.stop()
    [raw] = received
    mail = message_from_bytes(raw)
    assert mail["To"] == "intake@pantry.example.org"
    assert mail["Message-ID"] == f"<{delivery_id}@ach.local>"
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "ref-0" in text and delivery_id in text


async def test_without_a_mail_relay_an_email_delivery_waits_and_says_why(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = await add_channel(sessions, "intake@pantry.example.org", kind="email")
    await add_deliveries(sessions, channel, 1, kind="email")
    worker = DeliveryWorker(sessions, Outbox(source="/ach/notifications"), settings())
    assert await worker.step() == 1
    [row] = await rows(sessions)
    assert (row.status, row.attempts, row.last_error) == (PENDING, 1, "no SMTP server configured (SMTP_HOST)")


# --- Messages to residents: the address asked when sending, the resident's wish at that moment ---


class Contacts:
    """Stands in for identity's GetResidentContact (the stack test asks the real one): the
    resident's current wish, changeable between attempts, and the calls made."""

    def __init__(self, channel: str, address: str, language: str) -> None:
        self.now = ResidentAddress(channel, address, language)
        self.asked: list[tuple[str, str]] = []
        self.unknown = 0  # answer "not found yet" this many times first

    async def __call__(self, resident_id: str, referral_id: str) -> ResidentAddress:
        self.asked.append((resident_id, referral_id))
        if self.unknown:
            self.unknown -= 1
            raise ContactUnavailable("identity answered NOT_FOUND")
        return self.now


async def add_resident_message(
    sessions: async_sessionmaker[AsyncSession], template: str, channel: str
) -> str:
    delivery_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        session.add(
            DeliveryRecord(
                id=delivery_id,
                partner_id=RESIDENTS,
                channel=channel,
                channel_id="",
                subject_type="referral",
                subject_id="ref-1",
                event_type=f"resident.{template}",
                status=PENDING,
                source_event_id="evt-1",
                created_at=now,
                next_attempt_at=now,
                payload={
                    "resident_id": "res-1",
                    "referral_id": "ref-1",
                    "template": template,
                    "organization_id": "cbo-pantry",
                },
            )
        )
    return delivery_id


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    with sms_gateway() as found:  # the stack tests' gateway: a real HTTP server checking basic auth
        yield found


def gateway_settings(gateway: SmsGateway) -> DeliverySettings:
    env = gateway.env()
    return settings(
        sms_gateway_url=env["SMS_GATEWAY_URL"],
        sms_user=env["SMS_GATEWAY_USER"],
        sms_token=env["SMS_GATEWAY_TOKEN"],
        sms_from=env["SMS_FROM"],
    )


async def test_a_resident_text_goes_to_the_address_identity_gives_in_their_language(
    sessions: async_sessionmaker[AsyncSession], gateway: SmsGateway
) -> None:
    delivery_id = await add_resident_message(sessions, "referral-accepted", "sms")
    contacts = Contacts("sms", "+12095550100", "vi")
    contacts.unknown = 1  # identity has not heard of the referral yet: tried again
    worker = DeliveryWorker(
        sessions,
        Outbox(source="/ach/notifications"),
        gateway_settings(gateway),
        residents=contacts,
        organization_name=lambda partner_id: {"cbo-pantry": "Emergency Food Bank"}[partner_id],
    )

    async def delivered() -> bool:
        return (await rows(sessions))[0].status == DELIVERED

    await run_until(worker, delivered)
    [sms] = gateway.messages()
    assert (sms.to, sms.sender, sms.idempotency_key) == ("+12095550100", "+12095550199", delivery_id)
    assert sms.body.startswith("Emergency Food Bank đã chấp nhận")
    assert gateway.unauthorized == 0  # the account and token, as basic auth
    [row] = await rows(sessions)
    assert row.attempts == 2 and contacts.asked == [("res-1", "ref-1")] * 2
    assert "+12095550100" not in str(row.payload) and "+12095550100" not in row.last_error


async def test_a_resident_who_asked_not_to_be_contacted_since_gets_nothing(
    sessions: async_sessionmaker[AsyncSession], gateway: SmsGateway
) -> None:
    await add_resident_message(sessions, "referral-sent", "sms")
    contacts = Contacts("", "", "es")  # identity: "do not contact" (no channel, no address)
    worker = DeliveryWorker(
        sessions, Outbox(source="/ach/notifications"), gateway_settings(gateway), residents=contacts
    )
    assert await worker.step() == 1
    [row] = await rows(sessions)
    assert (row.status, row.attempts, row.last_error) == (
        notifications_pb2.DELIVERY_STATUS_WITHHELD,
        1,
        "the resident asked not to be contacted",
    )
    assert gateway.messages() == [] and gateway.unauthorized == 0
    async with sessions() as session:
        [event] = (await session.exec(select(OutboxEvent))).all()
    assert event.event_type == "ach.notifications.v1.NotificationDelivered"


async def test_by_email_the_link_opens_a_page_and_a_button_answers_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The question by e-mail (SMTP, a real relay), its link's page in the resident's language
    (opening it answers nothing: mail scanners open links), one press of a button answers, once."""
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    smtp_port, http_port = free_port(), free_port()
    relay = Controller(Handler(), hostname="127.0.0.1", port=smtp_port)
    relay.start()
    box = SecretBox([Fernet.generate_key()])
    base = f"http://127.0.0.1:{http_port}"
    try:
        delivery_id = await add_resident_message(sessions, "help-question", "email")
        worker = DeliveryWorker(
            sessions,
            Outbox(source="/ach/notifications"),
            settings(smtp_host="127.0.0.1", smtp_port=smtp_port, answer_url=base),
            residents=Contacts("email", "ana@example.org", "es-MX"),
            organization_name=lambda partner_id: "Banco de Comida",
            box=box,
        )

        async def sent() -> bool:
            return (await rows(sessions))[0].status == DELIVERED

        await run_until(worker, sent)
    finally:
        relay.stop()
    [raw] = received
    mail = message_from_bytes(raw, policy=email.policy.default)
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    words = body.decode()
    assert mail["Subject"] == "¿Recibió la ayuda que necesitaba?" and "Banco de Comida" in words
    link = re.search(r"http://\S+/answers/[A-Za-z0-9_-]+", words)
    assert link is not None
    async with sessions() as session:
        [question] = (await session.exec(select(HelpQuestion))).all()
    assert (question.id, question.channel, question.language) == (delivery_id, "email", "es")
    assert link.group(0).rsplit("/", 1)[1] not in question.reply_key  # only a digest is kept

    pages = AnswerPages(sessions, Outbox(source="/ach/notifications"), box.derived_key(ADDRESS_DIGESTS))
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=pages.routes()), port=http_port, log_level="error")
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # uvicorn says it is listening by a flag only
            if server.started:
                break
            await asyncio.sleep(0.02)

        def fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, str, Message]:
            data = urlencode(form).encode() if form is not None else None
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
                    return r.status, r.read().decode(), r.headers
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(), e.headers

        status, html, headers = await asyncio.to_thread(fetch, link.group(0))  # opened: not answered
        assert status == 200 and 'value="yes"' in html and "Sí, recibí la ayuda" in html
        assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        async with sessions() as session:
            assert (await session.get(HelpQuestion, delivery_id)).answered_at is None  # type: ignore[union-attr]
        answers = await asyncio.gather(
            *(asyncio.to_thread(fetch, link.group(0), {"answer": a}) for a in ("no", "no", "yes"))
        )
        assert all(s == 200 and "Gracias" in h for s, h, _ in answers)
        assert (await asyncio.to_thread(fetch, base + "/answers/" + "A" * 32))[0] == 404  # no such link
        assert (await asyncio.to_thread(fetch, base + "/answers/%3Cscript%3E"))[0] == 404
    finally:
        server.should_exit = True
        await serving
    async with sessions() as session:
        kept = await session.get(HelpQuestion, delivery_id)
        events = (
            await session.exec(  # type: ignore[call-overload]
                text("SELECT payload FROM outbox_event WHERE event_type LIKE '%ResidentFeedbackRecorded'")
            )
        ).all()
    assert kept is not None and kept.answered_at is not None and len(events) == 1  # one answer counts
    assert b"ana@example.org" not in bytes(events[0][0])

"""An SMS gateway for tests: a real HTTP server with the Twilio-compatible "send a message" form
(To, From, Body, basic auth) that the notifications service posts to. It records what a resident
would receive, and posts a resident's reply to the service's reply webhook as Twilio does (a form
signed with the account's token in X-Twilio-Signature)."""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

USER, TOKEN = "ACtest", "test-token"


@dataclass
class Sms:
    to: str
    sender: str
    body: str
    idempotency_key: str


@dataclass
class SmsGateway:
    port: int
    sent: list[Sms] = field(default_factory=list)
    unauthorized: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/2010-04-01/Accounts/{USER}/Messages.json"

    def env(self) -> dict[str, str]:
        return {
            "SMS_GATEWAY_URL": self.url,
            "SMS_GATEWAY_USER": USER,
            "SMS_GATEWAY_TOKEN": TOKEN,
            "SMS_FROM": "+12095550199",
        }

    def messages(self) -> list[Sms]:
        with self.lock:
            return list(self.sent)

    def reply(
        self, reply_url: str, sender: str, body: str, message_id: str = "", token: str = TOKEN
    ) -> tuple[int, str]:
        """A resident's text back, as the gateway posts it: (HTTP status, the TwiML answered)."""
        from ach_notifications.domain import gateway_signature

        form = {
            "MessageSid": message_id or f"SM{uuid.uuid4().hex}",
            "AccountSid": USER,
            "From": sender,
            "To": "+12095550199",
            "Body": body,
        }
        request = urllib.request.Request(
            reply_url,
            data=urlencode(form).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": gateway_signature(token, reply_url, form),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode()


@contextmanager
def sms_gateway() -> Iterator[SmsGateway]:
    from tests.harness import free_port

    gateway = SmsGateway(free_port())
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            if self.headers.get("Authorization", "") != expected:
                with gateway.lock:
                    gateway.unauthorized += 1
                self._answer(401)
                return
            form = {k: v[0] for k, v in parse_qs(body).items()}
            with gateway.lock:
                gateway.sent.append(
                    Sms(
                        form.get("To", ""),
                        form.get("From", ""),
                        form.get("Body", ""),
                        self.headers.get("Idempotency-Key", ""),
                    )
                )
            self._answer(201)

        def _answer(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", gateway.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()

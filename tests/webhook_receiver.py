"""A partner's webhook endpoint for tests: a real HTTP server that checks every request's signature
by the documented recipe (written here from the README, not with the service's code), and can be
told to fail, to hang, or to be away."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLAY_WINDOW_S = 300


def signature_valid(secret: str, header: str, body: bytes, now: float) -> bool:
    """The README's recipe: split "t=...,v1=..."; refuse a timestamp more than 5 minutes away;
    HMAC-SHA256 of "<t>." + raw body with the secret, hex; compare in constant time."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.partition("=")
        fields.setdefault(key.strip(), []).append(value.strip())
    if len(fields.get("t", [])) != 1 or not fields["t"][0].isdigit():
        return False
    timestamp = int(fields["t"][0])
    if abs(now - timestamp) > REPLAY_WINDOW_S:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


@dataclass
class Received:
    path: str
    delivery_id: str
    body: dict[str, Any]
    at: float
    headers: dict[str, str]


@dataclass
class Receiver:
    port: int
    secrets: dict[str, str] = field(default_factory=dict)  # path ("/cbo-1") -> the channel's secret
    received: list[Received] = field(default_factory=list)  # acknowledged (2xx) requests
    refused: list[str] = field(default_factory=list)  # bad signatures: must stay empty
    fail_next: dict[str, int] = field(default_factory=dict)  # path -> answer 500 this many times
    hang: threading.Event = field(default_factory=threading.Event)  # set: hold requests unanswered
    hang_s: float = 5.0
    attempts: dict[str, int] = field(default_factory=dict)  # every request, by delivery id
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received if r.path == path]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    from tests.harness import free_port  # here: the bench's sink process imports only the recipe

    receiver = Receiver(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            delivery_id = self.headers.get("ACH-Delivery-Id", "")
            with receiver.lock:
                receiver.attempts[delivery_id] = receiver.attempts.get(delivery_id, 0) + 1
                secret = receiver.secrets.get(self.path, "")
                failing = receiver.fail_next.get(self.path, 0)
                if failing:
                    receiver.fail_next[self.path] = failing - 1
            if not signature_valid(secret, self.headers.get("ACH-Signature", ""), body, time.time()):
                with receiver.lock:
                    receiver.refused.append(delivery_id)
                self._answer(401)
                return
            if receiver.hang.is_set():
                time.sleep(receiver.hang_s)  # the sender times out or dies meanwhile
                self._answer(503)
                return
            if failing:
                self._answer(500)
                return
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, delivery_id, json.loads(body), time.time(), dict(self.headers))
                )
            self._answer(204)

        def _answer(self, code: int) -> None:
            try:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender went away

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()

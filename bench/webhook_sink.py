"""A partner's webhook endpoint for the bench, in its own process: checks each request's signature
(the README's recipe, as the tests' receiver checks it) and appends
"<arrival epoch s> <event type> <subject id>" per valid request.

Usage: python -m bench.webhook_sink PORT SECRET_FILE LOG_FILE (the secret file may appear later)."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.webhook_receiver import signature_valid


def main() -> None:
    port, secret_file, log_file = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    lock = threading.Lock()
    out = log_file.open("a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint would

        def do_POST(self) -> None:
            arrived = time.time()
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            secret = secret_file.read_text().strip() if secret_file.exists() else ""
            ok = bool(secret) and signature_valid(
                secret, self.headers.get("ACH-Signature", ""), body, arrived
            )
            if ok:
                payload = json.loads(body)
                with lock:
                    out.write(f"{arrived} {payload['event_type']} {payload['subject_id']}\n")
            self.send_response(204 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()

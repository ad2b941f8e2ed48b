"""A webhook receiver for end-to-end tests: a real HTTP server on localhost, in a thread, that
records every delivery and answers each with the next status of its script (then 200)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)

    def wait_for(self, count: int, timeout_s: float = 120.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} deliveries arrived"
            time.sleep(0.2)
        return self.received

    def wait_for_status(self, status: int, timeout_s: float = 120.0) -> list[Delivery]:
        """Every delivery up to the first one answered with `status`."""
        deadline = time.monotonic() + timeout_s
        while not any(d.status == status for d in self.received):
            assert time.monotonic() < deadline, f"no delivery answered {status}: {self.received}"
            time.sleep(0.2)
        return self.received


@contextmanager
def webhook_receiver(statuses: list[int] | None = None, port: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.received.append(Delivery(body, headers, status))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    receiver.statuses = list(statuses or [])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()

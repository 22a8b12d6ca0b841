"""Real servers on localhost for the alert tests: SMTP (aiosmtpd) and a webhook (Apprise's json:// target)."""

from __future__ import annotations

import email
import html
import json
import threading
import time
from dataclasses import dataclass

from aiosmtpd.controller import Controller

from rec_models.stack.devstack import free_port


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str  # the text, HTML tags and escapes taken out


class MailServer:
    """Listens on 127.0.0.1:<free port> while open; ``messages`` holds every e-mail received."""

    def __init__(self):
        self.port = free_port()
        self.messages: list[Mail] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        parsed = email.message_from_bytes(envelope.content)
        parts = [p.get_payload(decode=True).decode() for p in parsed.walk() if not p.is_multipart()]
        text = html.unescape("".join(parts).replace("<pre>", "").replace("</pre>", ""))
        with self._lock:
            self.messages.append(Mail(envelope.mail_from, tuple(envelope.rcpt_tos), parsed["Subject"], text))
        return "250 OK"

    def connection(self) -> str:
        """An Airflow Connection (JSON, for an AIRFLOW_CONN_<ID> variable) to this server."""
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"from_email": "recommendations@localhost", "disable_ssl": True,
                                     "disable_tls": True}})

    def subjects(self) -> list[str]:
        with self._lock:
            return [m.subject for m in self.messages]

    def wait_for(self, predicate, timeout: float) -> list[Mail]:
        """The messages that satisfy ``predicate``, once at least one does (or [] after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [m for m in self.messages if predicate(m)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def __enter__(self) -> "MailServer":
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()


class WebhookServer:
    """An HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to it: where Apprise's ``json://``
    target (a chat or webhook integration) delivers."""

    def __init__(self):
        import http.server

        self.received: list[dict] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.port = free_port()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def connection(self) -> str:
        """An Airflow Connection (JSON) of the apprise provider to this server."""
        return json.dumps({"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{self.port}/hook"}}})

    def __enter__(self) -> "WebhookServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()

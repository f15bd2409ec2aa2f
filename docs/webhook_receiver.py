"""A webhook receiver for trying webhooks locally (README, "Webhooks").

Listens on 127.0.0.1:PORT (9099 by default), verifies each call's Standard
Webhooks signature with the secret in WEBHOOK_SECRET (``manage.py
webhook_secret ACCOUNT`` prints it), answers 204 and prints the event's type,
task and result URL; a forged or stale call gets 400. ``--once`` exits after
the first verified event.

    WEBHOOK_SECRET=$(.venv/bin/python manage.py webhook_secret demo | tail -n 1) \
        .venv/bin/python docs/webhook_receiver.py --once

The service refuses loopback addresses for webhooks unless
OUTBOUND_ALLOWED_NETWORKS opens them: start it with
``OUTBOUND_ALLOWED_NETWORKS=127.0.0.1/32 make run``.
"""

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--once", action="store_true", help="exit after the first event")
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        parser.error("set WEBHOOK_SECRET to the account's whsec_... secret")
    verifier = Webhook(secret)
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                event = verifier.verify(body, dict(self.headers))
            except WebhookVerificationError as exc:
                self.send_response(400)
                self.end_headers()
                print(f"refused a call: {exc}", flush=True)
                return
            self.send_response(204)
            self.end_headers()
            result = event["data"].get("result") or {}
            where = result.get("image_url") or result.get("error", "")
            print(f"{event['type']} {event['task_id']} {where}", flush=True)
            print(json.dumps(event), flush=True)
            received.append(event)

        def log_message(self, *args):  # the line above says it all
            pass

    server = HTTPServer(("127.0.0.1", args.port), Receiver)
    print(f"Listening on http://127.0.0.1:{args.port}/hook", flush=True)
    with server:
        while not (args.once and received):
            server.handle_request()
    return 0


if __name__ == "__main__":
    sys.exit(main())

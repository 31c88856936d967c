"""A webhook receiver for Behalf's tests: verifies every delivery with the Standard
Webhooks reference library (PyPI `standardwebhooks`, installed by `./dev setup`) and
records it as one JSON line in the file named by its first argument.

POST /secret/<name>   body: a `whsec_...` secret to verify <name>'s deliveries with
POST /mode/<name>     body: ok | flaky2 (500 twice per message, then 200) | gone (410)
                      | fail (500) | slow (the first request of a message waits 2 s)
POST /hook/<name>     a delivery: answered as the mode says, recorded with the index of
                      every secret it verifies with
Prints "listening on <port>" once it listens (port 0: a free one).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

LOG = open(sys.argv[1], "a", buffering=1)
LOCK = threading.Lock()
SECRETS = {}
MODES = {}
SEEN = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        parts = self.path.strip("/").split("/")
        if len(parts) != 2:
            return self.answer(404)
        kind, name = parts
        if kind == "secret":
            with LOCK:
                SECRETS.setdefault(name, []).append(body.decode())
            return self.answer(204)
        if kind == "mode":
            with LOCK:
                MODES[name] = body.decode()
            return self.answer(204)
        if kind != "hook":
            return self.answer(404)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        with LOCK:
            secrets = list(SECRETS.get(name, []))
            mode = MODES.get(name, "ok")
            msg_id = headers.get("webhook-id", "")
            n = SEEN.get((name, msg_id), 0) + 1
            SEEN[(name, msg_id)] = n
        if mode == "slow":
            with LOCK:
                LOG.write(json.dumps({"name": name, "id": msg_id, "n": n, "status": 0, "phase": "arrived"}) + "\n")
        for i, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except Exception:
                pass
        if mode == "flaky2":
            status = 500 if n <= 2 else 200
        elif mode == "gone":
            status = 410
        elif mode == "fail":
            status = 500
        elif mode == "slow" and n == 1:
            time.sleep(2)
            status = 200
        else:
            status = 200
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        record = {
            "name": name,
            "id": msg_id,
            "n": n,
            "status": status,
            "verified_with": verified,
            "signatures": headers.get("webhook-signature", "").count("v1,"),
            "user_agent": headers.get("user-agent", ""),
            "queue": (payload or {}).get("queue"),
            "ticket_id": ((payload or {}).get("body") or {}).get("ticket_id"),
        }
        with LOCK:
            LOG.write(json.dumps(record) + "\n")
        self.answer(status)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening on {server.server_address[1]}", flush=True)
server.serve_forever()

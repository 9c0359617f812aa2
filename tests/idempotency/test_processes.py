"""50 concurrent calls with one key from 4 processes sharing Redis: one request at the server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("key_worker.py")


class _Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with _Provider.lock:
            _Provider.requests += 1
        time.sleep(0.3)  # the send is in flight while the other calls claim the key
        body = b'{"code":2,"msg":"ok","smsid":"16842079209571524017"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_one_key_across_four_processes_sends_once(redis_url: str, redis_prefix: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Provider.requests = 0
    start_at = time.time() + 3.0  # all four have imported and connected by then
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), f"http://127.0.0.1:{server.server_port}",
                 redis_url, redis_prefix, str(start_at), "13"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outcomes: Counter[str] = Counter()
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outcomes.update(json.loads(out))
    finally:
        server.shutdown()
        server.server_close()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{redis_prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    assert _Provider.requests == 1
    assert outcomes == Counter({"sent": 1, "replayed": 51}), outcomes

"""A pass-through HTTP proxy in front of the real search engine that can make its search answers partial.

A real engine answers a search that lost a shard, or ran past its `timeout`, with 200 and the hits and
aggregations of the shards that did answer, plus `_shards.failed > 0` or `timed_out: true`. Forcing that
on a one-node test engine is not reliable, so this proxy takes the real answer and marks it the way such
an answer is marked, for the searches of the indices a test names. Everything else passes unchanged.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding",
               "content-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class PartialAnswerProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.mode: str | None = None  # None, "shard_failure" or "timed_out"
        self.index_part = ""  # only searches whose path contains this
        self.rewritten = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> PartialAnswerProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def make_partial(self, mode: str | None, index_part: str = "") -> None:
        self.mode, self.index_part = mode, index_part

    def _rewrite(self, path: str, answer: bytes) -> bytes:
        if self.mode is None or "/_search" not in path or self.index_part not in path:
            return answer
        body = orjson.loads(answer)
        shards = body.setdefault("_shards", {"total": 1, "successful": 1, "skipped": 0, "failed": 0})
        if self.mode == "timed_out":
            body["timed_out"] = True
        else:
            shards["total"] = max(2, shards.get("total", 1) + 1)
            shards["failed"] = 1
            shards["failures"] = [{"shard": 1, "index": "forced", "reason": {
                "type": "node_disconnected_exception", "reason": "forced by the test proxy"}}]
        self.rewritten += 1
        return orjson.dumps(body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    answer = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                    status = response.status
                finally:
                    connection.close()
                if status == 200:
                    answer = proxy._rewrite(urlsplit(self.path).path, answer)
                self.send_response(status)
                for k, v in kept:
                    self.send_header(k, v)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler

"""A small HTTP proxy in front of the search engine that answers 429 for a share of `_bulk` items.

This is what a busy Elasticsearch/OpenSearch node does (`es_rejected_execution_exception` per item,
the bulk request itself 200). The rejected items are cut out of the request before it is forwarded,
so the engine never sees them, and a 429 item is put back in their place in the answer. The proxy
counts, per document id, how often it saw the id and how often it refused it: a pipeline that retries
only what was refused sees every id exactly `1 + refusals` times.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding",
               "content-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class BulkRejectingProxy:
    def __init__(self, upstream: str, reject_ratio: float, seed: int = 1) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.reject_ratio = reject_ratio
        self.rng = random.Random(seed)
        self.seen: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> BulkRejectingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _choose(self, doc_ids: list[str]) -> set[int]:
        """Positions to refuse, counted per id under the lock (handler threads run at once)."""
        with self.lock:
            refused = {i for i in range(len(doc_ids)) if self.rng.random() < self.reject_ratio}
            self.seen.update(doc_ids)
            self.refused.update(doc_ids[i] for i in refused)
        return refused

    def rewrite_bulk(self, body: bytes) -> tuple[bytes, list[tuple[str, str]], set[int]]:
        """(body without the refused items, (op, id) of every item, positions refused)."""
        lines = [line for line in body.split(b"\n") if line]
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
        items = []
        for action, _source in pairs:
            (op, meta), = orjson.loads(action).items()
            items.append((op, meta["_id"]))
        refused = self._choose([doc_id for _op, doc_id in items])
        kept = [b"%s\n%s\n" % pair for i, pair in enumerate(pairs) if i not in refused]
        return b"".join(kept), items, refused

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                bulk = self.command == "POST" and path.rstrip("/").endswith("/_bulk") and body
                items: list[tuple[str, str]] = []
                refused: set[int] = set()
                if bulk:
                    body, items, refused = proxy.rewrite_bulk(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if bulk and not body:
                    status, answer, out_headers = 200, orjson.dumps({"errors": False, "items": []}), {}
                else:
                    status, answer, out_headers = self._upstream(body, headers)
                if bulk and refused and status == 200:
                    answer = _splice(orjson.loads(answer), items, refused)
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _upstream(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                    return response.status, data, kept
                finally:
                    connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler


def _splice(answer: dict, items: list[tuple[str, str]], refused: set[int]) -> bytes:
    """Put a 429 item back at each refused position, in request order."""
    forwarded = iter(answer.get("items") or [])
    merged = []
    for i, (op, doc_id) in enumerate(items):
        if i in refused:
            merged.append({op: {"_id": doc_id, "status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "rejected by the fault proxy (429)"}}})
        else:
            merged.append(next(forwarded))
    return orjson.dumps({"errors": True, "items": merged})

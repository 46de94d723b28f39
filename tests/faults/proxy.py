"""A small HTTP proxy in front of the search engine that misbehaves on `_bulk` the ways real nodes do.

- `reject_ratio`: answers 429 for a share of items, as a busy node does (`es_rejected_execution_exception`
  per item, the bulk request itself 200). The rejected items are cut out of the request before it is
  forwarded, so the engine never sees them, and a 429 item is put back in their place in the answer. The
  proxy counts, per (index, document id), how often it saw the id and how often it refused it: a pipeline that
  retries only what was refused sees every id exactly `1 + refusals` times.
- `refuse_marker`: refuses a whole bulk request (400, as for a mapping error on the request) whenever its
  body contains these bytes: one poison document takes its whole batch down with it.
- `bulk_delay_s`: answers every bulk request this much later (a slow engine); 0 turns it off.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding",
               "content-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class BulkRejectingProxy:
    def __init__(self, upstream: str, reject_ratio: float = 0.0, seed: int = 1, refuse_marker: bytes | None = None,
                 bulk_delay_s: float = 0.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.reject_ratio = reject_ratio
        self.refuse_marker = refuse_marker
        self.bulk_delay_s = bulk_delay_s
        self.refused_requests = 0
        self.delayed_requests = 0
        self.rng = random.Random(seed)
        self.seen: Counter[tuple[str, str]] = Counter()
        self.refused: Counter[tuple[str, str]] = Counter()
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

    def _choose(self, index: str, doc_ids: list[str]) -> set[int]:
        """Positions to refuse, counted per (index, id) under the lock (handler threads run at once)."""
        with self.lock:
            refused = {i for i in range(len(doc_ids)) if self.rng.random() < self.reject_ratio}
            self.seen.update((index, doc_id) for doc_id in doc_ids)
            self.refused.update((index, doc_ids[i]) for i in refused)
        return refused

    def rewrite_bulk(self, body: bytes, index: str = "") -> tuple[bytes, list[tuple[str, str]], set[int]]:
        """(body without the refused items, (op, id) of every item, positions refused). `index` is the one the
        request's path names (`/{index}/_bulk`), else the action lines'."""
        lines = [line for line in body.split(b"\n") if line]
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
        items = []
        for action, _source in pairs:
            (op, meta), = orjson.loads(action).items()
            items.append((op, meta["_id"]))
            index = index or meta.get("_index", "")
        refused = self._choose(index, [doc_id for _op, doc_id in items])
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
                if bulk and proxy.bulk_delay_s > 0:
                    with proxy.lock:
                        proxy.delayed_requests += 1
                    time.sleep(proxy.bulk_delay_s)
                if bulk and proxy.refuse_marker is not None and proxy.refuse_marker in body:
                    with proxy.lock:
                        proxy.refused_requests += 1
                    self._answer(400, orjson.dumps({"error": {
                        "type": "mapper_parsing_exception", "reason": "refused whole by the fault proxy"},
                        "status": 400}), {"content-type": "application/json"})
                    return
                items: list[tuple[str, str]] = []
                refused: set[int] = set()
                if bulk:
                    segments = path.strip("/").split("/")
                    body, items, refused = proxy.rewrite_bulk(body, segments[0] if len(segments) == 2 else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if bulk and not body:
                    status, answer, out_headers = 200, orjson.dumps({"errors": False, "items": []}), {}
                else:
                    status, answer, out_headers = self._upstream(body, headers)
                if bulk and refused and status == 200:
                    answer = _splice(orjson.loads(answer), items, refused)
                self._answer(status, answer, out_headers)

            def _answer(self, status: int, answer: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
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

"""The fingerprint rule on a table of real-looking error logs: what groups together, and what must not."""

from __future__ import annotations

import pytest

from panopticon.processing.fingerprint import FINGERPRINT_RE, identify, mask_message, top_frame

PY_STACK = '''Traceback (most recent call last):
  File "/app/.venv/lib/python3.11/site-packages/flask/app.py", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File "/srv/releases/{release}/shop/views.py", line {line}, in checkout
    total = compute(cart)
  File "/srv/releases/{release}/shop/pricing.py", line 17, in compute
    return sum(i.price for i in cart) / len(cart)
ZeroDivisionError: division by zero'''
JAVA_STACK = '''java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null
\tat java.base/java.lang.String.valueOf(String.java:4465)
\tat com.acme.checkout.{cls}.charge({cls}.java:{line})
\tat com.acme.checkout.CheckoutController.post(CheckoutController.java:41)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)'''
NODE_STACK = '''TypeError: Cannot read properties of undefined (reading 'id')
    at {func} (/app/src/users/service.js:{line}:17)
    at async Router.handle (/app/node_modules/express/lib/router/index.js:284:7)'''
GO_STACK = '''goroutine {n} [running]:
main.(*Server).handleOrder(0xc000010000, {{0x6b1f40, 0xc0000a8000}})
\t/app/cmd/server/orders.go:57 +0x1d
net/http.HandlerFunc.ServeHTTP(0x0?, {{0x6b1f40?, 0xc0000a8000?}})
\t/usr/local/go/src/net/http/server.go:2136 +0x29'''


def fp(message: str, service: str = "checkout", **attributes: object) -> str:
    return identify(service, message, attributes).fingerprint


# (label, first log, second log, same group?) -- each log is (service, message, attributes).
PAIRS = [
    ("numeric id", ("checkout", "User 12345 not found", {}), ("checkout", "User 987 not found", {}), True),
    ("uuid", ("checkout", "Order 7f3c9a1e-2b4d-4c8e-9f01-23456789abcd failed: card declined", {}),
     ("checkout", "Order 0e9d8c7b-6a5f-4e3d-2c1b-a09876543210 failed: card declined", {}), True),
    ("hex address", ("db", "deadlock detected, txn 0x7ffe3a21", {}), ("db", "deadlock detected, txn 0x1a2b", {}), True),
    ("hex session", ("auth", "session a8f5f167f44f4964e6c998dee827110c expired", {}),
     ("auth", "session 5d41402abc4b2a76b9719d911017c592 expired", {}), True),
    ("quoted value", ("api", "can't parse 'abc' as int", {}), ("api", "can't parse '12x' as int", {}), True),
    ("double quoted", ("api", 'unknown field "colour"', {}), ("api", 'unknown field "size"', {}), True),
    ("url ids and query", ("gateway", "GET https://api.example.com/v1/users/8812/orders?page=2 failed", {}),
     ("gateway", "GET https://api.example.com/v1/users/31/orders?page=9&x=1 failed", {}), True),
    ("path ids", ("reports", "cannot open /var/data/tenants/acme-42/report.csv: permission denied", {}),
     ("reports", "cannot open /var/data/tenants/globex-7/report.csv: permission denied", {}), True),
    ("ip and port", ("checkout", "Timeout after 30s calling payments at 10.0.3.17:8443", {}),
     ("checkout", "Timeout after 45s calling payments at 10.0.9.2:8443", {}), True),
    ("time", ("db", "lock wait timeout at 2024-05-01T12:00:00.123Z", {}),
     ("db", "lock wait timeout at 2024-06-11T08:15:42Z", {}), True),
    ("email", ("mailer", "mail to bob.smith@example.com bounced", {}), ("mailer", "mail to x@y.org bounced", {}), True),
    ("opaque token", ("auth", "token eyJhbGciOiJIUzI1NiJ9abc123 rejected", {}),
     ("auth", "token Zm9vYmFyYmF6cXV4MTIzNDU2 rejected", {}), True),
    ("durations", ("jobs", "retry 3 of 5 (took 1.25ms)", {}), ("jobs", "retry 4 of 5 (took 980ms)", {}), True),
    ("type prefix vs attribute", ("checkout", "ValueError: bad amount 12", {}),
     ("checkout", "bad amount 99", {"exception.type": "ValueError"}), True),
    ("nested attributes", ("checkout", "boom 1", {"exception.type": "KeyError"}),
     ("checkout", "boom 2", {"exception": {"type": "KeyError"}}), True),
    ("stack line numbers and release dirs",
     ("shop", "division by zero", {"exception.type": "ZeroDivisionError",
                                   "exception.stacktrace": PY_STACK.format(release="20240501", line=42)}),
     ("shop", "division by zero", {"exception.type": "ZeroDivisionError",
                                   "exception.stacktrace": PY_STACK.format(release="20240612", line=47)}), True),
    ("java line numbers",
     ("checkout", "NPE", {"exception.stacktrace": JAVA_STACK.format(cls="PaymentService", line=88)}),
     ("checkout", "NPE", {"exception.stacktrace": JAVA_STACK.format(cls="PaymentService", line=90)}), True),
    ("go goroutine numbers", ("orders", "panic: nil map", {"error.stack": GO_STACK.format(n=1)}),
     ("orders", "panic: nil map", {"error.stack": GO_STACK.format(n=812)}), True),
    # --- different errors stay apart ------------------------------------------------------------------
    ("different services", ("checkout", "User 1 not found", {}), ("billing", "User 1 not found", {}), False),
    ("different words", ("checkout", "User 1 not found", {}), ("checkout", "User 1 locked", {}), False),
    ("different types", ("checkout", "bad input", {"exception.type": "ValueError"}),
     ("checkout", "bad input", {"exception.type": "TypeError"}), False),
    ("different loggers", ("checkout", "failed", {"logger": "payments"}), ("checkout", "failed", {"logger": "stock"}),
     False),
    ("error codes are words", ("checkout", "gateway said E1001", {}), ("checkout", "gateway said E2002", {}), False),
    ("different hosts", ("gateway", "GET https://pay.example.com/x failed", {}),
     ("gateway", "GET https://stock.example.com/x failed", {}), False),
    ("api versions", ("gateway", "GET https://api.example.com/v1/users failed", {}),
     ("gateway", "GET https://api.example.com/v2/users failed", {}), False),
    ("different in-app frames", ("checkout", "NPE", {"exception.stacktrace": JAVA_STACK.format(cls="PaymentService",
                                                                                             line=88)}),
     ("checkout", "NPE", {"exception.stacktrace": JAVA_STACK.format(cls="RefundService", line=88)}), False),
    ("node functions", ("users", "TypeError: Cannot read properties of undefined",
                        {"stack": NODE_STACK.format(func="getUser", line=23)}),
     ("users", "TypeError: Cannot read properties of undefined", {"stack": NODE_STACK.format(func="getTeam", line=23)}),
     False),
    ("a stack makes a group of its own", ("checkout", "NPE", {}),
     ("checkout", "NPE", {"exception.stacktrace": JAVA_STACK.format(cls="PaymentService", line=88)}), False),
]


@pytest.mark.parametrize(("first", "second", "same"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_the_table(first: tuple, second: tuple, same: bool) -> None:
    a, b = identify(*first), identify(*second)
    assert FINGERPRINT_RE.match(a.fingerprint) and FINGERPRINT_RE.match(b.fingerprint)
    assert (a.fingerprint == b.fingerprint) is same, (mask_message(first[1]), mask_message(second[1]))


MASKS = [
    ("User 12345 not found", "User <num> not found"),
    ("Timeout after 30s calling payments at 10.0.3.17:8443", "Timeout after <num> calling payments at <ip>"),
    ("can't parse 'abc' as int", "can't parse '<str>' as int"),
    ("GET https://api.example.com/v1/users/8812/orders?page=2 failed with 503",
     "GET https://api.example.com/v1/users/<id>/orders?<query> failed with <num>"),
    ("cannot open /var/data/tenants/acme-42/report.csv", "cannot open /var/data/tenants/<id>/report.csv"),
    ("deadlock at 2024-05-01T12:00:00.123Z, txn 0x7ffe3a21", "deadlock at <time>, txn <hex>"),
    ("Order 7f3c9a1e-2b4d-4c8e-9f01-23456789abcd failed", "Order <uuid> failed"),
    ("mail to bob.smith@example.com bounced", "mail to <email> bounced"),
    ("retry 3 of 5 for job E1001 (took 1.25ms).", "retry <num> of <num> for job E1001 (took <num>)."),
    ("  many\n\tspaces  ", "many spaces"),
]


@pytest.mark.parametrize(("message", "masked"), MASKS)
def test_masking(message: str, masked: str) -> None:
    assert mask_message(message) == masked


FRAMES = [
    (PY_STACK.format(release="1", line=1), "shop/pricing.py:compute"),  # innermost in-app: Python lists it last
    (JAVA_STACK.format(cls="PaymentService", line=88), "PaymentService.java:com.acme.checkout.PaymentService.charge"),
    (NODE_STACK.format(func="getUser", line=23), "users/service.js:getUser"),
    (GO_STACK.format(n=1), "server/orders.go:main.(*Server).handleOrder"),
    ("app/models/user.rb:12:in `save!'\nfrom /gems/activerecord/base.rb:9:in `transaction'", "models/user.rb:save!"),
    ('  File "/usr/lib/python3.11/json/decoder.py", line 9, in decode', "json/decoder.py:decode"),  # library only
    ("no frames here", None),
]


@pytest.mark.parametrize(("stack", "frame"), FRAMES)
def test_top_in_app_frame(stack: str, frame: str | None) -> None:
    assert top_frame(stack) == frame


def test_identity_carries_type_frame_and_endpoint() -> None:
    found = identify("shop", "ZeroDivisionError: division by zero",
                     {"exception.stacktrace": PY_STACK.format(release="1", line=1), "http.route": "/cart/:id"})
    assert (found.error_type, found.frame, found.endpoint) == ("ZeroDivisionError", "shop/pricing.py:compute",
                                                               "/cart/:id")
    assert identify("shop", "x", {}, endpoint="GET /a").endpoint == "GET /a"
    assert identify("shop", "plain", None).error_type is None


def test_only_the_start_of_a_long_message_counts() -> None:
    head = "x " * 1500
    assert fp(head + "tail one") == fp(head + "tail two")
    assert fp("short one") != fp("short two")

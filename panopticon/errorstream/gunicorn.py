"""gunicorn settings of the `ws` process (`gunicorn -c python:panopticon.errorstream.gunicorn wsgi:ws_app`).

Read from Panopticon's settings, as the `otlp` process's are: WS_BIND_HOST / WS_PORT in `.env` count, and the
connection pool follows WS_MAX_CLIENTS.
"""

from panopticon.settings import load_or_exit

_settings = load_or_exit()

bind = [f"{_settings.ws_bind_host}:{_settings.ws_port}"]
worker_class = "gevent"
workers = 1
# Room beyond WS_MAX_CLIENTS, so that the one over the limit is answered 503 and probes still get in.
worker_connections = _settings.ws_max_clients + 100
# gevent's worker waits this long for every request line on a connection, the first one included, and then
# closes the socket without an answer. At the default 2 s, some of 2,000 clients reconnecting at once after a
# restart were dropped that way on a 2-core machine: their request lines were read after more than 2 s.
keepalive = 30
graceful_timeout = 5
# No shared control socket: several gunicorn processes (web, ws, otlp) may run on one host.
control_socket_disable = True

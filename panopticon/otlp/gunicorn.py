"""gunicorn settings of the `otlp` process (`gunicorn -c python:panopticon.otlp.gunicorn wsgi:otlp_app`).

Read from Panopticon's settings, so OTLP_BIND_HOST / OTLP_HTTP_PORT / OTLP_THREADS in `.env` count as
they do for every other process (a shell default in the Procfile would not see `.env`).
"""

from panopticon.settings import load_or_exit

_settings = load_or_exit()

bind = [f"{_settings.otlp_bind_host}:{_settings.otlp_http_port}"]
worker_class = "gthread"
workers = 1
# A request thread waits for Kafka's acknowledgement (OTLP_KAFKA_TIMEOUT_SECONDS at most): threads, not cores.
threads = _settings.otlp_threads
timeout = int(_settings.otlp_kafka_timeout_seconds) + 30
graceful_timeout = int(_settings.otlp_kafka_timeout_seconds) + 5
accesslog = "-"
# No shared control socket: several gunicorn processes (web, ws, otlp) may run on one host.
control_socket_disable = True

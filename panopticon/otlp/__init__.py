"""The `otlp` process: OpenTelemetry's OTLP/HTTP in (`/v1/traces`, `/v1/logs`), written to the OTLP topics.

It sits beside `api` at the top of the import graph: it reads requests, checks them with the OTLP
decoders of `panopticon.processing`, and writes Kafka records; it never stores, rolls up or queries.
"""

from panopticon.otlp.app import create_otlp_app

__all__ = ["create_otlp_app"]

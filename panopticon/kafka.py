"""The one place that turns settings into confluent-kafka configuration, and creates topics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at runtime, not in its __all__
    AdminClient,
    ConfigResource,
    NewTopic,
)

from panopticon.exceptions import ConfigError
from panopticon.settings import Settings

log = logging.getLogger(__name__)


def _msk_iam_token_callback(region: str) -> Callable[[str], tuple[str, float]]:
    """OAUTHBEARER token for Amazon MSK IAM, from the AWS signer library (optional dependency)."""
    try:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    except ImportError as exc:
        raise ConfigError("KAFKA_AWS_REGION: install aws-msk-iam-sasl-signer-python for MSK IAM") from exc

    def token(_config: str) -> tuple[str, float]:
        value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return value, expiry_ms / 1000

    return token


def common_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap, client id and security, shared by consumers, producers and the admin client."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "client.id": settings.kafka_client_id}
    mechanism = settings.kafka_sasl_mechanism
    if settings.kafka_aws_region and mechanism in (None, "OAUTHBEARER", "AWS-MSK-IAM"):
        mechanism = "AWS-MSK-IAM"
    # MSK's IAM listeners accept TLS only, so MSK IAM implies KAFKA_SSL.
    tls = settings.kafka_ssl or mechanism == "AWS-MSK-IAM"
    if mechanism:
        config["security.protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    elif tls:
        config["security.protocol"] = "SSL"
    if tls:
        config["ssl.endpoint.identification.algorithm"] = "https"
        if settings.kafka_ssl_ca_file:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_file
    if mechanism == "AWS-MSK-IAM":
        if not settings.kafka_aws_region:
            raise ConfigError("KAFKA_AWS_REGION: required for AWS-MSK-IAM")
        config["sasl.mechanism"] = "OAUTHBEARER"
        config["oauth_cb"] = _msk_iam_token_callback(settings.kafka_aws_region)
    elif mechanism:
        if not settings.kafka_sasl_username:
            raise ConfigError(f"KAFKA_SASL_USERNAME: required for {mechanism}")
        config["sasl.mechanism"] = mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password or ""
    return config


def consumer_config(settings: Settings, group: str | None = None) -> dict[str, Any]:
    return {
        **common_config(settings),
        "group.id": group or settings.kafka_consumer_group,
        # A new group starts at the beginning, so nothing produced before the first start is skipped.
        "auto.offset.reset": "earliest",
        # Offsets are committed by hand, only after the data is stored.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Bounds the memory of messages fetched ahead while the bridge is paused.
        "queued.max.messages.kbytes": 32768,
        "fetch.max.bytes": 16 * 1024 * 1024,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "max.poll.interval.ms": 300000,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    return {
        **common_config(settings),
        # Idempotent + acks=all: a retried send is written once, and only acknowledged when replicated.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        # The largest record we produce: a dead letter (cut to DLQ_MAX_MESSAGE_BYTES) or an error-log copy
        # (a document built from a message of at most MAX_MESSAGE_BYTES), with headers and key.
        "message.max.bytes": max(settings.max_message_bytes * 2, settings.dlq_max_message_bytes) + 65_536,
    }


# Room for what a record holds besides its value (key, headers, the batch's own framing).
RECORD_OVERHEAD_BYTES = 64 * 1024


def otlp_record_limit(settings: Settings) -> int:
    """The largest OTLP record in bytes: a whole export request (OTLP_MAX_BODY_BYTES) and its framing."""
    return settings.otlp_max_body_bytes + RECORD_OVERHEAD_BYTES


def otlp_producer_config(settings: Settings) -> dict[str, Any]:
    """The `otlp` receiver's producer: one request is one record, acknowledged by every in-sync replica.

    A send that Kafka has not acknowledged in OTLP_KAFKA_TIMEOUT_SECONDS fails (the request is answered
    503 and the client retries), so librdkafka gives up on it at that time too instead of delivering it
    minutes later.
    """
    timeout_ms = int(settings.otlp_kafka_timeout_seconds * 1000)
    return {
        **producer_config(settings),
        "message.max.bytes": otlp_record_limit(settings),
        "message.timeout.ms": timeout_ms,
        "request.timeout.ms": min(30_000, timeout_ms),
        "linger.ms": 2,
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Per-topic configuration of the topics we create: the OTLP topics take records as large as a request,
    the dead-letter topic what the outbox sends it (DLQ_MAX_MESSAGE_BYTES, cut payloads included)."""
    limit = {"max.message.bytes": str(otlp_record_limit(settings))}
    return {settings.kafka_otlp_span_topic: limit, settings.kafka_otlp_log_topic: dict(limit),
            settings.kafka_apm_dlq_topic: {"max.message.bytes": str(settings.dlq_max_message_bytes)}}


def ensure_topics(settings: Settings, topics: list[str], timeout: float = 30.0,
                  config: dict[str, str] | None = None) -> None:
    """Create the topics that are missing, with `config` or else their entry in `topic_configs` (existing ones
    are left as they are)."""
    admin = AdminClient(common_config(settings))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    configs = topic_configs(settings)
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=settings.kafka_topic_partitions, replication_factor=-1,
                  config=config if config is not None else configs.get(t, {})) for t in missing],
        operation_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout)
            log.info("created topic %s (%d partitions)", topic, settings.kafka_topic_partitions)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise


def topic_max_message_bytes(settings: Settings, topic: str, timeout: float = 10.0) -> int | None:
    """The broker's `max.message.bytes` for `topic`; None when it cannot be read (no topic, no permission)."""
    admin = AdminClient(common_config(settings))
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource], request_timeout=timeout)[resource].result(timeout)
    except KafkaException as exc:
        log.warning("cannot read the configuration of topic %s: %s", topic, exc)
        return None
    entry = entries.get("max.message.bytes")
    return int(entry.value) if entry is not None and entry.value is not None else None

"""Celery settings that make at-least-once safe. Loaded by `panopticon.worker.create_celery`.

Connection URLs, queue names and time limits come from the validated settings (see
`panopticon.settings`); this file holds only the choices that do not change per deployment.
"""

# Tasks carry raw Kafka bytes: msgpack keeps them bytes (JSON would need base64), and it is compact.
task_serializer = "msgpack"
result_serializer = "json"
accept_content = ["msgpack", "json"]

# Ack only after the task returns: a worker that dies mid-batch leaves the task on the broker for
# another worker. Safe because every write is idempotent (deterministic ids, create-or-409).
task_acks_late = True
# A child killed by the OS (OOM, kill -9) requeues its task instead of acking it as failed.
task_reject_on_worker_lost = True
# One task at a time per child: a dying child takes at most one unacked batch with it, and long
# batches do not sit behind each other in one child's buffer.
worker_prefetch_multiplier = 1
# The bridge waits on results, so they must exist; they are only needed until it has read them.
task_ignore_result = False
result_expires = 3600
task_track_started = True
# Events let Flower show the tasks.
worker_send_task_events = True
task_send_sent_event = True
# Do not hijack the root logger: every process uses panopticon.logs.setup_logging.
worker_hijack_root_logger = False
broker_connection_retry_on_startup = True
timezone = "UTC"
enable_utc = True

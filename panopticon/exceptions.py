"""The project's own errors. Third-party errors are translated at the boundary that meets them.

    PanopticonError
    ├── ConfigError              a configuration value is missing or invalid (names the variable)
    ├── StorageError             the search engine failed us
    │   ├── EngineUnavailable    cannot reach it, timed out, or it answered 5xx/429: transient, retry later
    │   │   └── PartialAnswer    it answered, but some shards failed or the search timed out: the
    │   │                        numbers would be silently smaller, so they are refused (retry later)
    │   └── EngineRejected       it refused the request as invalid (4xx): retrying will not help
    │       └── EngineMisconfigured  our credentials (401/403) or its certificate (TLS) were refused: names
    │                                the variable to fix
    ├── KafkaUnavailable         Kafka did not acknowledge what we produced: transient, retry later
    ├── KafkaRejected            Kafka refused what we produced (too large, not allowed): retrying will not help
    ├── PipelineStopped          the dead-letter cap tripped: a bad deploy upstream, stop loudly
    └── QueryError               a dashboard question cannot be answered as asked
        ├── InvalidParameter     a request parameter is wrong (HTTP 400; names the parameter)
        └── QueryTimeout         the answer did not finish within QUERY_TIMEOUT_SECONDS (HTTP 503, retry)
"""

from __future__ import annotations


class PanopticonError(Exception):
    """Base of every error Panopticon raises on purpose."""


class ConfigError(PanopticonError):
    pass


class StorageError(PanopticonError):
    pass


class EngineUnavailable(StorageError):
    pass


class PartialAnswer(EngineUnavailable):
    pass


class EngineRejected(StorageError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineMisconfigured(EngineRejected):
    pass


class KafkaUnavailable(PanopticonError):
    pass


class KafkaRejected(PanopticonError):
    pass


class PipelineStopped(PanopticonError):
    pass


class QueryError(PanopticonError):
    pass


class QueryTimeout(QueryError):
    pass


class InvalidParameter(QueryError):
    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem

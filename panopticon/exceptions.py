"""The project's own errors. Third-party errors are translated at the boundary that meets them.

    PanopticonError
    ├── ConfigError              a configuration value is missing or invalid (names the variable)
    ├── StorageError             the search engine failed us
    │   ├── EngineUnavailable    cannot reach it, timed out, or it answered 5xx/429: transient, retry later
    │   └── EngineRejected       it refused the request as invalid (4xx): retrying will not help
    │       └── EngineMisconfigured  our credentials (401/403) or its certificate (TLS) were refused: names
    │                                the variable to fix
    ├── KafkaUnavailable         Kafka did not acknowledge what we produced: transient, retry later
    ├── PipelineStopped          the dead-letter cap tripped: a bad deploy upstream, stop loudly
    └── QueryError               a dashboard question cannot be answered as asked
        └── InvalidParameter     a request parameter is wrong (HTTP 400; names the parameter)
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


class EngineRejected(StorageError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineMisconfigured(EngineRejected):
    pass


class KafkaUnavailable(PanopticonError):
    pass


class PipelineStopped(PanopticonError):
    pass


class QueryError(PanopticonError):
    pass


class InvalidParameter(QueryError):
    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem

"""Fixtures of the fault suite: the integration fixtures (shared stack, namespace, store, processes),
a private stack for faults that hit a service, and the report every scenario writes a row to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Report
from tests.faults.services import PrivateStack
from tests.integration.conftest import namespace, processes, stack, store  # noqa: F401 - fixtures

_REPORT = Report()


@pytest.fixture(scope="session")
def report() -> Report:
    return _REPORT


@pytest.fixture(scope="session")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """Kafka / OpenSearch / Redis of our own, on other ports, started by the scenarios that need them."""
    private = PrivateStack(tmp_path_factory.mktemp("private-stack"))
    yield private
    private.down()


def pytest_terminal_summary(terminalreporter) -> None:
    if _REPORT.rows:
        terminalreporter.write_sep("=", "fault suite summary (tests/faults/results/latest.jsonl)")
        terminalreporter.write_line(_REPORT.table())

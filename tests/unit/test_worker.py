"""The worker's main process: what it does before its pool forks the processes that run the batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent  # no .env files here

# A process of its own: the engine clients must not be imported yet, and this test process has them already.
PROBE = """
import json, sys
from pathlib import Path
from celery.signals import worker_init
import panopticon.processing.tasks  # connects the handler: a worker imports its task modules before worker_init
from panopticon.settings import load_settings
from panopticon.worker import create_celery

app = create_celery(load_settings({"SEARCH_ENGINE": sys.argv[1]}, root=Path(sys.argv[2])))
before = {name: name in sys.modules for name in ("opensearchpy", "elasticsearch")}
worker_init.send(sender=type("WorkController", (), {"app": app})())  # the handler reads only .app
after = {name: name in sys.modules for name in ("opensearchpy", "elasticsearch")}
print(json.dumps([before, after]))
"""


@pytest.mark.parametrize(("engine", "imported"), [
    ("auto", {"opensearchpy": True, "elasticsearch": False}),  # detect_engine probes with opensearch-py
    ("opensearch", {"opensearchpy": True, "elasticsearch": False}),
    ("elasticsearch", {"opensearchpy": True, "elasticsearch": True}),
])
def test_the_engine_client_is_imported_before_the_pool_forks(engine: str, imported: dict[str, bool]) -> None:
    """Else every pool process imported it on its first batch: 0.14 s of CPU, most of that batch's set-up."""
    out = subprocess.run([sys.executable, "-c", PROBE, engine, str(HERE)], capture_output=True, text=True,
                         check=True, timeout=60)
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert before == {"opensearchpy": False, "elasticsearch": False}
    assert after == imported

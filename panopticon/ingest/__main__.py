"""`python -m panopticon.ingest`: run the Kafka bridge (the Procfile's `bridge`)."""

import logging
import sys

from panopticon.exceptions import PipelineStopped
from panopticon.ingest.bridge import run_bridge
from panopticon.logs import setup_logging
from panopticon.settings import load_or_exit
from panopticon.worker import create_celery


def main() -> int:
    settings = load_or_exit()
    setup_logging(settings, "bridge")
    try:
        run_bridge(settings, create_celery(settings))
    except PipelineStopped as exc:
        logging.getLogger("panopticon.bridge").critical("PIPELINE STOPPED: %s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

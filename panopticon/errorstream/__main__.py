"""`python -m panopticon.errorstream`: run the error-log relay (the Procfile's `relay`)."""

import sys

from panopticon.errorstream.relay import run_relay
from panopticon.logs import setup_logging
from panopticon.settings import load_or_exit


def main() -> int:
    settings = load_or_exit()
    setup_logging(settings, "relay")
    run_relay(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

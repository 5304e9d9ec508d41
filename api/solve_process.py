"""Entry point of one solve process: `python -m api.solve_process DATABASE_URL RUN_ID`."""

from __future__ import annotations

import logging
import sys

from api.jobs import execute_run

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    execute_run(sys.argv[1], sys.argv[2])

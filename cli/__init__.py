"""The `offeropt` command line: each command group registers its subcommands on one parser;
one `ExitCode` for all of them."""

import os
import time


def _process_start() -> float:
    """When this process began, on the monotonic clock: a command run from the shell counts its
    interpreter's start and its imports in its time limit (read from Linux's /proc; elsewhere,
    from this import)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - max(0.0, age)


IMPORTED = _process_start()

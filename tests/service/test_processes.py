"""The harness of tests/server.py: a process that fails to come up is stopped, whole, and the
failure says why, with the process's own standard error."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.server import Child, Processes, Server, free_port


def _group_gone(child: Child, timeout: float = 60.0) -> bool:
    """No process of the group is left (an orphan killed with its group stays a zombie
    until init reaps it, hence the wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_server_that_exits_fails_at_once_with_its_stderr(tmp_path: Path) -> None:
    server = Server(tmp_path, OFFEROPT_DATABASE_URL="nosuchdialect://nowhere")
    with pytest.raises(AssertionError, match=r"(?s)exited with code.*nosuchdialect"):
        server.start(timeout=600)  # fails when the process ends, not when the timeout expires
    assert server.child is not None and _group_gone(server.child)


def test_a_readiness_timeout_stops_the_whole_group(processes: Processes) -> None:
    # a parent with a child of its own, neither of them listening anywhere
    child = processes.start([sys.executable, "-c", "import subprocess, sys, time; "
                             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                             "print('up', flush=True); print('a complaint', file=sys.stderr, "
                             "flush=True); time.sleep(600)"], name="silent")
    child.wait_for_output("up", timeout=120)
    child.wait_for_output("a complaint", timeout=120, stream="stderr")
    with pytest.raises(AssertionError, match=r"(?s)within 1 s.*still running.*a complaint"):
        child.wait_ready(f"http://127.0.0.1:{free_port()}/readyz", timeout=1)
    child.stop(grace=60)
    assert _group_gone(child)  # the grandchild went with its parent


def test_stop_kills_a_group_that_ignores_sigterm(processes: Processes) -> None:
    child = processes.start([sys.executable, "-c", "import signal, time; "
                             f"signal.signal({int(signal.SIGTERM)}, signal.SIG_IGN); "
                             "print('up', flush=True); time.sleep(600)"], name="stubborn")
    child.wait_for_output("up", timeout=120)
    child.stop(grace=0.5)
    assert child.proc.returncode == -signal.SIGKILL and _group_gone(child)

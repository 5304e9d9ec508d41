"""The main job: `offeropt demo` solves, publishes, serves, and its printed curl calls work."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.server import free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]


def test_printed_curl_calls_work_as_printed(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OFFEROPT_DATA_DIR": str(tmp_path)}
    for key in ("OFFEROPT_MERCHANDISER_TOKENS", "OFFEROPT_STOREFRONT_TOKENS",
                "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "demo", "--bind",
                             f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip().endswith("/openapi.json'"):
                break
        text = "\n".join(lines)
        assert "demo-shop: optimal" in text and "published as version 1" in text
        commands = [c.strip() for c in re.sub(r"\\\n\s*", " ", text).splitlines()
                    if c.strip().startswith("curl ")]
        assert len(commands) == 7
        _wait_until_serving(port)
        for command in commands:
            done = subprocess.run(command.replace("curl -s", "curl -sf", 1), shell=True, cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            assert json.loads(done.stdout)  # every call answers with a JSON body
        offers = subprocess.run(commands[0], shell=True, capture_output=True, text=True, cwd=ROOT)
        assert json.loads(offers.stdout)["offers"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_until_serving(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/readyz"],
                               capture_output=True)
        if probe.returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("the demo service never became ready")

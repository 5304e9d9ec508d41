"""The main job: `offeropt demo` solves, publishes, serves, and its printed curl calls work."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.constants import ROOT
from tests.server import Processes, free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")]


def test_printed_curl_calls_work_as_printed(tmp_path: Path, processes: Processes) -> None:
    port = free_port()
    env = {**os.environ, "OFFEROPT_DATA_DIR": str(tmp_path)}
    for key in ("OFFEROPT_MERCHANDISER_TOKENS", "OFFEROPT_STOREFRONT_TOKENS",
                "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(key, None)
    # stopped with its whole process group by the `processes` fixture, also on failure
    demo = processes.start([sys.executable, "-m", "cli", "demo", "--bind",
                            f"127.0.0.1:{port}"], name="demo", cwd=ROOT, env=env)
    printed = demo.wait_for_output("/openapi.json'", timeout=300)
    text = printed[:printed.index("/openapi.json'") + len("/openapi.json'")]
    assert "demo-shop: optimal" in text and "published as version 1" in text, demo.describe()
    commands = [c.strip() for c in re.sub(r"\\\n\s*", " ", text).splitlines()
                if c.strip().startswith("curl ")]
    assert len(commands) == 7, text
    demo.wait_ready(f"http://127.0.0.1:{port}/readyz")
    for command in commands:
        done = subprocess.run(command.replace("curl -s", "curl -sf --max-time 60", 1), shell=True,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stdout, done.stderr, demo.describe())
        assert json.loads(done.stdout)  # every call answers with a JSON body
    offers = subprocess.run(commands[0].replace("curl -s", "curl -s --max-time 60", 1), shell=True,
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert json.loads(offers.stdout)["offers"]

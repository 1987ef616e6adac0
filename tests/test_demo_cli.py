"""`make demo` (`carepath demo`) as a user runs it: it completes, warns about nothing a user cannot act on,
and prints each message once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.utils.databases import embedded_only

ROOT = Path(__file__).resolve().parent.parent

pytestmark = embedded_only


def test_demo_runs_clean_and_prints_each_message_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
    env |= {
        "CAREPATH_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "CAREPATH_ENV_FILE": "",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("carepath")), "demo"],  # the console script
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not re.search(r"warning|do not exist", output, re.IGNORECASE), output
    [subject] = re.findall(r"Subject: (.+)", output)
    assert output.count(subject) == 1
    texts = re.findall(r"\[sent\] to \S+ via local:\n\s+(.+)", output)
    assert len(texts) == 3 and all(output.count(text) == 1 for text in texts)

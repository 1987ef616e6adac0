"""`carepath import … --json` as an operator runs it: the installed console script, an embedded SQLite file, no
Prefect server; exact JSON on stdout, exit 0 when the import ran, 2 with a reason when the file cannot be."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.utils.databases import embedded_only

ROOT = Path(__file__).resolve().parent.parent
pytestmark = embedded_only
SCRIPT = str(Path(sys.executable).with_name("carepath"))


def carepath(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
    env |= {
        "CAREPATH_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}",
        "CAREPATH_ENV_FILE": "",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    return subprocess.run([SCRIPT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_import_contacts_json_twice_then_refusals(tmp_path: Path) -> None:
    assert carepath(tmp_path, "migrate").returncode == 0
    csv = tmp_path / "people.csv"
    csv.write_bytes(
        "\ufefflast_name,first_name,email,account_number,phone\r\n"
        "Georgiou,Sofia,sofia@example.com,,+306912345678\r\n"
        "Nowak,Piotr,piotr(at)example.com,,\r\n"
        "Silva,Ana,ana@example.com,,912345678\r\n"
        "Rossi,Marco,marco@example.com,ACC-NOPE,\r\n".encode()
    )

    first = carepath(tmp_path, "import", "contacts", str(csv), "--json")
    second = carepath(tmp_path, "import", "contacts", str(csv), "--json")

    for run in (first, second):
        assert run.returncode == 0, run.stderr
        assert not re.search(r"warning|error|traceback", run.stdout + run.stderr, re.IGNORECASE), run.stderr
    expected = {"email_is_valid": 1, "phone_is_e164": 1, "account_number_is_known": 1}
    assert first.stdout == json.dumps({"loaded": 1, "quarantined": 3, "failed_expectations": expected}) + "\n"
    assert json.loads(second.stdout) == {"loaded": 0, "quarantined": 3, "failed_expectations": expected}

    missing = carepath(tmp_path, "import", "contacts", str(tmp_path / "nope.csv"), "--json")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("email,name\nx@example.com,X\n")
    header = carepath(tmp_path, "import", "contacts", str(wrong), "--json")
    kind = carepath(tmp_path, "import", "contacts", str(tmp_path / "people.parquet"), "--json")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "no such file" in missing.stderr
    assert (
        header.returncode == 2
        and "missing column(s) first_name, last_name, phone, account_number" in header.stderr
    )
    assert kind.returncode == 2 and "unsupported file type '.parquet': expected .csv" in kind.stderr

"""docs/examples/enrichment_client.py against a real daphne and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from imports.models import ImportJob
from tests.fixtures.enrichment import bom_csv

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def test_the_client_example_uploads_starts_and_follows_to_the_end(
    live, operator, catalogue, run_worker, tmp_path
):
    path = tmp_path / "board.csv"
    path.write_bytes(
        bom_csv(
            [
                ("U1", "1", "LM358D", "TI", "", ""),
                ("U2", "1", "LM358D", "", "", ""),
                ("D1", "10", "BAS16J,115", "", "", ""),
            ]
        )
    )
    token = Token.objects.get_or_create(user=operator)[0].key
    client = subprocess.Popen(
        [sys.executable, "docs/examples/enrichment_client.py", live.url, str(path)],
        cwd=ROOT,
        env={**os.environ, "INTAKE_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ImportJob.objects.filter(kind="bom_enrichment").exists():
            assert time.monotonic() < deadline, "the client never started a run"
            assert client.poll() is None, client.stdout.read()
            time.sleep(0.2)
        time.sleep(0.5)  # the client is on the stream
        run_worker()
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, out
    assert "BOM " in out and "3 lines" in out
    assert "snapshot" in out and "enrichment.completed" in out
    assert "total cost 0.40 USD" in out  # 0.20 (TI LM358D) + 10 x 0.02 (below the 3000 break)
    assert "line 3 LM358D: pick one of LM358D" in out

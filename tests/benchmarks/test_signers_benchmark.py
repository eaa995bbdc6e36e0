"""The signer benchmark runs at smoke size, so it cannot rot; the bounds are
generous because a shared 2-CPU machine measures noisily in 0.3 seconds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support import REPOSITORY, require_tool, run

pytestmark = pytest.mark.benchmark


def test_signer_benchmark_runs_and_reports_every_figure(tmp_path: Path) -> None:
    require_tool("softhsm2-util")
    figures = tmp_path / "figures.json"

    result = run(
        [sys.executable, "-m", "benchmarks.signers", "--smoke", "--json", str(figures)],
        cwd=REPOSITORY,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "raw pkcs11/s" in result.stdout
    reported = json.loads(figures.read_text())
    assert [row["key"] for row in reported["signing"]] == ["ec-p256", "rsa-2048"]
    for row in reported["signing"]:
        assert row["raw_per_second"] > 10
        assert row["signer_per_second"] > 10
        # The target is 0.8 at full size; a smoke run only shows the signer
        # is not pathologically slower than raw python-pkcs11.
        assert row["ratio"] > 0.2
    assert [row["backend"] for row in reported["issuance"]] == ["pkcs11", "file"]
    for row in reported["issuance"]:
        assert row["per_second"] > 1

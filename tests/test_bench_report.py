"""The benchmark report and the CI regression gate, on JSON written here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gradkit import cli
from gradkit.benchmarks.report import load, rows_from_json

ROOT = Path(__file__).resolve().parents[1]


def _results(path: Path, gradkit_ms: float) -> Path:
    def entry(size, impl, seconds):
        return {"group": f"mlp-{size}", "stats": {"min": seconds},
                "extra_info": {"size": size, "impl": impl, "flops": 1e9}}
    path.write_text(json.dumps({"benchmarks": [
        entry("small", "numpy-floor", 0.001), entry("small", "gradkit-numpy", gradkit_ms / 1e3),
        {"group": "overhead", "stats": {"min": 0.002},
         "extra_info": {"impl": "gradkit-numpy", "ops": 200}}]}))
    return path


def test_rows_are_ratios_to_the_floor_of_the_same_run(tmp_path):
    rows = rows_from_json(load(_results(tmp_path / "r.json", 2.5)))
    assert [(r["impl"], r["ratio_to_floor"]) for r in rows] == [
        ("numpy-floor", 1.0), ("gradkit-numpy", 2.5)]
    assert rows[1]["gflops"] == 1e9 / 0.0025 / 1e9


def test_gradkit_bench_reports_a_json_and_draws_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the bench extra draws the picture
    results = _results(tmp_path / "r.json", 1.5)
    assert cli.main(["bench", "--json", str(results), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gradkit-numpy" in out and "1.50" in out and "10.00 us/op" in out
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradkit_bench_on_a_file_that_is_not_results(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert cli.main(["bench", "--json", str(bad)]) == 2
    assert "not pytest-benchmark JSON" in capsys.readouterr().err


def _gate(new: Path, baseline: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "ci" / "bench_gate.py"), str(new),
                           str(baseline)], capture_output=True, text=True)


def test_gate_passes_within_30_percent_and_fails_beyond(tmp_path):
    baseline = _results(tmp_path / "base.json", 2.0)
    assert _gate(_results(tmp_path / "ok.json", 2.5), baseline).returncode == 0
    worse = _gate(_results(tmp_path / "worse.json", 2.7), baseline)
    assert worse.returncode == 1 and "REGRESSION" in worse.stdout


def test_blas_report_warns_when_openblas_runs_older_kernels_than_the_cpu_has():
    from gradkit.benchmarks.blas import warnings_for
    haswell = [{"internal_api": "openblas", "architecture": "Haswell"}]
    assert warnings_for(haswell, avx512=False) == []
    assert warnings_for([{"internal_api": "openblas", "architecture": "SkylakeX"}], True) == []
    (warning,) = warnings_for(haswell, True, {"OPENBLAS_CORETYPE": "Haswell"})
    assert "Haswell kernels on a CPU with AVX-512" in warning and "unset OPENBLAS_CORETYPE" in warning


def test_info_and_the_report_name_the_blas(capsys, tmp_path):
    pytest.importorskip("threadpoolctl")
    from gradkit.benchmarks.blas import record
    assert cli.main(["info"]) == 0
    assert "BLAS: openblas" in capsys.readouterr().out or not record()["blas"]
    results = _results(tmp_path / "r.json", 1.5)
    data = json.loads(results.read_text())
    data.setdefault("machine_info", {})["gradkit_blas"] = record()
    results.write_text(json.dumps(data))
    assert cli.main(["bench", "--json", str(results), "--out", str(tmp_path)]) == 0
    assert "BLAS:" in capsys.readouterr().out or not record()["blas"]


def test_report_shows_each_familys_paired_ratio_to_pytorch(tmp_path):
    from gradkit.benchmarks.report import overhead_paired_rows, table
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"benchmarks": [
        {"group": "overhead-paired", "stats": {"min": 0.001},
         "extra_info": {"impl": f"gradkit-{backend}", "family": family, "paired_ratio": ratio,
                        "pairs": 100}}
        for backend, family, ratio in [("numpy", "tanh", 1.25), ("numba", "add", 0.75)]]}))
    data = load(path)
    assert [(r["family"], r["impl"], r["ratio_to_torch"]) for r in overhead_paired_rows(data)] \
        == [("add", "gradkit-numba", 0.75), ("tanh", "gradkit-numpy", 1.25)]
    text = table(data)
    assert "per-op cost / PyTorch eager's" in text
    assert "tanh       gradkit-numpy                1.25" in text

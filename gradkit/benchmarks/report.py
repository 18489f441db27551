"""Turn pytest-benchmark JSON into the table users read: ms/step, GFLOP/s and the
ratio to the NumPy floor of the same run, per size and implementation.

>>> rows = rows_from_json({"benchmarks": [
...     {"group": "mlp-small", "stats": {"min": 0.002},
...      "extra_info": {"size": "small", "impl": "numpy-floor", "flops": 4e6}},
...     {"group": "mlp-small", "stats": {"min": 0.003},
...      "extra_info": {"size": "small", "impl": "gradkit-numpy", "flops": 4e6}}]})
>>> [(r["impl"], r["ratio_to_floor"]) for r in rows]
[('numpy-floor', 1.0), ('gradkit-numpy', 1.5)]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SIZE_ORDER = {"small": 0, "medium": 1, "large": 2}
# The fastest round: on a shared 2-core machine the median of a 0.2 ms step moves by
# 2x between runs, the minimum by a few percent.
STAT = "min"


def load(path: str | Path) -> dict[str, Any]:
    """A pytest-benchmark JSON file, with a clear error when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read benchmark results {path}: {exc}") from exc
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{path} is not pytest-benchmark JSON (no 'benchmarks' list)")
    return data


def rows_from_json(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per MLP benchmark: size, impl, ms/step, GFLOP/s, ratio to the floor."""
    mlp = [b for b in data["benchmarks"] if str(b.get("group", "")).startswith("mlp-")]
    floors = {b["extra_info"]["size"]: b["stats"][STAT] for b in mlp
              if b["extra_info"].get("impl") == "numpy-floor"}
    rows = []
    for b in mlp:
        info, seconds = b["extra_info"], b["stats"][STAT]
        floor = floors.get(info["size"])
        rows.append({"size": info["size"], "impl": info["impl"], "ms_per_step": seconds * 1e3,
                     "gflops": info.get("flops", 0) / seconds / 1e9,
                     "ratio_to_floor": round(seconds / floor, 4) if floor else None})
    rows.sort(key=lambda r: (SIZE_ORDER.get(r["size"], 9), r["impl"] != "numpy-floor", r["impl"]))
    return rows


def paired_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The gate's numbers: median of per-pair (gradkit step / floor step) time ratios."""
    return [{"size": b["extra_info"]["size"], "impl": b["extra_info"]["impl"],
             "ratio_to_floor": b["extra_info"]["paired_ratio"]}
            for b in data["benchmarks"] if str(b.get("group", "")).startswith("paired-")]


def overhead_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Microseconds per op of each op family's ~200-op chain (forward + backward), per
    implementation, sorted by family."""
    rows = [{"family": b["extra_info"].get("family", "mul+add"), "impl": b["extra_info"]["impl"],
             "us_per_op": b["stats"][STAT] / b["extra_info"]["ops"] * 1e6}
            for b in data["benchmarks"] if b.get("group") == "overhead"]
    return sorted(rows, key=lambda r: (r["family"], r["impl"]))


def overhead_paired_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each op family's per-op cost as a ratio to PyTorch eager's: the median of the
    per-pair ratios of gradkit's chain and PyTorch's, run in turn."""
    rows = [{"family": b["extra_info"]["family"], "impl": b["extra_info"]["impl"],
             "ratio_to_torch": b["extra_info"]["paired_ratio"]}
            for b in data["benchmarks"] if b.get("group") == "overhead-paired"]
    return sorted(rows, key=lambda r: (r["family"], r["impl"]))


def other_rows(data: dict[str, Any], group: str) -> list[dict[str, Any]]:
    return [b["extra_info"] for b in data["benchmarks"] if b.get("group") == group]


def _section(title: str, rows: list[str]) -> list[str]:
    """A titled block of indented rows after a blank line; nothing when there are none."""
    return ["", title] + [f"  {row}" for row in rows] if rows else []


def table(data: dict[str, Any]) -> str:
    """The report as text."""
    lines = []
    blas = data.get("machine_info", {}).get("gradkit_blas")
    if blas:  # what every matmul of the run ran on
        lines += [f"BLAS: {b['internal_api']} {b['version']} ({b['architecture']} kernels, "
                  f"{b['num_threads']} threads)" for b in blas["blas"]]
        lines += [f"warning: {w}" for w in blas["warnings"]] + [""]
    lines.append(f"{'size':8s} {'implementation':22s} {'ms/step':>10s} {'GFLOP/s':>9s} "
                 f"{'x floor':>8s}")
    for r in rows_from_json(data):
        ratio = f"{r['ratio_to_floor']:.2f}" if r["ratio_to_floor"] is not None else "-"
        lines.append(f"{r['size']:8s} {r['impl']:22s} {r['ms_per_step']:10.3f} "
                     f"{r['gflops']:9.2f} {ratio:>8s}")
    lines += _section("paired ratio to the floor (gradkit and floor steps alternate, peers "
                      "in blocks of steps; median of the per-pair ratios):",
                      [f"{r['size']:8s} {r['impl']:22s} {r['ratio_to_floor']:6.2f}"
                       for r in paired_rows(data)])
    lines += _section("per-op overhead (a chain of ~200 small ops of one family, forward + "
                      "backward):",
                      [f"{r['family']:10s} {r['impl']:24s} {r['us_per_op']:8.2f} us/op"
                       for r in overhead_rows(data)])
    lines += _section("per-op cost / PyTorch eager's (the chains run in turn; median of the "
                      "per-pair ratios):",
                      [f"{r['family']:10s} {r['impl']:24s} {r['ratio_to_torch']:8.2f}"
                       for r in overhead_paired_rows(data)])
    lines += _section("peak memory of one medium step:",
                      [f"{m['impl']:22s} {m['peak_bytes'] / 2**20:8.1f} MiB"
                       for m in other_rows(data, "peak-memory")])
    lines += _section("first calls (new process; cold = empty kernel and plan caches, warm = "
                      "cached; a compiled step's plan compiles on its second call):",
                      [f"{f['impl']:24s} cold first/second step {f['cold_first_step_s']:.2f}"
                       f" / {f['cold_second_step_s']:.2f} s, warm "
                       f"{f['warm_first_step_s']:.2f} / {f['warm_second_step_s']:.2f} s, "
                       f"steady step "
                       f"{f.get('steady_step_s', f['warm_second_step_s']) * 1e3:.2f} ms"
                       for f in other_rows(data, "first-call")])
    return "\n".join(lines)


def plot(data: dict[str, Any], path: str | Path) -> None:
    """Ratio to the floor per size and implementation, as a grouped bar chart PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in rows_from_json(data) if r["ratio_to_floor"] is not None]
    sizes = sorted({r["size"] for r in rows}, key=lambda s: SIZE_ORDER.get(s, 9))
    impls = sorted({r["impl"] for r in rows}, key=lambda i: (i != "numpy-floor", i))
    width = 0.8 / max(len(impls), 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, impl in enumerate(impls):
        values = [next((r["ratio_to_floor"] for r in rows if r["size"] == s and r["impl"] == impl),
                       0.0) for s in sizes]
        ax.bar([i + k * width for i in range(len(sizes))], values, width, label=impl)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(sizes))], sizes)
    ax.set_ylabel("time / NumPy floor (lower is faster)")
    ax.set_title("MLP training step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

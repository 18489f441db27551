"""Regression gate: fail when a backend's ratio to the NumPy floor got > 30% worse.

Usage: python ci/bench_gate.py NEW.json BASELINE.json [--tolerance 0.30]

Compares ratios (gradkit time / floor time, both from the same run), not absolute
times, so a slower or busier machine does not fail the gate. Rows present in only
one of the files are listed but do not fail it (a backend missing on this machine).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradkit.benchmarks.report import load, paired_rows, rows_from_json  # noqa: E402


def ratios(path: str) -> dict[tuple[str, str], float]:
    """Paired ratios when the run has them (robust), else ratios of the separate timings."""
    data = load(path)
    rows = paired_rows(data) or rows_from_json(data)
    return {(r["size"], r["impl"]): r["ratio_to_floor"] for r in rows
            if r["ratio_to_floor"] is not None and r["impl"].startswith("gradkit-")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new")
    parser.add_argument("baseline")
    parser.add_argument("--tolerance", type=float, default=0.30)
    args = parser.parse_args()
    new, base = ratios(args.new), ratios(args.baseline)
    failed = False
    for key in sorted(set(new) | set(base)):
        if key not in new or key not in base:
            print(f"{key[0]:7s} {key[1]:16s} only in {'baseline' if key in base else 'new run'}")
            continue
        limit = base[key] * (1 + args.tolerance)
        verdict = "ok" if new[key] <= limit else "REGRESSION"
        failed |= verdict != "ok"
        print(f"{key[0]:7s} {key[1]:16s} ratio {new[key]:.2f} (baseline {base[key]:.2f}, "
              f"limit {limit:.2f}) {verdict}")
    if not new:
        print("no gradkit rows in the new run", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

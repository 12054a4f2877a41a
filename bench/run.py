"""Run the benchmarks and print the result table (Markdown) with the machine it ran on.

    python bench/run.py [--only parse,start-up,scan,run] [--samples N] [--batches N]

Progress goes to stderr, the table to stdout. docs/benchmarks.md explains each figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_parse import ParseSettings, parse_benchmark, start_up_benchmark  # noqa: E402
from bench_run import run_benchmark  # noqa: E402
from bench_scan import ScanSettings, scan_benchmark  # noqa: E402
from common import TABLE_HEADER, Row, log  # noqa: E402

BENCHMARKS = ("parse", "start-up", "scan", "run")


def machine_description() -> list[str]:
    """Return the facts a reader needs to compare these figures with their own."""
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- CPU: {cpu}, nproc {os.cpu_count()}",
        f"- load average at the end (1, 5, 15 min): {load}",
        f"- Python {platform.python_version()}, Airflow {metadata.version('apache-airflow')}, "
        f"dag-factory {_version('dag-factory')}, {git_version.strip()}",
        "- free -h:",
        "",
        *(f"      {line}" for line in memory.splitlines()),
    ]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--samples", type=int, default=3, help="samples per figure (default 3)")
    parser.add_argument(
        "--batches", type=int, default=500,
        help="registered batches for the parse and start-up benchmarks (default 500)",
    )
    parser.add_argument(
        "--parse-timeout", type=float, default=150,
        help="seconds one parse of the factory's file may take before it counts as failed",
    )
    parser.add_argument(
        "--commits", type=int, default=100_000, help="commits of the scanned history"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    started = time.perf_counter()
    rows: list[Row] = []
    if "parse" in chosen:
        rows += parse_benchmark(
            ParseSettings(batches=args.batches, samples=args.samples, timeout_s=args.parse_timeout)
        )
    if "start-up" in chosen:
        rows += start_up_benchmark(max(args.samples, 5), batches=args.batches)
    if "scan" in chosen:
        settings = ScanSettings(
            commits=args.commits, short_commits=args.commits // 10, samples=args.samples
        )
        rows += scan_benchmark(settings)
    if "run" in chosen:
        rows += run_benchmark(args.samples)
    elapsed = time.perf_counter() - started
    log(f"done in {elapsed / 60:.1f} min")

    print(TABLE_HEADER)
    for row in rows:
        print(row.as_markdown())
    print()
    print("Commands:")
    for row in rows:
        print(f"- {row.figure}: `{row.command}`")
    print()
    missed = sum(row.verdict == "NO" for row in rows)
    print(f"Targets missed: {missed}. Took {elapsed / 60:.1f} min on:")
    print("\n".join(machine_description()))
    # A missed target is a finding to report, not a failure of the benchmark run.
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the benchmarks: sampling subprocesses, medians, ratios and the result table."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CHECKOUT = BENCH_DIR.parent
PYTHON = sys.executable


class ProbeError(RuntimeError):
    """A measuring subprocess failed or printed no result."""


class ProbeTimeout(ProbeError):
    """A measuring subprocess ran longer than its time limit and was stopped."""


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """Yield a new temporary folder and delete it afterwards, even when the benchmark fails."""
    path = Path(tempfile.mkdtemp(prefix=f"rollback-bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def airflow_env(airflow_home: Path, dags_folder: Path, **extra: str) -> dict[str, str]:
    """Return the environment of an Airflow subprocess that touches only ``airflow_home``.

    dag-factory, installed for the comparison, registers an Airflow plugin that reports
    DAG runs to a remote telemetry endpoint. The three opt-outs it reads keep it silent,
    because benchmarks must not reach any host but this one.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "ROLLBACK_", "_AIRFLOW_PARSING_CONTEXT"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(airflow_home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            # The benchmark sets its own time limit; Airflow's 30 s default would turn a slow
            # parse into an import error instead of a figure.
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "0",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_NO_ANALYTICS": "true",
        }
    )
    env.update(extra)
    return env


def run_probe(
    argv: list[str], env: dict[str, str], timeout_s: float, cwd: Path | None = None
) -> dict[str, Any]:
    """Run a probe script and return the JSON object on the last line of its stdout.

    The result also carries ``process_s``, the wall time of the whole subprocess from
    start to exit, interpreter start-up and imports included.
    """
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            [PYTHON, *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        name = " ".join(Path(part).name for part in argv[:2])
        raise ProbeTimeout(f"{name} did not finish within {timeout_s:.0f} s") from None
    process_s = time.perf_counter() - started
    # Airflow may write log lines to stdout too; the probe's result is the last JSON line.
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise ProbeError(
            f"{' '.join(argv)} exited {completed.returncode}:\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
        )
    result = json.loads(lines[-1])
    result["process_s"] = process_s
    return result


@dataclass
class Samples:
    """Repeated measurements of one figure, in seconds (or other ``unit``)."""

    values: list[float] = field(default_factory=list)
    unit: str = "s"

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self) -> str:
        """Return the range of the samples, to show how noisy the median is."""
        if len(self.values) < 2 or min(self.values) == max(self.values):
            return ""
        low = format_value(min(self.values), self.unit)
        high = format_value(max(self.values), self.unit)
        return f"{low}-{high}"


def format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if value == int(value):
        return f"{value:,.0f} {unit}"
    return f"{value:g} {unit}"


@dataclass
class Row:
    """One line of the result table: a figure, its reference, their ratio and the target."""

    figure: str
    ours: str
    reference: str
    ratio: float | None
    target: str
    verdict: str
    command: str

    def as_markdown(self) -> str:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f} x"
        cells = (self.figure, self.ours, self.reference, ratio, self.target, self.verdict)
        return "| " + " | ".join(cells) + " |"


TABLE_HEADER = (
    "| figure | ours (median) | reference (median) | ratio | target | met |\n"
    "|---|---|---|---|---|---|"
)


def describe(samples: Samples) -> str:
    spread = samples.spread()
    text = format_value(samples.median, samples.unit)
    return f"{text} ({spread})" if spread else text


def ratio_row(
    figure: str,
    ours: Samples,
    reference: Samples,
    reference_name: str,
    limit: float | None,
    target: str,
    command: str,
) -> Row:
    """Build a row that compares two medians; the target is met when the ratio is <= limit."""
    ratio = ours.median / reference.median
    verdict = ""
    if limit is not None:
        verdict = "yes" if ratio <= limit else "NO"
    return Row(
        figure=figure,
        ours=describe(ours),
        reference=f"{reference_name}: {describe(reference)}",
        ratio=ratio,
        target=target,
        verdict=verdict,
        command=command,
    )


def log(message: str) -> None:
    """Report progress on stderr, so stdout carries only the result table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

"""Benchmark 3: scanning git history for batches, against ``git log --name-only`` (the floor).

Two generated repositories: one with 100,000 commits on branch base, one with 10,000,
each with 1,000 newer commits on main. The initial scan reads base; the incremental
scan reads main from the head of base, as the watcher does from its watermark, with the
number of commits of base given, as the watcher reads it from its registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import BENCH_DIR, Row, Samples, airflow_env, log, ratio_row, run_probe, scratch_dir
from git_history import History, generate_history

PROBE = str(BENCH_DIR / "probe_scan.py")


@dataclass(frozen=True)
class ScanSettings:
    commits: int = 100_000
    short_commits: int = 10_000
    new_commits: int = 1_000
    samples: int = 3
    timeout_s: float = 600


def scan_benchmark(settings: ScanSettings) -> list[Row]:
    with scratch_dir("scan") as root:
        env = airflow_env(root / "airflow", root)
        log(f"scan: generating {settings.commits} + {settings.new_commits} commits")
        long = generate_history(root / "long", settings.commits, settings.new_commits)
        log(f"scan: generating {settings.short_commits} + {settings.new_commits} commits")
        short = generate_history(root / "short", settings.short_commits, settings.new_commits)
        scan, floor = Samples(), Samples()
        incremental = {"long": Samples(), "short": Samples()}
        # The first reads bring the pack files into the page cache for every sample alike.
        run_probe([PROBE, "git-log", str(long.path), "main"], env, settings.timeout_s)
        run_probe([PROBE, "git-log", str(short.path), "main"], env, settings.timeout_s)
        for round_number in range(1, settings.samples + 1):
            log(f"scan: round {round_number}/{settings.samples}")
            scan.add(_scan(long, env, settings)["seconds"])
            floor.add(run_probe([PROBE, "git-log", str(long.path), "base"], env,
                                settings.timeout_s)["seconds"])
            for name, history in (("long", long), ("short", short)):
                result = _scan(history, env, settings, since=history.sha("base"))
                incremental[name].add(result["seconds"])
        return _rows(settings, scan, floor, incremental)


def _scan(history: History, env: dict[str, str], settings: ScanSettings,
          since: str | None = None) -> dict:
    argv = [PROBE, "scan", str(history.path), "main" if since else "base"]
    if since:
        argv += ["--since", since, "--since-sequence", str(history.base_commits)]
    result = run_probe(argv, env, settings.timeout_s)
    expected = history.new_commits if since else history.base_commits
    if result["commits"] != expected:
        raise RuntimeError(f"scan read {result['commits']} commits, expected {expected}")
    return result


def _rows(
    settings: ScanSettings, scan: Samples, floor: Samples, incremental: dict[str, Samples]
) -> list[Row]:
    command = "bench/run.py --only scan"
    second = Samples([1.0])
    return [
        ratio_row(
            f"initial scan, {settings.commits:,} commits", scan, floor,
            "git log --name-only", 1.5, "<= 1.5 x", command,
        ),
        ratio_row(
            f"incremental scan, {settings.new_commits:,} new on {settings.commits:,}",
            incremental["long"], second, "1 s", 1.0, "< 1 s", command,
        ),
        ratio_row(
            f"incremental scan, {settings.new_commits:,} new: {settings.commits:,} vs "
            f"{settings.short_commits:,} commits of history",
            incremental["long"], incremental["short"],
            f"on {settings.short_commits:,}", 1.25, "<= 1.25 x (no growth)", command,
        ),
    ]

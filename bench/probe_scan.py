"""Time one scan of a repository's history in this fresh process and print the result as JSON.

    python bench/probe_scan.py scan REPO REV [--since SHA [--since-sequence N]]
    python bench/probe_scan.py git-log REPO REV

``scan`` times ``scan_repository``. With ``--since-sequence``, an incremental scan takes the
number of commits before ``--since`` as given, as the git watcher does from its registry;
without it, git counts them. ``git-log`` times ``git log --name-only`` over the same
revision, reading its whole output through a pipe as the scan does, and is the floor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time

_READ_BYTES = 1 << 20


def time_git_log(repo: str, rev: str) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        ["git", "-C", repo, "log", "--name-only", rev], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    received = 0
    while chunk := process.stdout.read1(_READ_BYTES):
        received += len(chunk)
    if process.wait() != 0:
        raise SystemExit(f"git log failed with exit code {process.returncode}")
    return {"seconds": time.perf_counter() - started, "bytes": received}


def time_scan(
    repo: str, rev: str, since: str | None, since_sequence: int | None
) -> dict[str, float]:
    from rollback_coordinator.core.batches import scan_repository

    started = time.perf_counter()
    result = scan_repository(repo, rev=rev, since=since, since_sequence=since_sequence)
    return {
        "seconds": time.perf_counter() - started,
        "commits": result.commit_count,
        "batches": len(result.batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("scan", "git-log"))
    parser.add_argument("repo")
    parser.add_argument("rev")
    parser.add_argument("--since")
    parser.add_argument("--since-sequence", type=int)
    args = parser.parse_args()
    if args.mode == "git-log":
        result = time_git_log(args.repo, args.rev)
    else:
        result = time_scan(args.repo, args.rev, args.since, args.since_sequence)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

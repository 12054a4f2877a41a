"""Generated git histories for the scan benchmark, written with ``git fast-import``.

The history looks like a busy monorepo: each commit changes 1 to 6 files in 1 to 3 of 30
service folders, about a third of the commits belong to a ticket batch (``REL-n: ...``,
``[REL-n] ...`` or a ``Deploy-Batch: OPS-n`` trailer, 1 to 4 commits per batch), message
bodies vary in length, and every 200th commit merges a two-commit side branch.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deployment import SERVICES

FIRST_DATE = 1_700_000_000
FILES_PER_SERVICE = 40
MERGE_EVERY = 200
AUTHORS = (
    b"Ada Lovelace <ada@example.com>",
    b"Grace Hopper <grace@example.com>",
    b"Alan Turing <alan@example.com>",
    b"Edsger Dijkstra <edsger@example.com>",
)
VERBS = ("fix", "add", "refactor", "tune", "remove", "document", "upgrade", "split")
NOUNS = ("retry logic", "cache keys", "order totals", "login flow", "report export",
         "queue consumer", "price rounding", "search ranking", "health endpoint")


@dataclass(frozen=True)
class History:
    """A generated repository: ``base`` is a branch at the first ``base_commits`` commits."""

    path: Path
    base_commits: int
    new_commits: int

    def sha(self, rev: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", rev],
            check=True, capture_output=True, text=True,
        ).stdout.strip()


class _Writer:
    """Writes the fast-import stream: one commit after another, with marks for parents."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.chunks: list[bytes] = []
        self.mark = 0
        self.commits = 0
        self.batch_number = 0
        self.batch_left = 0
        self.batch_subject = ""

    def commit(self, branch: bytes, parent: int | None, merge: int | None = None) -> int:
        self.mark += 1
        self.commits += 1
        when = FIRST_DATE + 60 * self.commits
        author = self.random.choice(AUTHORS)
        message = self._message().encode()
        lines = [
            b"commit " + branch,
            b"mark :%d" % self.mark,
            b"author %s %d +0000" % (author, when),
            b"committer %s %d +0000" % (author, when),
            b"data %d" % len(message),
            message,
        ]
        if parent is not None:
            lines.append(b"from :%d" % parent)
        if merge is not None:
            lines.append(b"merge :%d" % merge)
        for path in self._changed_paths():
            content = b"revision = %d\n" % self.commits
            lines += [b"M 100644 inline " + path, b"data %d" % len(content), content]
        self.chunks.append(b"\n".join(lines) + b"\n\n")
        return self.mark

    def _message(self) -> str:
        text = f"{self.random.choice(VERBS)} {self.random.choice(NOUNS)}"
        body = "\n".join(
            f"Line {number} of the explanation of this change." for number in
            range(self.random.randint(0, 6))
        )
        if self.batch_left == 0 and self.random.random() < 0.12:
            self.batch_number += 1
            self.batch_left = self.random.randint(1, 4)
            self.batch_subject = self.random.choice(("colon", "bracket", "trailer"))
        if self.batch_left == 0:
            return f"{text}\n\n{body}\n" if body else f"{text}\n"
        self.batch_left -= 1
        key = f"REL-{self.batch_number}"
        if self.batch_subject == "colon":
            return f"{key}: {text}\n\n{body}\n"
        if self.batch_subject == "bracket":
            return f"[{key}] {text}\n\n{body}\n"
        return f"{text}\n\n{body}\n\nDeploy-Batch: OPS-{self.batch_number}\n"

    def _changed_paths(self) -> list[bytes]:
        services = self.random.sample(list(SERVICES), self.random.randint(1, 3))
        paths = set()
        for _ in range(self.random.randint(len(services), 6)):
            service = self.random.choice(services)
            number = self.random.randrange(FILES_PER_SERVICE)
            paths.add(f"services/{service}/src/module_{number}.py".encode())
        return sorted(paths)


def generate_history(path: Path, base_commits: int, new_commits: int, seed: int = 7) -> History:
    """Create a repository with ``base_commits`` on branch base, ``new_commits`` more on main."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    writer = _Writer(seed)
    head: int | None = None
    total = base_commits + new_commits
    while writer.commits < total:
        if writer.commits == base_commits:
            writer.chunks.append(b"reset refs/heads/base\nfrom :%d\n\n" % head)
        # A merge adds three commits, which must not straddle the end of base or of main.
        limit = base_commits if writer.commits < base_commits else total
        if head is not None and writer.commits % MERGE_EVERY == 0 and limit - writer.commits > 3:
            side = writer.commit(b"refs/heads/side", head)
            side = writer.commit(b"refs/heads/side", side)
            head = writer.commit(b"refs/heads/main", head, merge=side)
        else:
            head = writer.commit(b"refs/heads/main", head)
    if writer.commits == base_commits:
        writer.chunks.append(b"reset refs/heads/base\nfrom :%d\n\n" % head)
    subprocess.run(
        ["git", "-C", str(path), "fast-import", "--quiet"],
        input=b"".join(writer.chunks),
        check=True,
    )
    return History(path, base_commits, new_commits)

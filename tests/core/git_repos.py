"""Real git repositories for watcher tests: a bare "remote", working clones, fixed identities."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FIRST_DATE = 1_700_000_000


def git_environment(date: int = FIRST_DATE) -> dict[str, str]:
    return {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_AUTHOR_DATE": f"{date} +0000",
        "GIT_COMMITTER_DATE": f"{date} +0000",
    }


def run_git(cwd: Path, *args: str, stdin: bytes | None = None, date: int = FIRST_DATE) -> str:
    completed = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=git_environment(date),
        input=stdin,
        capture_output=True,
        check=True,
    )
    return completed.stdout.decode().strip()


def bare_remote(path: Path) -> Path:
    """Create an empty bare repository that plays the hosted remote."""
    path.mkdir(parents=True)
    run_git(path, "init", "-q", "--bare", "-b", "main")
    return path


class GitRepo:
    """A working repository; each commit is dated one minute after the previous one."""

    def __init__(self, path: Path, *, clone_of: Path | None = None) -> None:
        self.path = path
        self.commits_made = 0
        if clone_of is None:
            path.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q", "-b", "main")
        else:
            run_git(path.parent, "clone", "-q", str(clone_of), str(path))
            self.git("checkout", "-q", "-B", "main")

    def git(self, *args: str, stdin: bytes | None = None) -> str:
        return run_git(self.path, *args, stdin=stdin, date=FIRST_DATE + 60 * self.commits_made)

    def commit(
        self, message: str | bytes, files: dict[str, str] | None = None, *, date: int | None = None
    ) -> str:
        """Write ``files``, commit everything with ``message`` and return the new sha."""
        self._write(files or {})
        self.git("add", "-A")
        raw = message.encode() if isinstance(message, str) else message
        when = date if date is not None else FIRST_DATE + 60 * self.commits_made
        run_git(self.path, "commit", "-q", "--allow-empty", "-F", "-", stdin=raw, date=when)
        self.commits_made += 1
        return self.git("rev-parse", "HEAD")

    def commit_raw_message(self, message: bytes, files: dict[str, str]) -> str:
        """Commit on top of HEAD with ``message`` stored byte for byte, and return the new sha.

        ``git commit`` would reinterpret bytes that are not UTF-8 as Latin-1, so the commit
        object is written directly.
        """
        self._write(files)
        self.git("add", "-A")
        tree = self.git("write-tree")
        parent = self.git("rev-parse", "HEAD")
        author = f"Ada Lovelace <ada@example.com> {FIRST_DATE} +0000"
        header = f"tree {tree}\nparent {parent}\nauthor {author}\ncommitter {author}\n\n"
        raw = header.encode() + message
        sha = self.git("hash-object", "-t", "commit", "-w", "--stdin", stdin=raw)
        self.git("update-ref", "HEAD", sha)
        self.commits_made += 1
        return sha

    def _write(self, files: dict[str, str]) -> None:
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")

    def merge(self, branch: str, message: str) -> str:
        self.git("merge", "-q", "--no-ff", branch, "-m", message)
        self.commits_made += 1
        return self.git("rev-parse", "HEAD")

    def push(self, *, force: bool = False) -> None:
        self.git("push", "-q", *(["--force"] if force else []), "origin", "main")

    def push_tag(self, name: str, sha: str = "HEAD") -> None:
        self.git("tag", name, sha)
        self.git("push", "-q", "origin", f"refs/tags/{name}")

"""Migration files of one repository folder at one commit, read from git without a checkout."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING


from rollback_coordinator.core.migrations.base import MigrationCheckError

# GitPython is imported where it is used: every parse of the DAG file imports this module,
# and importing git took about 25 ms there (python -X importtime).
if TYPE_CHECKING:
    import git


def normalize_directory(directory: str) -> str:
    """Return ``directory`` as a repository-relative POSIX path, "" for the repository root."""
    stripped = directory.strip().strip("/")
    cleaned = posixpath.normpath(stripped) if stripped else ""
    if cleaned == ".." or cleaned.startswith("../"):
        raise MigrationCheckError(
            f"migration folder {directory!r} leaves the repository; give a path inside it"
        )
    return "" if cleaned == "." else cleaned


class RepositoryFiles:
    """The files below ``directory`` in the commit that ``ref`` names.

    ``paths`` are repository-relative and sorted. A folder that does not exist at the commit
    has no files. Submodules are skipped; a symbolic link reads as its target path, as git
    stores it.
    """

    def __init__(self, repo: Path, ref: str, directory: str) -> None:
        self.repo = Path(repo)
        self.ref = ref
        self.directory = normalize_directory(directory)
        commit = _resolve_commit(self.repo, ref)
        self.commit = commit.hexsha
        self._blobs = _blobs_below(commit, self.directory)
        self.paths: tuple[str, ...] = tuple(sorted(self._blobs))

    def relative(self, path: str) -> str:
        """Return ``path`` relative to the migration folder."""
        if not self.directory:
            return path
        return path[len(self.directory) + 1 :]

    def join(self, relative: str) -> str:
        """Return the repository path of ``relative``, a path inside the migration folder."""
        return f"{self.directory}/{relative}" if self.directory else relative

    def __contains__(self, path: object) -> bool:
        return path in self._blobs

    def read_bytes(self, path: str) -> bytes:
        """Return the content of the file at ``path`` (repository-relative)."""
        try:
            blob = self._blobs[path]
        except KeyError:
            raise MigrationCheckError(
                f"{path} is not in the migration folder at {self.ref}"
            ) from None
        return blob.data_stream.read()

    def read_text(self, path: str) -> str:
        """Return the file at ``path`` decoded as UTF-8."""
        try:
            return self.read_bytes(path).decode("utf-8")
        except UnicodeDecodeError as error:
            raise MigrationCheckError(
                f"{path} at {self.ref} is not valid UTF-8 (byte {error.start}); "
                "save the migration file as UTF-8"
            ) from None


def _resolve_commit(repo: Path, ref: str) -> git.Commit:
    import git
    from git.exc import BadName, GitError

    try:
        repository = git.Repo(repo)
    except (GitError, OSError) as error:
        raise MigrationCheckError(
            f"{repo} is not a readable git repository ({type(error).__name__}); "
            "give the service repository's path"
        ) from None
    try:
        return repository.commit(ref)
    except (BadName, GitError, ValueError):
        raise MigrationCheckError(
            f"commit {ref!r} is not in the git repository {repo}; fetch it or give an "
            "existing ref"
        ) from None


def _blobs_below(commit: git.Commit, directory: str) -> dict[str, git.Blob]:
    import git

    tree = commit.tree
    if directory:
        try:
            item = tree / directory
        except KeyError:
            return {}
        if not isinstance(item, git.Tree):
            raise MigrationCheckError(
                f"migration folder {directory} is a file at commit {commit.hexsha[:12]}; "
                "give the folder that contains the migration files"
            )
        tree = item
    return {
        item.path: item
        for item in tree.traverse()
        if isinstance(item, git.Blob)
    }

"""Deployment batches and rollback requests, read from the history of a git repository.

A batch is the set of commits that name the same ticket key, in the subject
(``REL-42: text`` or ``[REL-42] text``) or in a ``Deploy-Batch: REL-42`` trailer.
A rollback request is a ``rollback/REL-42`` tag or a ``Rollback: REL-42`` trailer.
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rollback_coordinator.core.batch_id import BATCH_ID_PATTERN, validate_batch_id
from rollback_coordinator.core.errors import BatchIdError, CoordinatorError

# GitPython is imported where it is used: every parse of the DAG file imports this module,
# and importing git took about 25 ms there (python -X importtime).
if TYPE_CHECKING:
    import git


class WatermarkLostError(CoordinatorError):
    """The commit an incremental scan starts after is unknown or no longer in the history.

    Callers catch it and fall back to a full scan, because the history was rewritten.
    """

    def __init__(self, since: str, reason: str) -> None:
        self.since = since
        self.reason = reason
        super().__init__(
            f"watermark {since!r} cannot start an incremental scan: {reason}. "
            f"Run a full scan (since=None) to rebuild the batches."
        )


def _check_key_pattern(name: str, pattern: str, *, needs_key: bool = True) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"BatchConventions.{name}: invalid regex {pattern!r}: {error}") from None
    if needs_key and "key" not in compiled.groupindex:
        raise ValueError(
            f"BatchConventions.{name}: regex {pattern!r} has no named group 'key'. Add (?P<key>...)"
        )


@dataclass(frozen=True)
class BatchConventions:
    """Regexes that find batch keys and rollback requests in commit messages and tag names.

    Every regex has a named group ``key``. ``subject_patterns`` are matched against the
    first line of the message, the trailer patterns against each line of the last
    paragraph, and ``rollback_tag`` against the tag name without ``refs/tags/``.
    The patterns capture loosely on purpose, so that a captured key that fails
    ``batch_id_pattern`` is reported in ``ScanResult.rejected_ids`` instead of being
    ignored without a trace.
    """

    subject_patterns: tuple[str, ...] = (
        r"^\[\s*(?P<key>[^\]]*?-[0-9]+)\s*\]",
        r"^(?P<key>[^\s:\[\]]+-[0-9]+):(?:\s|$)",
    )
    batch_trailer: str = r"(?i)^Deploy-Batch[ \t]*:[ \t]*(?P<key>.*?)[ \t]*$"
    rollback_trailer: str = r"(?i)^Rollback[ \t]*:[ \t]*(?P<key>.*?)[ \t]*$"
    rollback_tag: str = r"^rollback/(?P<key>.+)$"
    batch_id_pattern: str = BATCH_ID_PATTERN

    def __post_init__(self) -> None:
        named = {f"subject_patterns[{i}]": p for i, p in enumerate(self.subject_patterns)}
        named |= {
            "batch_trailer": self.batch_trailer,
            "rollback_trailer": self.rollback_trailer,
            "rollback_tag": self.rollback_tag,
        }
        for name, pattern in named.items():
            _check_key_pattern(name, pattern)
        _check_key_pattern("batch_id_pattern", self.batch_id_pattern, needs_key=False)


@dataclass(frozen=True)
class CommitInfo:
    """One commit of a batch, with the files it changed relative to its first parent."""

    sha: str
    subject: str
    author: str
    authored_at: str
    files: tuple[str, ...]
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    """The commits that carry one batch id, and the refs a rollback moves between.

    ``from_ref`` is the newest commit of the batch. ``to_ref`` is the first parent of its
    oldest commit, the release to go back to, or None when that commit is a root commit.
    ``sequence`` orders batches by their newest commit, and a higher value is newer.
    """

    id: str
    commits: tuple[CommitInfo, ...]
    from_ref: str
    to_ref: str | None
    sequence: int
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "commits": [_commit_to_dict(commit) for commit in self.commits],
            "from_ref": self.from_ref,
            "to_ref": self.to_ref,
            "sequence": self.sequence,
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        """Build a batch from ``to_dict`` output, raising ValueError or BatchIdError if invalid.

        Keys that ``to_dict`` does not write are ignored.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a batch must be a JSON object, got {type(data).__name__}")
        batch_id = validate_batch_id(_field(data, "id", str, "batch"), pattern=None)
        where = f"batch {batch_id}"
        commits = _field(data, "commits", list, where)
        to_ref = data.get("to_ref")
        if to_ref is not None and not isinstance(to_ref, str):
            raise ValueError(f"{where}: field 'to_ref' must be a string or null")
        return cls(
            id=batch_id,
            commits=tuple(_commit_from_dict(item, where) for item in commits),
            from_ref=_field(data, "from_ref", str, where),
            to_ref=to_ref,
            sequence=_field(data, "sequence", int, where),
            files=_strings(data, "files", where),
        )


@dataclass(frozen=True)
class RollbackRequest:
    """A request to roll back a batch, from a tag or from a commit trailer.

    ``ref`` is the tag name or the sha of the commit with the trailer. ``sha`` is the
    commit the tag points to, or the commit with the trailer.
    """

    batch_id: str
    source: str
    ref: str
    sha: str

    @property
    def key(self) -> str:
        """Identity of the request, so that a run starts once per request even across scans."""
        return f"{self.source}:{self.batch_id}@{self.sha}"


class BatchConflict(NamedTuple):
    """A commit that names more than one batch key and so belongs to no batch."""

    sha: str
    keys: tuple[str, ...]


class RejectedId(NamedTuple):
    """A key found in a commit or tag that is not a valid batch id, and why."""

    sha: str
    value: str
    reason: str


@dataclass
class ScanResult:
    """Batches, rollback requests, conflicts and rejected ids found by one scan.

    ``since`` is the full sha of the watermark the scan started after, or None for a full
    scan. ``shallow`` is True when the repository is a shallow clone. ``next_sequence`` is
    the sequence the first commit after ``head`` gets: the number of commits reachable from
    ``head``, which a later scan from ``head`` takes as its ``since_sequence``.
    """

    batches: dict[str, Batch] = field(default_factory=dict)
    requests: list[RollbackRequest] = field(default_factory=list)
    conflicts: list[BatchConflict] = field(default_factory=list)
    rejected_ids: list[RejectedId] = field(default_factory=list)
    head: str | None = None
    shallow: bool = False
    since: str | None = None
    commit_count: int = 0
    next_sequence: int = 0


def scan_repository(
    repo_path: str | Path,
    *,
    conventions: BatchConventions = BatchConventions(),
    since: str | None = None,
    since_sequence: int | None = None,
    rev: str = "HEAD",
) -> ScanResult:
    """Find the batches and rollback requests in the history of ``rev``.

    With ``since``, only commits reachable from ``rev`` but not from ``since`` are read,
    and sequences continue after the commits of ``since``. ``since_sequence`` is their
    number, as the scan that ended at ``since`` returned it in ``next_sequence``. Without it,
    git counts them, which takes time that grows with the length of history.

    Raises WatermarkLostError when ``since`` is unknown or not an ancestor of ``rev``, and
    CoordinatorError when the repository or ``rev`` cannot be read. An empty repository
    returns an empty result.
    """
    import git

    try:
        repo = git.Repo(repo_path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as error:
        raise CoordinatorError(f"{repo_path}: not a git repository ({error!r})") from error
    with repo:
        try:
            return _scan(repo, conventions, since, since_sequence, rev)
        except git.GitCommandError as error:
            stderr = " ".join(str(error.stderr).split())
            raise CoordinatorError(f"{repo_path}: git failed: {stderr}") from error


def _scan(
    repo: git.Repo,
    conventions: BatchConventions,
    since: str | None,
    since_sequence: int | None,
    rev: str,
) -> ScanResult:
    head = _resolve_rev(repo, rev)
    if head is None:
        return ScanResult()
    first_sequence = 0
    revision_range = head
    if since is not None:
        since = _resolve_watermark(repo, since, head)
        if since_sequence is None:
            first_sequence = int(repo.git.rev_list("--count", since))
        else:
            first_sequence = since_sequence
        revision_range = f"{since}..{head}"
    boundary = _shallow_boundary(repo)
    collector = _Collector(conventions, first_sequence)
    for commit, message in _read_log(repo, revision_range):
        if commit.sha in boundary and not commit.parents:
            commit = _with_recorded_parents(repo, commit)
        collector.add(commit, message)
    tag_requests, tag_rejections = _tag_requests(repo, conventions)
    result = collector.result()
    result.requests.extend(tag_requests)
    result.rejected_ids.extend(tag_rejections)
    result.head = head
    result.shallow = bool(boundary)
    result.since = since
    result.next_sequence = first_sequence + result.commit_count
    return result


def _resolve_rev(repo: git.Repo, rev: str) -> str | None:
    """Return the commit sha of ``rev``, or None when ``rev`` is the unborn HEAD of a new repo."""
    import git

    if not rev or rev.startswith("-"):
        raise CoordinatorError(f"invalid revision {rev!r}: expected a branch, tag or commit sha")
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")
    except git.GitCommandError:
        if rev == "HEAD" and not repo.head.is_valid():
            return None
        raise CoordinatorError(
            f"{repo.git_dir}: revision {rev!r} not found. Expected a branch, tag or commit sha"
        ) from None


_HEX_SHA = re.compile(r"[0-9a-f]{7,64}")


def _resolve_watermark(repo: git.Repo, since: str, head: str) -> str:
    """Return the full sha of ``since``, checking that ``head`` still descends from it."""
    import git

    if _HEX_SHA.fullmatch(since.lower()) is None:
        raise WatermarkLostError(since, "it is not a hexadecimal commit sha")
    try:
        full = repo.git.rev_parse("--verify", "--quiet", f"{since}^{{commit}}")
    except git.GitCommandError:
        raise WatermarkLostError(since, "no such commit in the repository") from None
    try:
        repo.git.merge_base("--is-ancestor", full, head)
    except git.GitCommandError:
        raise WatermarkLostError(since, f"it is not an ancestor of {head}") from None
    return full


def _shallow_boundary(repo: git.Repo) -> frozenset[str]:
    """Return the commits whose parents a shallow clone left out (empty if not shallow)."""
    shallow_file = Path(repo.common_dir) / "shallow"
    if not shallow_file.is_file():
        return frozenset()
    return frozenset(shallow_file.read_text(encoding="ascii").split())


def _with_recorded_parents(repo: git.Repo, commit: CommitInfo) -> CommitInfo:
    """Return ``commit`` with the parents its object records, which git log hides when shallow."""
    raw = repo.git.cat_file("commit", commit.sha)
    header = raw.split("\n\n", 1)[0]
    parents = tuple(
        line.split(" ", 1)[1] for line in header.splitlines() if line.startswith("parent ")
    )
    # NOTE: git log diffed this commit against an empty tree, so its files are all the
    # files of its tree. That overstates the change, which errs towards more services.
    return dataclasses.replace(commit, parents=parents)


# Paths in git never start with '/', so a NUL-separated token that starts with this
# marker can only be the start of a commit record.
_RECORD_MARK = "/C"
_LOG_FORMAT = f"{_RECORD_MARK}%H%x00%P%x00%an <%ae>%x00%at%x00%B%x00"
# --diff-merges needs git 2.31 or newer.
_LOG_OPTIONS = (
    "--topo-order",
    "--reverse",
    "--root",
    # Renames show as a deletion and an addition, so both paths reach the batch.
    "--no-renames",
    "--diff-merges=first-parent",
    "--no-relative",
    "--name-only",
    "-z",
    "--encoding=UTF-8",
    "--no-show-signature",
    "--no-notes",
    f"--format={_LOG_FORMAT}",
)
_HEADER_FIELDS = 5
_READ_CHUNK_BYTES = 1 << 20


def _read_log(repo: git.Repo, revision_range: str) -> Iterator[tuple[CommitInfo, str]]:
    """Yield each commit of ``revision_range`` oldest first, with its full message.

    One ``git log`` process reads everything, which is far faster than reading commit
    objects one by one, and its output is parsed while git still writes it. Bytes that
    are not UTF-8 become U+FFFD. Merges list the files changed relative to their first
    parent, and root commits list all their files.
    """
    process = repo.git.log(*_LOG_OPTIONS, revision_range, "--", as_process=True)
    header: list[str] = []
    files: list[str] = []
    for token in _nul_separated(process.proc.stdout):
        if 0 < len(header) < _HEADER_FIELDS:
            # Header fields are taken by position, so a message that starts like the
            # record marker cannot open a record.
            header.append(token)
        elif token.startswith(_RECORD_MARK):
            if header:
                yield _commit_from_log(header, files)
            header, files = [token], []
        elif token:
            files.append(token)
    # wait() raises GitCommandError if git failed, before a cut-off record is parsed.
    process.wait()
    if header:
        yield _commit_from_log(header, files)


def _nul_separated(stream: io.BufferedReader) -> Iterator[str]:
    """Yield the NUL-separated tokens of ``stream`` decoded as UTF-8 with replacement."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    # read1 returns the bytes the pipe contains now, so parsing runs while git still writes.
    while chunk := stream.read1(_READ_CHUNK_BYTES):
        tokens = (pending + decoder.decode(chunk)).split("\0")
        pending = tokens.pop()
        yield from tokens
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _commit_from_log(header: list[str], files: list[str]) -> tuple[CommitInfo, str]:
    mark_and_sha, parents, author, timestamp, message = header
    if files:
        # git writes a newline between the formatted header and the first file name.
        files[0] = files[0].removeprefix("\n")
    message = message.replace("\r\n", "\n")
    authored_at = datetime.fromtimestamp(int(timestamp), UTC).isoformat()
    commit = CommitInfo(
        sha=mark_and_sha[len(_RECORD_MARK) :],
        subject=message.split("\n", 1)[0].strip(),
        author=author,
        authored_at=authored_at,
        files=tuple(files),
        parents=tuple(parents.split()),
    )
    return commit, message


class _Collector:
    """Assigns scanned commits to batches and gathers requests, conflicts and rejections."""

    def __init__(self, conventions: BatchConventions, first_sequence: int) -> None:
        self._subject_patterns = [re.compile(p) for p in conventions.subject_patterns]
        self._batch_trailer = re.compile(conventions.batch_trailer)
        self._rollback_trailer = re.compile(conventions.rollback_trailer)
        self._id_pattern = re.compile(conventions.batch_id_pattern)
        self._next_sequence = first_sequence
        self._members: dict[str, list[CommitInfo]] = {}
        self._newest: dict[str, int] = {}
        # Keys repeat on every commit of a batch, so each is validated once per scan.
        self._rejection_reasons: dict[str, str | None] = {}
        self._result = ScanResult()

    def add(self, commit: CommitInfo, message: str) -> None:
        sequence = self._next_sequence
        self._next_sequence += 1
        self._result.commit_count += 1
        trailers = _trailer_lines(message)
        batch_keys = [m["key"] for p in self._subject_patterns if (m := p.match(commit.subject))]
        batch_keys += _trailer_keys(self._batch_trailer, trailers)
        self._assign(commit, sequence, list(dict.fromkeys(batch_keys)))
        for key in dict.fromkeys(_trailer_keys(self._rollback_trailer, trailers)):
            if self._is_valid(commit.sha, key):
                request = RollbackRequest(key, "trailer", ref=commit.sha, sha=commit.sha)
                self._result.requests.append(request)

    def result(self) -> ScanResult:
        for batch_id, commits in self._members.items():
            self._result.batches[batch_id] = Batch(
                id=batch_id,
                commits=tuple(commits),
                from_ref=commits[-1].sha,
                to_ref=commits[0].parents[0] if commits[0].parents else None,
                sequence=self._newest[batch_id],
                files=tuple(sorted({name for commit in commits for name in commit.files})),
            )
        return self._result

    def _assign(self, commit: CommitInfo, sequence: int, keys: list[str]) -> None:
        valid = [key for key in keys if self._is_valid(commit.sha, key)]
        if len(keys) > 1:
            self._result.conflicts.append(BatchConflict(commit.sha, tuple(keys)))
            return
        if valid:
            self._members.setdefault(valid[0], []).append(commit)
            self._newest[valid[0]] = sequence

    def _is_valid(self, sha: str, key: str) -> bool:
        """Return whether ``key`` is a valid batch id, recording it as rejected if not."""
        if key not in self._rejection_reasons:
            try:
                validate_batch_id(key, self._id_pattern)
                self._rejection_reasons[key] = None
            except BatchIdError as error:
                self._rejection_reasons[key] = str(error)
        reason = self._rejection_reasons[key]
        if reason is not None:
            self._result.rejected_ids.append(RejectedId(sha, key, reason))
        return reason is None


_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")


def _trailer_lines(message: str) -> list[str]:
    """Return the lines of the last paragraph, where trailers are.

    Like git, the subject paragraph never counts, even when it is the only one.
    """
    paragraphs = _PARAGRAPH_BREAK.split(message.strip("\n"))
    if len(paragraphs) < 2:
        return []
    return paragraphs[-1].split("\n")


def _trailer_keys(pattern: re.Pattern[str], lines: list[str]) -> list[str]:
    return [match["key"] for line in lines if (match := pattern.match(line))]


def _tag_requests(
    repo: git.Repo, conventions: BatchConventions
) -> tuple[list[RollbackRequest], list[RejectedId]]:
    """Return the rollback requests made by tags, and the tags whose key is not a batch id.

    Every matching tag counts, whether or not the scanned revision reaches its commit.
    """
    tag_pattern = re.compile(conventions.rollback_tag)
    id_pattern = re.compile(conventions.batch_id_pattern)
    raw = repo.git.for_each_ref(
        "--format=%(refname)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)",
        "refs/tags/",
        stdout_as_string=False,
    )
    requests: list[RollbackRequest] = []
    rejected: list[RejectedId] = []
    # Ref names cannot contain control characters, so lines split them safely.
    for line in sorted(raw.decode("utf-8", errors="replace").splitlines()):
        ref, kind, sha, peeled_kind, peeled_sha = line.split("\0")
        tag = ref.removeprefix("refs/tags/")
        match = tag_pattern.match(tag)
        if match is None:
            continue
        if kind == "tag" and peeled_kind == "commit":
            sha = peeled_sha
        elif kind != "commit":
            # NOTE: a tag of a tag is not followed further, and is reported as not a commit.
            reason = f"tag {tag!r} does not point to a commit"
            rejected.append(RejectedId(sha, match["key"], reason))
            continue
        try:
            batch_id = validate_batch_id(match["key"], id_pattern)
        except BatchIdError as error:
            rejected.append(RejectedId(sha, match["key"], str(error)))
            continue
        requests.append(RollbackRequest(batch_id, "tag", ref=tag, sha=sha))
    return requests, rejected


def _commit_to_dict(commit: CommitInfo) -> dict[str, Any]:
    return {
        "sha": commit.sha,
        "subject": commit.subject,
        "author": commit.author,
        "authored_at": commit.authored_at,
        "files": list(commit.files),
        "parents": list(commit.parents),
    }


def _commit_from_dict(data: Any, where: str) -> CommitInfo:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: each commit must be a JSON object")
    return CommitInfo(
        sha=_field(data, "sha", str, where),
        subject=_field(data, "subject", str, where),
        author=_field(data, "author", str, where),
        authored_at=_field(data, "authored_at", str, where),
        files=_strings(data, "files", where),
        parents=_strings(data, "parents", where),
    )


def _field(data: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in data:
        raise ValueError(f"{where}: missing field '{name}'")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(
            f"{where}: field '{name}' must be of type {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _strings(data: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    values = _field(data, name, list, where)
    if not all(isinstance(value, str) for value in values):
        raise ValueError(f"{where}: field '{name}' must be a list of strings")
    return tuple(values)

"""Batch detection from real git repositories built in tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rollback_coordinator.core.batches import (
    Batch,
    BatchConflict,
    BatchConventions,
    RollbackRequest,
    WatermarkLostError,
    scan_repository,
)
from rollback_coordinator.core.errors import BatchIdError, CoordinatorError

_FIRST_DATE = 1_700_000_000


class GitRepo:
    """A git repository in a temporary folder, with fixed identities and dates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits_made = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def environment(self) -> dict[str, str]:
        date = f"{_FIRST_DATE + 60 * self.commits_made} +0000"
        return {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Ada Lovelace",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada Lovelace",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_DATE": date,
        }

    def git(self, *args: str, stdin: bytes | None = None) -> str:
        completed = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.environment(),
            input=stdin,
            capture_output=True,
            check=True,
        )
        return completed.stdout.decode().strip()

    def commit(
        self,
        message: str | bytes,
        files: dict[str, str] | None = None,
        *,
        options: tuple[str, ...] = (),
    ) -> str:
        """Write ``files``, commit everything with ``message`` and return the new sha."""
        for name, content in (files or {}).items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        self.git("add", "-A")
        raw = message.encode() if isinstance(message, str) else message
        self.git(*options, "commit", "-q", "--allow-empty", "-F", "-", stdin=raw)
        self.commits_made += 1
        return self.git("rev-parse", "HEAD")

    def commit_raw_message(self, message: bytes, files: dict[str, str]) -> str:
        """Commit on top of HEAD with ``message`` stored byte for byte, and return the new sha.

        ``git commit`` would reinterpret bytes that are not UTF-8 as Latin-1, so the commit
        object is written directly.
        """
        for name, content in files.items():
            (self.path / name).write_text(content, encoding="utf-8")
        self.git("add", "-A")
        tree = self.git("write-tree")
        parent = self.git("rev-parse", "HEAD")
        author = f"Ada Lovelace <ada@example.com> {_FIRST_DATE} +0000"
        header = f"tree {tree}\nparent {parent}\nauthor {author}\ncommitter {author}\n\n"
        raw = header.encode() + message
        sha = self.git("hash-object", "-t", "commit", "-w", "--stdin", stdin=raw)
        self.git("update-ref", "HEAD", sha)
        self.commits_made += 1
        return sha

    def merge(self, branch: str, message: str) -> str:
        self.git("merge", "-q", "--no-ff", branch, "-m", message)
        self.commits_made += 1
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "service-repo")


def test_subject_key_with_colon(repo: GitRepo) -> None:
    sha = repo.commit("REL-42: raise pool size", {"api/pool.yaml": "size: 4\n"})
    batch = scan_repository(repo.path).batches["REL-42"]
    assert [commit.sha for commit in batch.commits] == [sha]


def test_subject_key_in_brackets(repo: GitRepo) -> None:
    sha = repo.commit("[REL-42] raise pool size", {"api/pool.yaml": "size: 4\n"})
    batch = scan_repository(repo.path).batches["REL-42"]
    assert [commit.sha for commit in batch.commits] == [sha]


def test_subject_without_key_forms_no_batch(repo: GitRepo) -> None:
    repo.commit("feat(api-gw): add route", {"a": "1"})
    repo.commit("[WIP] draft", {"b": "1"})
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert result.rejected_ids == []


def test_deploy_batch_trailer_assigns_commit(repo: GitRepo) -> None:
    sha = repo.commit("Raise pool size\n\nBody text.\n\nDeploy-Batch: REL-7\n", {"a": "1"})
    batch = scan_repository(repo.path).batches["REL-7"]
    assert [commit.sha for commit in batch.commits] == [sha]


def test_trailer_key_is_case_insensitive(repo: GitRepo) -> None:
    repo.commit("Raise pool size\n\ndeploy-batch: REL-7\n", {"a": "1"})
    assert "REL-7" in scan_repository(repo.path).batches


def test_trailer_outside_last_paragraph_is_ignored(repo: GitRepo) -> None:
    repo.commit("Raise pool size\n\nDeploy-Batch: REL-7\n\nMore explanation.\n", {"a": "1"})
    assert scan_repository(repo.path).batches == {}


def test_subject_alone_is_never_a_trailer(repo: GitRepo) -> None:
    repo.commit("Deploy-Batch: REL-7\n", {"a": "1"})
    assert scan_repository(repo.path).batches == {}


def test_same_key_in_subject_and_trailer_assigns(repo: GitRepo) -> None:
    repo.commit("REL-7: raise pool size\n\nDeploy-Batch: REL-7\n", {"a": "1"})
    result = scan_repository(repo.path)
    assert list(result.batches) == ["REL-7"]
    assert result.conflicts == []


def test_subject_and_trailer_disagree_is_conflict(repo: GitRepo) -> None:
    sha = repo.commit("REL-7: raise pool size\n\nDeploy-Batch: REL-8\n", {"a": "1"})
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert result.conflicts == [BatchConflict(sha, ("REL-7", "REL-8"))]


def test_two_trailers_with_different_keys_is_conflict(repo: GitRepo) -> None:
    sha = repo.commit("Raise pool size\n\nDeploy-Batch: REL-7\nDeploy-Batch: OPS-1\n", {"a": "1"})
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert result.conflicts == [BatchConflict(sha, ("REL-7", "OPS-1"))]


def test_conflicting_commit_leaves_other_batch_members(repo: GitRepo) -> None:
    first = repo.commit("REL-7: one", {"a": "1"})
    repo.commit("REL-7: two\n\nDeploy-Batch: REL-8\n", {"b": "1"})
    batch = scan_repository(repo.path).batches["REL-7"]
    assert [commit.sha for commit in batch.commits] == [first]


def test_merge_commit_counts_by_its_own_message(repo: GitRepo) -> None:
    base = repo.commit("initial", {"README": "x\n"})
    repo.git("checkout", "-q", "-b", "feature")
    side = repo.commit("add worker config", {"worker/config.yaml": "a: 1\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("unrelated main change", {"docs/x.md": "y\n"})
    merge = repo.merge("feature", "REL-9: merge the worker change")
    result = scan_repository(repo.path)
    batch = result.batches["REL-9"]
    assert [commit.sha for commit in batch.commits] == [merge]
    assert batch.files == ("worker/config.yaml",)
    assert batch.to_ref == repo.git("rev-parse", "HEAD^1")
    assert batch.commits[0].parents[1] == side
    assert base not in {commit.sha for commit in batch.commits}


def test_merge_without_key_leaves_branch_commits_in_batch(repo: GitRepo) -> None:
    repo.commit("initial", {"README": "x\n"})
    repo.git("checkout", "-q", "-b", "feature")
    side = repo.commit("REL-3: add worker config", {"worker/config.yaml": "a: 1\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("unrelated main change", {"docs/x.md": "y\n"})
    repo.merge("feature", "Merge branch 'feature'")
    batch = scan_repository(repo.path).batches["REL-3"]
    assert [commit.sha for commit in batch.commits] == [side]
    assert batch.files == ("worker/config.yaml",)


def test_invalid_utf8_message_is_scanned(repo: GitRepo) -> None:
    repo.commit("initial", {"README": "x\n"})
    repo.commit_raw_message(b"[REL-5] caf\xe9 \xff\xfe broken bytes\n", {"a": "1"})
    batch = scan_repository(repo.path).batches["REL-5"]
    assert batch.commits[0].subject == "[REL-5] caf\ufffd \ufffd\ufffd broken bytes"


def test_git_commit_turns_invalid_utf8_into_latin1(repo: GitRepo) -> None:
    repo.commit(b"[REL-5] caf\xe9\n", {"a": "1"})
    batch = scan_repository(repo.path).batches["REL-5"]
    assert batch.commits[0].subject == "[REL-5] caf\u00e9"


def test_latin1_encoded_message_is_reencoded(repo: GitRepo) -> None:
    options = ("-c", "i18n.commitEncoding=ISO-8859-1")
    repo.commit("[REL-5] café\n".encode("latin-1"), {"a": "1"}, options=options)
    batch = scan_repository(repo.path).batches["REL-5"]
    assert batch.commits[0].subject == "[REL-5] café"


def test_batch_refs_span_interleaved_commits(repo: GitRepo) -> None:
    base = repo.commit("initial", {"README": "x\n"})
    first = repo.commit("REL-1: api change", {"api/a.yaml": "1\n"})
    repo.commit("REL-2: db change", {"db/b.yaml": "1\n"})
    last = repo.commit("REL-1: api follow-up", {"api/c.yaml": "1\n"})
    batch = scan_repository(repo.path).batches["REL-1"]
    assert [commit.sha for commit in batch.commits] == [first, last]
    assert batch.from_ref == last
    assert batch.to_ref == base
    assert batch.files == ("api/a.yaml", "api/c.yaml")


def test_batch_on_root_commit_has_no_to_ref(repo: GitRepo) -> None:
    repo.commit("REL-1: initial", {"api/a.yaml": "1\n", "db/b.yaml": "2\n"})
    batch = scan_repository(repo.path).batches["REL-1"]
    assert batch.to_ref is None
    assert batch.files == ("api/a.yaml", "db/b.yaml")


def test_newer_batch_has_higher_sequence(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    repo.commit("REL-2: two", {"b": "1"})
    repo.commit("REL-1: three", {"c": "1"})
    batches = scan_repository(repo.path).batches
    assert batches["REL-1"].sequence == 2
    assert batches["REL-2"].sequence == 1


def test_commit_details_are_recorded(repo: GitRepo) -> None:
    base = repo.commit("initial", {"README": "x\n"})
    repo.commit("REL-1: change\n\nLong body.\n", {"api/a.yaml": "1\n"})
    commit = scan_repository(repo.path).batches["REL-1"].commits[0]
    assert commit.subject == "REL-1: change"
    assert commit.author == "Ada Lovelace <ada@example.com>"
    assert commit.authored_at == "2023-11-14T22:14:20+00:00"
    assert commit.parents == (base,)


def test_file_names_with_spaces_and_unicode(repo: GitRepo) -> None:
    names = {"conf/my service.yaml": "1\n", "conf/ünïcödé ✓.yaml": "2\n", "odd\nname": "3\n"}
    repo.commit("REL-1: odd names", names)
    batch = scan_repository(repo.path).batches["REL-1"]
    assert batch.files == tuple(sorted(names))


def test_rename_lists_both_paths(repo: GitRepo) -> None:
    repo.commit("initial", {"api/old.yaml": "content that stays the same\n"})
    repo.git("mv", "api/old.yaml", "api/new.yaml")
    repo.commit("REL-1: rename")
    batch = scan_repository(repo.path).batches["REL-1"]
    assert batch.files == ("api/new.yaml", "api/old.yaml")


def test_incremental_scan_reads_only_new_commits(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    repo.commit("REL-1: two", {"b": "1"})
    first = scan_repository(repo.path)
    newer = repo.commit("REL-2: three", {"c": "1"})
    second = scan_repository(repo.path, since=first.head)
    assert list(second.batches) == ["REL-2"]
    assert second.commit_count == 1
    assert second.head == newer
    assert second.since == first.head


def test_incremental_scan_continues_sequence(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    repo.commit("REL-1: two", {"b": "1"})
    first = scan_repository(repo.path)
    repo.commit("REL-2: three", {"c": "1"})
    second = scan_repository(repo.path, since=first.head)
    full = scan_repository(repo.path)
    assert second.batches["REL-2"].sequence == full.batches["REL-2"].sequence
    assert second.batches["REL-2"].sequence > first.batches["REL-1"].sequence


def test_scan_reports_next_sequence(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    first = scan_repository(repo.path)
    repo.commit("REL-2: two", {"b": "1"})
    second = scan_repository(repo.path, since=first.head)

    assert first.next_sequence == int(repo.git("rev-list", "--count", "HEAD~1"))
    assert second.next_sequence == int(repo.git("rev-list", "--count", "HEAD"))


def test_incremental_scan_takes_stored_sequence(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    first = scan_repository(repo.path)
    repo.commit("REL-2: two", {"b": "1"})

    counted = scan_repository(repo.path, since=first.head)
    stored = scan_repository(repo.path, since=first.head, since_sequence=first.next_sequence)
    offset = scan_repository(repo.path, since=first.head, since_sequence=1000)

    assert stored.batches["REL-2"].sequence == counted.batches["REL-2"].sequence
    assert offset.batches["REL-2"].sequence == 1000
    assert offset.next_sequence == 1001


def test_incremental_scan_with_nothing_new(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    first = scan_repository(repo.path)
    second = scan_repository(repo.path, since=first.head)
    assert second.batches == {}
    assert second.commit_count == 0


def test_unknown_watermark_raises(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    with pytest.raises(WatermarkLostError):
        scan_repository(repo.path, since="0123456789abcdef0123456789abcdef01234567")


def test_rewritten_history_raises_watermark_lost(repo: GitRepo) -> None:
    repo.commit("initial", {"a": "1"})
    old_head = repo.commit("REL-1: one", {"b": "1"})
    repo.git("reset", "-q", "--hard", "HEAD~1")
    repo.commit("REL-1: one, reworded", {"b": "1"})
    with pytest.raises(WatermarkLostError) as caught:
        scan_repository(repo.path, since=old_head)
    assert "not an ancestor" in str(caught.value)


@pytest.mark.parametrize("since", ["--output=/tmp/x", "HEAD", "main", ""])
def test_watermark_that_is_not_a_sha_raises(repo: GitRepo, since: str) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    with pytest.raises(WatermarkLostError):
        scan_repository(repo.path, since=since)


def test_rollback_request_by_lightweight_tag(repo: GitRepo) -> None:
    sha = repo.commit("REL-1: one", {"a": "1"})
    repo.git("tag", "rollback/REL-1")
    requests = scan_repository(repo.path).requests
    assert requests == [RollbackRequest("REL-1", "tag", ref="rollback/REL-1", sha=sha)]


def test_rollback_request_by_annotated_tag_points_to_commit(repo: GitRepo) -> None:
    sha = repo.commit("REL-1: one", {"a": "1"})
    repo.git("tag", "-a", "-m", "roll it back", "rollback/REL-1")
    requests = scan_repository(repo.path).requests
    assert requests == [RollbackRequest("REL-1", "tag", ref="rollback/REL-1", sha=sha)]


def test_rollback_request_by_trailer(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    sha = repo.commit("Revert the pool change\n\nRollback: REL-1\n")
    requests = scan_repository(repo.path).requests
    assert requests == [RollbackRequest("REL-1", "trailer", ref=sha, sha=sha)]


def test_request_keys_differ_by_source(repo: GitRepo) -> None:
    sha = repo.commit("Revert the pool change\n\nRollback: REL-1\n")
    repo.git("tag", "rollback/REL-1")
    keys = {request.key for request in scan_repository(repo.path).requests}
    assert keys == {f"tag:REL-1@{sha}", f"trailer:REL-1@{sha}"}


def test_other_tags_are_not_requests(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    repo.git("tag", "v1.0.0")
    repo.git("tag", "release/REL-1")
    assert scan_repository(repo.path).requests == []


def test_hostile_subject_id_is_rejected(repo: GitRepo) -> None:
    sha = repo.commit("[$(rm -rf ~)-1] innocent change", {"a": "1"})
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert [(item.sha, item.value) for item in result.rejected_ids] == [(sha, "$(rm -rf ~)-1")]


def test_hostile_trailer_id_is_rejected(repo: GitRepo) -> None:
    sha = repo.commit("Change\n\nDeploy-Batch: {{ 7*7 }}\n", {"a": "1"})
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert [(item.sha, item.value) for item in result.rejected_ids] == [(sha, "{{ 7*7 }}")]


def test_rejection_reason_shows_value(repo: GitRepo) -> None:
    repo.commit("Change\n\nDeploy-Batch: {{ 7*7 }}\n", {"a": "1"})
    reason = scan_repository(repo.path).rejected_ids[0].reason
    assert "'{{ 7*7 }}'" in reason


def test_hostile_rollback_ids_are_rejected(repo: GitRepo) -> None:
    sha = repo.commit("Change\n\nRollback: REL-1;reboot\n", {"a": "1"})
    repo.git("tag", "rollback/$(id)-1")
    result = scan_repository(repo.path)
    assert result.requests == []
    assert sorted(item.value for item in result.rejected_ids) == ["$(id)-1", "REL-1;reboot"]
    assert {item.sha for item in result.rejected_ids} == {sha}


def test_lowercase_key_is_rejected_not_used(repo: GitRepo) -> None:
    repo.commit("rel-4: change", {"a": "1"})
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert [item.value for item in result.rejected_ids] == ["rel-4"]


def test_custom_conventions(repo: GitRepo) -> None:
    conventions = BatchConventions(
        subject_patterns=(r"^(?P<key>ops-[0-9]+)\b",),
        batch_trailer=r"^Change-Set:\s*(?P<key>\S+)$",
        batch_id_pattern=r"ops-[0-9]+",
    )
    repo.commit("ops-12 tune cache", {"a": "1"})
    repo.commit("Tune more\n\nChange-Set: ops-13\n", {"b": "1"})
    batches = scan_repository(repo.path, conventions=conventions).batches
    assert sorted(batches) == ["ops-12", "ops-13"]


def test_conventions_without_key_group_raise() -> None:
    with pytest.raises(ValueError, match="named group"):
        BatchConventions(batch_trailer=r"^Deploy-Batch: (\S+)$")


def test_conventions_with_invalid_regex_raise() -> None:
    with pytest.raises(ValueError, match="invalid regex"):
        BatchConventions(rollback_tag=r"^rollback/(?P<key>[$")


def test_shallow_clone_keeps_recorded_parent(repo: GitRepo, tmp_path: Path) -> None:
    base = repo.commit("initial", {"README": "x\n"})
    repo.commit("REL-1: one", {"a": "1"})
    repo.commit("REL-2: two", {"b": "1"})
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "2", f"file://{repo.path}", str(clone)], check=True
    )
    result = scan_repository(clone)
    assert result.shallow is True
    assert sorted(result.batches) == ["REL-1", "REL-2"]
    assert result.batches["REL-1"].to_ref == base
    assert "a" in result.batches["REL-1"].files


def test_full_clone_is_not_shallow(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    assert scan_repository(repo.path).shallow is False


def test_detached_head(repo: GitRepo) -> None:
    first = repo.commit("REL-1: one", {"a": "1"})
    repo.commit("REL-2: two", {"b": "1"})
    repo.git("checkout", "-q", "--detach", first)
    result = scan_repository(repo.path)
    assert result.head == first
    assert list(result.batches) == ["REL-1"]


def test_explicit_rev(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit("REL-2: two", {"b": "1"})
    assert list(scan_repository(repo.path, rev="main").batches) == ["REL-1"]


def test_empty_repository_returns_nothing(repo: GitRepo) -> None:
    result = scan_repository(repo.path)
    assert result.batches == {}
    assert result.requests == []
    assert result.head is None


def test_unknown_rev_raises(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    with pytest.raises(CoordinatorError, match="not found"):
        scan_repository(repo.path, rev="no-such-branch")


def test_option_like_rev_raises(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    with pytest.raises(CoordinatorError, match="invalid revision"):
        scan_repository(repo.path, rev="--all")


def test_folder_that_is_not_a_repository_raises(tmp_path: Path) -> None:
    with pytest.raises(CoordinatorError, match="not a git repository"):
        scan_repository(tmp_path)


def test_batch_dict_round_trip(repo: GitRepo) -> None:
    repo.commit("initial", {"README": "x\n"})
    repo.commit("REL-1: one", {"api/a b.yaml": "1"})
    batch = scan_repository(repo.path).batches["REL-1"]
    assert Batch.from_dict(batch.to_dict()) == batch


def test_batch_from_dict_rejects_hostile_id(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    data = scan_repository(repo.path).batches["REL-1"].to_dict()
    data["id"] = "{{ 7*7 }}"
    with pytest.raises(BatchIdError):
        Batch.from_dict(data)


def test_batch_from_dict_names_missing_field(repo: GitRepo) -> None:
    repo.commit("REL-1: one", {"a": "1"})
    data = scan_repository(repo.path).batches["REL-1"].to_dict()
    del data["from_ref"]
    with pytest.raises(ValueError, match="from_ref"):
        Batch.from_dict(data)

"""Tests of the hash-chained audit file: real files, tampered with the way people do it."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from rollback_coordinator.core.audit_chain import (
    AuditChain,
    AuditChainError,
    chain_path,
    genesis_hash,
    record_hash,
    verify_chain,
)
from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.redaction import Redactor

BATCH = "REL-7"
RUN_ID = "manual__2025-03-04T10:00:00+00:00"
STEPS = 6


def step_fields(number: int, *, run_id: str = RUN_ID, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "batch": BATCH,
        "run_id": run_id,
        "service": "api",
        "step": f"step-{number}",
        "inputs": {"script": "scripts/rollback_release.sh", "attempt": number},
        "decision": {"decision": "AUTHORIZE", "decision_id": f"d-{number}"},
        "output_sha256": f"{number:02d}" * 32,
        "started_at": f"2025-03-04T10:0{number}:00+00:00",
        "ended_at": f"2025-03-04T10:0{number}:30+00:00",
    }
    fields.update(changes)
    return fields


def write_chain(path: Path, *, steps: int = STEPS, seal: bool = True) -> None:
    chain = AuditChain(path)
    for number in range(steps):
        chain.append(step_fields(number))
    if seal:
        chain.seal(batch=BATCH, run_id=RUN_ID, sealed_at="2025-03-04T10:10:00+00:00")


def chain_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def rewrite_record(path: Path, position: int, **changes: Any) -> None:
    """Change a record and recompute its own hash, as someone familiar with the format would."""
    lines = chain_lines(path)
    record = json.loads(lines[position])
    record.update(changes)
    record["hash"] = record_hash(record)
    lines[position] = json.dumps(record).encode()
    write_lines(path, lines)


@pytest.fixture
def chain_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_chain(path)
    return path


def test_untouched_chain_verifies(chain_file: Path) -> None:
    report = verify_chain(chain_file)

    assert report.valid
    assert report.problem is None
    assert report.records == STEPS + 1
    assert report.sealed
    assert not report.signed
    assert report.batch == BATCH
    assert report.run_id == RUN_ID


def test_append_returns_record_as_written(tmp_path: Path) -> None:
    chain = AuditChain(tmp_path / "audit.jsonl")

    first = chain.append(step_fields(0))
    second = chain.append(step_fields(1))

    assert chain.read() == [first, second]
    assert first["index"] == 0
    assert second["index"] == 1
    assert first["prev_hash"] == genesis_hash(BATCH, RUN_ID)
    assert second["prev_hash"] == first["hash"]
    assert first["hash"] == record_hash(first)


def test_record_has_documented_fields(tmp_path: Path) -> None:
    record = AuditChain(tmp_path / "audit.jsonl").append(step_fields(0))

    assert list(record) == [
        "index", "kind", "batch", "run_id", "service", "step", "inputs", "decision",
        "output_sha256", "started_at", "ended_at", "prev_hash", "hash",
    ]


def test_genesis_differs_between_runs() -> None:
    assert genesis_hash(BATCH, "run-a") != genesis_hash(BATCH, "run-b")
    assert genesis_hash("REL-1", RUN_ID) != genesis_hash("REL-2", RUN_ID)


def test_optional_fields_default_to_none(tmp_path: Path) -> None:
    record = AuditChain(tmp_path / "audit.jsonl").append(
        {"batch": BATCH, "run_id": RUN_ID, "step": "plan"}
    )

    assert record["service"] is None
    assert record["inputs"] is None
    assert record["output_sha256"] is None


def test_non_json_inputs_are_stored_as_text(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    inputs = {"order": ("db", "api"), "at": Path("x")}

    record = AuditChain(path).append(step_fields(0, inputs=inputs))

    assert record["inputs"] == {"order": ["db", "api"], "at": "x"}
    assert verify_chain(path, require_seal=False).valid


def test_seal_closes_chain(chain_file: Path) -> None:
    records = AuditChain(chain_file).read()
    seal = records[-1]

    assert seal["kind"] == "seal"
    assert seal["count"] == STEPS
    assert seal["head_hash"] == records[-2]["hash"]


def test_empty_chain_can_be_sealed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditChain(path).seal(batch=BATCH, run_id=RUN_ID)

    report = verify_chain(path)

    assert report.valid
    assert report.records == 1


def test_append_after_seal_is_rejected(chain_file: Path) -> None:
    with pytest.raises(AuditChainError, match="sealed"):
        AuditChain(chain_file).append(step_fields(STEPS))


def test_second_seal_is_rejected(chain_file: Path) -> None:
    with pytest.raises(AuditChainError, match="sealed"):
        AuditChain(chain_file).seal(batch=BATCH, run_id=RUN_ID)


def test_append_from_other_run_is_rejected(chain_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    write_chain(path, seal=False)

    with pytest.raises(AuditChainError, match="belongs to batch REL-7 run"):
        AuditChain(path).append(step_fields(9, run_id="scheduled__other"))


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(AuditChainError, match="unknown audit record field.*outcome"):
        AuditChain(tmp_path / "audit.jsonl").append({**step_fields(0), "outcome": "ok"})


def test_missing_step_is_rejected(tmp_path: Path) -> None:
    fields = step_fields(0)
    del fields["step"]

    with pytest.raises(AuditChainError, match="field 'step' is missing"):
        AuditChain(tmp_path / "audit.jsonl").append(fields)


def test_nan_input_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(AuditChainError, match="NaN"):
        AuditChain(tmp_path / "audit.jsonl").append(step_fields(0, inputs={"ratio": float("nan")}))


def test_audit_chain_error_is_coordinator_error() -> None:
    assert issubclass(AuditChainError, CoordinatorError)


def test_chain_lives_in_run_folder(tmp_path: Path) -> None:
    path = chain_path(tmp_path / "runs", BATCH, RUN_ID)

    assert path == tmp_path / "runs" / BATCH / "manual__2025-03-04T10_00_00_00_00" / "audit.jsonl"


def test_append_creates_missing_folders(tmp_path: Path) -> None:
    path = chain_path(tmp_path / "runs", BATCH, RUN_ID)
    AuditChain(path).append(step_fields(0))

    assert len(chain_lines(path)) == 1


def test_redactor_masks_secrets_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    chain = AuditChain(path, redactor=Redactor(["hunter2-secret"]))

    chain.append(step_fields(0, inputs={"env": "PGPASSWORD=hunter2-secret"}))

    assert b"hunter2-secret" not in path.read_bytes()
    assert verify_chain(path, require_seal=False).valid


def test_changed_byte_reports_hash_mismatch(chain_file: Path) -> None:
    data = bytearray(chain_file.read_bytes())
    offset = data.index(b'"step-2"') + len(b'"step-')
    data[offset] = ord("9")
    chain_file.write_bytes(bytes(data))

    report = verify_chain(chain_file)

    assert not report.valid
    assert report.problem is not None
    assert report.problem.kind == "hash_mismatch"
    assert report.problem.index == 2


def test_changed_hash_field_reports_hash_mismatch(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    record = json.loads(lines[4])
    lines[4] = lines[4].replace(record["hash"].encode(), b"0" * 64)
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "hash_mismatch"
    assert problem.index == 4


def test_deleted_record_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    del lines[3]
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "deleted"
    assert problem.index == 3


def test_deleted_first_record_is_reported(chain_file: Path) -> None:
    write_lines(chain_file, chain_lines(chain_file)[1:])

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "deleted"
    assert problem.index == 0


def test_deleted_last_step_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    del lines[STEPS - 1]
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "deleted"
    assert problem.index == STEPS - 1


def test_reordered_records_are_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "reordered"
    assert problem.index == 2


def test_record_moved_to_end_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    lines.insert(STEPS, lines.pop(1))
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "reordered"
    assert problem.index == 1


def test_duplicated_record_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    lines.insert(3, lines[2])
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "duplicated"
    assert problem.index == 3


def test_record_cut_midway_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    kept = b"".join(line + b"\n" for line in lines[:4]) + lines[4][:40]
    chain_file.write_bytes(kept)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "truncated"
    assert problem.index == 4


def test_missing_final_newline_is_reported(chain_file: Path) -> None:
    chain_file.write_bytes(chain_file.read_bytes()[:-1])

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "truncated"
    assert problem.index == STEPS


def test_removed_trailing_records_are_reported(chain_file: Path) -> None:
    write_lines(chain_file, chain_lines(chain_file)[:4])

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "unsealed"
    assert problem.index == 4


def test_removed_seal_is_reported(chain_file: Path) -> None:
    write_lines(chain_file, chain_lines(chain_file)[:-1])

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "unsealed"
    assert problem.index == STEPS


def test_emptied_file_is_reported(chain_file: Path) -> None:
    chain_file.write_bytes(b"")

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "unsealed"
    assert problem.index == 0


def test_unsealed_chain_passes_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_chain(path, seal=False)

    report = verify_chain(path, require_seal=False)

    assert report.valid
    assert not report.sealed


def test_rehashed_record_breaks_next_link(chain_file: Path) -> None:
    rewrite_record(chain_file, 2, service="worker")

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "prev_hash_mismatch"
    assert problem.index == 3


def test_rehashed_first_record_breaks_genesis_link(chain_file: Path) -> None:
    rewrite_record(chain_file, 0, prev_hash="1" * 64)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "prev_hash_mismatch"
    assert problem.index == 0


def test_rehashed_record_of_other_run_is_reported(chain_file: Path) -> None:
    rewrite_record(chain_file, 3, run_id="scheduled__other")

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "wrong_run"
    assert problem.index == 3


def test_rehashed_seal_with_wrong_count_is_reported(chain_file: Path) -> None:
    rewrite_record(chain_file, STEPS, count=STEPS - 1)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "bad_seal"
    assert problem.index == STEPS


def test_record_after_seal_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    write_lines(chain_file, [*lines, lines[1]])

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "after_seal"
    assert problem.index == STEPS + 1


def test_garbage_line_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    lines[2] = b"not json at all"
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "malformed"
    assert problem.index == 2


def test_duplicate_json_key_is_reported(chain_file: Path) -> None:
    lines = chain_lines(chain_file)
    lines[1] = lines[1][:-1] + b',"service":"api"}'
    write_lines(chain_file, lines)

    problem = verify_chain(chain_file).problem

    assert problem is not None
    assert problem.kind == "malformed"
    assert problem.index == 1


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(AuditChainError, match="no audit chain file"):
        verify_chain(tmp_path / "absent.jsonl")


def test_append_to_cut_file_is_rejected(chain_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    write_chain(path, seal=False)
    path.write_bytes(path.read_bytes()[:-10])

    with pytest.raises(AuditChainError, match="incomplete"):
        AuditChain(path).append(step_fields(STEPS))


def test_append_after_long_record_finds_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    chain = AuditChain(path)
    chain.append(step_fields(0, inputs={"output": "x" * 20_000}))
    chain.append(step_fields(1, inputs={"output": "y" * 9_000}))

    record = chain.append(step_fields(2))

    assert record["index"] == 2
    assert verify_chain(path, require_seal=False).valid


def append_steps(path: str, run_id: str, worker: int, count: int, barrier: Any) -> None:
    """Append ``count`` step records, starting only when every worker process is ready."""
    chain = AuditChain(Path(path))
    barrier.wait()
    for number in range(count):
        chain.append(step_fields(number, run_id=run_id, step=f"worker-{worker}-step-{number}"))


def run_workers(jobs: list[tuple[str, str, int]], count: int) -> list[int | None]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs))
    processes = [
        context.Process(target=append_steps, args=(path, run_id, worker, count, barrier))
        for path, run_id, worker in jobs
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    return [process.exitcode for process in processes]


def test_two_processes_share_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    exit_codes = run_workers([(str(path), RUN_ID, 0), (str(path), RUN_ID, 1)], count=60)
    AuditChain(path).seal(batch=BATCH, run_id=RUN_ID)

    assert exit_codes == [0, 0]
    report = verify_chain(path)
    assert report.valid
    assert report.records == 121
    steps = sorted(record["step"] for record in AuditChain(path).read()[:-1])
    expected = sorted(f"worker-{worker}-step-{number}" for worker in (0, 1) for number in range(60))
    assert steps == expected


def test_two_runs_append_concurrently(tmp_path: Path) -> None:
    first = tmp_path / "run-a" / "audit.jsonl"
    second = tmp_path / "run-b" / "audit.jsonl"

    exit_codes = run_workers([(str(first), "run-a", 0), (str(second), "run-b", 1)], count=60)

    assert exit_codes == [0, 0]
    for path, run_id in ((first, "run-a"), (second, "run-b")):
        AuditChain(path).seal(batch=BATCH, run_id=run_id)
        report = verify_chain(path)
        assert report.valid
        assert report.records == 61
        assert report.run_id == run_id

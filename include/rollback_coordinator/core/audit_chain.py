"""The full audit of one run: a hash-chained JSON-lines file, one record per step.

Each line is one JSON object. A step record has the fields ``index, kind ("step"), batch,
run_id, service, step, inputs, decision, output_sha256, started_at, ended_at, prev_hash,
hash``. ``hash`` is the SHA-256 (hex) of the record's canonical JSON without ``hash`` and
``signature``: keys sorted, no spaces, non-ASCII escaped. ``prev_hash`` is the previous
record's hash, or for the first record a genesis value derived from the batch and run id, so a
record cannot move to another run's chain unnoticed. In a signed chain every record also has
``key_id`` (inside the hash) and ``signature``, the base64 Ed25519 signature of the ASCII hex
hash.

When the run ends, a seal record (``kind`` "seal") closes the chain with the number of records
before it (``count``) and the hash of the last one (``head_hash``). Without the seal, removing
whole records from the end would leave a shorter chain that looks complete. Nothing can be
appended after the seal.

Writers in several processes are serialised by an exclusive ``flock`` on the chain file, held
while the last record is read and the new one written, so no record is lost or interleaved.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rollback_coordinator.core.errors import CoordinatorError
from rollback_coordinator.core.redaction import Redactor
from rollback_coordinator.core.run_records import RunRecords
from rollback_coordinator.core.signing import (
    Signer,
    key_id_of,
    public_key_file_name,
    read_public_key,
    verify_signature,
)

CHAIN_FILE_NAME = "audit.jsonl"
GENESIS_LABEL = "rollback-coordinator audit chain v1"

STEP = "step"
SEAL = "seal"

STEP_FIELDS = (
    "batch",
    "run_id",
    "service",
    "step",
    "inputs",
    "decision",
    "output_sha256",
    "started_at",
    "ended_at",
)
REQUIRED_STEP_FIELDS = ("batch", "run_id", "step")

# Fields outside the hashed content: the hash itself, and the signature made over the hash.
UNHASHED_FIELDS = frozenset({"hash", "signature"})

_TAIL_BLOCK = 4096


class AuditChainError(CoordinatorError):
    """An audit chain file that cannot be read or appended to."""


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Return the bytes that are hashed: sorted keys, no spaces, ASCII only, no NaN."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return text.encode("ascii")


def record_hash(record: Mapping[str, Any]) -> str:
    hashed = {key: value for key, value in record.items() if key not in UNHASHED_FIELDS}
    return hashlib.sha256(canonical_json(hashed)).hexdigest()


def genesis_hash(batch: str, run_id: str) -> str:
    """Return the ``prev_hash`` of a run's first record."""
    seed = {"batch": batch, "chain": GENESIS_LABEL, "run_id": run_id}
    return hashlib.sha256(canonical_json(seed)).hexdigest()


def chain_path(runs_dir: Path, batch: str, run_id: str) -> Path:
    """Return where a run's chain lives: beside its step records, in the run's folder."""
    return RunRecords(runs_dir, batch, run_id).folder / CHAIN_FILE_NAME


def utc_timestamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class AuditChain:
    """The chain file of one run.

    Pass a ``signer`` to write a signed chain, and a ``redactor`` to mask secrets in every
    field before it is hashed and written.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        signer: Signer | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.path = Path(path)
        self.signer = signer
        self.redactor = redactor

    def append(self, record_fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one step record and return it as written, with index, hashes and signature.

        ``record_fields`` contains the STEP_FIELDS. batch, run_id and step are required, and
        the rest default to None. Values must be JSON data; other objects are stored as their str().
        """
        fields = _step_fields(record_fields, self.path)
        if self.redactor is not None:
            fields = self.redactor.redact(fields)
        with self._locked() as handle:
            last = _last_record(handle, self.path)
            self._check_can_extend(last, fields["batch"], fields["run_id"])
            record = {"index": _next_index(last), "kind": STEP, **fields}
            record["prev_hash"] = _prev_hash(last, fields["batch"], fields["run_id"])
            return self._write(handle, record)

    def seal(self, *, batch: str, run_id: str, sealed_at: str | None = None) -> dict[str, Any]:
        """Close the chain with a seal record and return it. An empty chain can be sealed."""
        with self._locked() as handle:
            last = _last_record(handle, self.path)
            self._check_can_extend(last, batch, run_id)
            index = _next_index(last)
            head_hash = _prev_hash(last, batch, run_id)
            record = {
                "index": index,
                "kind": SEAL,
                "batch": batch,
                "run_id": run_id,
                "count": index,
                "head_hash": head_hash,
                "sealed_at": sealed_at or utc_timestamp(),
                "prev_hash": head_hash,
            }
            return self._write(handle, record)

    def read(self) -> list[dict[str, Any]]:
        """Return every record in file order. Raises on a line that is not a JSON object."""
        data = _read_chain_bytes(self.path)
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except ValueError as error:
                raise AuditChainError(
                    f"{self.path}:{number}: not a JSON record ({error}); run "
                    f"`rollback-coordinator audit verify {self.path}` to see what is wrong"
                ) from error
            records.append(record)
        return records

    def _check_can_extend(self, last: dict[str, Any] | None, batch: str, run_id: str) -> None:
        if last is None:
            return
        if last.get("kind") == SEAL:
            raise AuditChainError(
                f"{self.path}: the chain is sealed (record {last.get('index')}); a finished "
                f"run's audit cannot be extended, so write to a new run's chain"
            )
        if (last.get("batch"), last.get("run_id")) != (batch, run_id):
            raise AuditChainError(
                f"{self.path}: the chain belongs to batch {last.get('batch')} run "
                f"{last.get('run_id')}, not batch {batch} run {run_id}; use one chain file "
                f"per run (chain_path)"
            )
        signed_by = last.get("key_id")
        signing_with = self.signer.key_id if self.signer else None
        if signed_by != signing_with:
            raise AuditChainError(
                f"{self.path}: the chain is signed by key {signed_by or 'none'} but this "
                f"append uses key {signing_with or 'none'}; every record of a run must be "
                f"signed by the same key, or none"
            )

    def _write(self, handle: IO[bytes], record: dict[str, Any]) -> dict[str, Any]:
        if self.signer is not None:
            record["key_id"] = self.signer.key_id
        record["hash"] = record_hash(record)
        if self.signer is not None:
            record["signature"] = self.signer.sign(record["hash"].encode("ascii"))
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        try:
            # One write of one whole line. Append mode puts it at the end of the file.
            handle.write(line.encode("ascii") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as error:
            raise AuditChainError(
                f"{self.path}: failed to write audit record {record['index']} ({error}); free "
                f"disk space or fix the folder's permissions, then run `rollback-coordinator "
                f"audit verify {self.path}`"
            ) from error
        return record

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+b")
        except OSError as error:
            raise AuditChainError(
                f"{self.path}: cannot open the audit chain for writing ({error}); make the "
                f"folder writable by this user"
            ) from error
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _step_fields(record_fields: Mapping[str, Any], path: Path) -> dict[str, Any]:
    unknown = sorted(set(record_fields) - set(STEP_FIELDS))
    if unknown:
        raise AuditChainError(
            f"{path}: unknown audit record field(s) {', '.join(unknown)}; a step record has "
            f"only {', '.join(STEP_FIELDS)} (put anything else under inputs)"
        )
    for name in REQUIRED_STEP_FIELDS:
        value = record_fields.get(name)
        if not isinstance(value, str) or not value:
            raise AuditChainError(
                f"{path}: audit record field '{name}' is missing or empty; it must be a "
                f"non-empty string"
            )
    fields = {name: record_fields.get(name) for name in STEP_FIELDS}
    try:
        # A JSON round trip stores exactly what is hashed: tuples become lists, other
        # objects their str().
        return json.loads(json.dumps(fields, default=str, allow_nan=False))
    except ValueError as error:
        raise AuditChainError(
            f"{path}: audit record of step '{fields['step']}' is not valid JSON data "
            f"({error}); replace NaN or infinite numbers with null or a string"
        ) from error


def _next_index(last: dict[str, Any] | None) -> int:
    return 0 if last is None else int(last["index"]) + 1


def _prev_hash(last: dict[str, Any] | None, batch: str, run_id: str) -> str:
    return genesis_hash(batch, run_id) if last is None else str(last["hash"])


def _last_record(handle: IO[bytes], path: Path) -> dict[str, Any] | None:
    line = _last_line(handle, path)
    if line is None:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or "index" not in record or "hash" not in record:
        raise AuditChainError(
            f"{path}: the last line is not an audit record, so nothing can be chained to it; "
            f"run `rollback-coordinator audit verify {path}` to see what is wrong"
        )
    return record


def _last_line(handle: IO[bytes], path: Path) -> bytes | None:
    """Return the file's last line without its newline, or None for an empty file.

    Reads backwards from the end in blocks, so appending costs the same on a long chain.
    """
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return None
    handle.seek(size - 1)
    if handle.read(1) != b"\n":
        raise AuditChainError(
            f"{path}: the last record is incomplete (no final newline), so the file was cut "
            f"or a write was interrupted; run `rollback-coordinator audit verify {path}`"
        )
    end = size - 1
    start = end
    while start > 0:
        block = min(_TAIL_BLOCK, start)
        handle.seek(start - block)
        cut = handle.read(block).rfind(b"\n")
        if cut != -1:
            start = start - block + cut + 1
            break
        start -= block
    handle.seek(start)
    return handle.read(end - start)


def _read_chain_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise AuditChainError(
            f"{path}: no audit chain file here; a run's chain is "
            f"<ROLLBACK_DATA_DIR>/runs/<batch>/<run>/{CHAIN_FILE_NAME}, or under records/ in "
            f"the audit repository"
        ) from error
    except OSError as error:
        raise AuditChainError(f"{path}: cannot read the audit chain ({error})") from error


# Kinds of problem verify_chain reports, each at the index of the first bad record.
MALFORMED = "malformed"
HASH_MISMATCH = "hash_mismatch"
PREV_HASH_MISMATCH = "prev_hash_mismatch"
DELETED = "deleted"
REORDERED = "reordered"
DUPLICATED = "duplicated"
WRONG_RUN = "wrong_run"
TRUNCATED = "truncated"
UNSEALED = "unsealed"
BAD_SEAL = "bad_seal"
AFTER_SEAL = "after_seal"
UNSIGNED = "unsigned"
WRONG_KEY = "wrong_key"
BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with a chain: the record index (0-based line number), the kind
    of problem and a sentence for the reader."""

    index: int
    kind: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verify_chain. ``records`` counts the lines that parsed as records."""

    path: Path
    problem: Problem | None
    records: int
    sealed: bool
    signed: bool
    batch: str | None = None
    run_id: str | None = None
    head_hash: str | None = None
    key_id: str | None = None
    key_source: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["valid"] = self.valid
        return data


def verify_chain(
    path: str | Path,
    public_key: Ed25519PublicKey | str | Path | None = None,
    *,
    require_seal: bool = True,
) -> VerifyReport:
    """Check a chain file and report the first bad record, or none.

    Records are checked in file order: each must parse, match its hash, carry a valid
    signature (when a key applies), sit at the position its index names, and link to the
    record before it. Then the file must end in a newline and, when ``require_seal``, in a
    seal. A signed chain is checked with ``public_key`` or, when that is None, with the key
    published as ``<key id>.pub.pem`` beside the chain or in a ``keys/`` folder above it,
    up to the enclosing git repository. Raises AuditChainError when the file cannot be read or
    a signed chain has no key to check it with.
    """
    source = Path(path)
    lines, tail = _split_lines(_read_chain_bytes(source))
    records = [_parse_line(line) for line in lines]
    parsed = [record for record in records if isinstance(record, dict)]
    key, key_source = _verification_key(source, parsed, public_key)

    problem = _first_record_problem(records, key)
    if problem is None and tail is not None:
        problem = Problem(
            len(records),
            TRUNCATED,
            f"record {len(records)} is incomplete: the file does not end in a newline, so it "
            f"was cut or a write was interrupted",
        )
    last = records[-1] if records else None
    sealed = isinstance(last, dict) and last.get("kind") == SEAL
    if problem is None and require_seal and not sealed:
        problem = Problem(
            len(records),
            UNSEALED,
            f"the chain ends after {len(records)} records without a seal, so records after "
            f"them may have been removed (or the run has not finished)",
        )
    first = records[0] if records and isinstance(records[0], dict) else {}
    return VerifyReport(
        path=source,
        problem=problem,
        records=len(parsed),
        sealed=sealed,
        signed=any("signature" in record or "key_id" in record for record in parsed),
        batch=first.get("batch"),
        run_id=first.get("run_id"),
        head_hash=last.get("hash") if isinstance(last, dict) else None,
        key_id=key_id_of(key) if key is not None else None,
        key_source=key_source,
    )


def _split_lines(data: bytes) -> tuple[list[bytes], bytes | None]:
    """Return the complete lines and the unterminated remainder, if any.

    Only b"\\n" ends a line: records are ASCII, so no other line separator can occur.
    """
    if not data:
        return [], None
    lines = data.split(b"\n")
    tail = lines.pop()
    return lines, tail or None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {', '.join(duplicates)}")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _parse_line(line: bytes) -> dict[str, Any] | str:
    """Return the record, or a description of why the line is not one."""
    try:
        record = json.loads(
            line, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except ValueError as error:
        return f"not a valid JSON record ({error})"
    if not isinstance(record, dict):
        return "not a JSON object"
    return _structure_problem(record) or record


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _is_anything(value: Any) -> bool:
    return True


def _structure_problem(record: dict[str, Any]) -> str | None:
    checks = [
        ("index", _is_index),
        ("kind", lambda value: value in (STEP, SEAL)),
        ("batch", _is_text),
        ("run_id", _is_text),
        ("prev_hash", _is_hash),
        ("hash", _is_hash),
    ]
    if record.get("kind") == SEAL:
        checks += [("count", _is_index), ("head_hash", _is_hash), ("sealed_at", _is_text)]
    else:
        checks += [("step", _is_text), ("inputs", _is_anything), ("decision", _is_anything)]
        checks += [
            (name, _is_optional_text)
            for name in ("service", "output_sha256", "started_at", "ended_at")
        ]
    for name, is_valid in checks:
        if name not in record:
            return f"field '{name}' is missing"
        if not is_valid(record[name]):
            return f"field '{name}' has an invalid value"
    for name in ("key_id", "signature"):
        if name in record and not _is_text(record[name]):
            return f"field '{name}' has an invalid value"
    return None


def _verification_key(
    source: Path,
    records: list[dict[str, Any]],
    public_key: Ed25519PublicKey | str | Path | None,
) -> tuple[Ed25519PublicKey | None, str | None]:
    """Return the key to check signatures with and where it came from, or (None, None)."""
    if isinstance(public_key, Ed25519PublicKey):
        return public_key, "given key"
    if public_key is not None:
        return read_public_key(public_key), str(public_key)

    key_ids = [record["key_id"] for record in records if "key_id" in record]
    if not key_ids and not any("signature" in record for record in records):
        return None, None
    key_id = key_ids[0] if key_ids else ""
    found = _find_published_key(source, key_id) if _KEY_ID.fullmatch(key_id) else None
    if found is None:
        raise AuditChainError(
            f"{source}: the records are signed by key {key_id or '(no key id)'}, but no "
            f"{public_key_file_name(key_id or '<key id>')} was found beside the chain or in a "
            f"keys/ folder above it; pass the public key with --public-key FILE"
        )
    key = read_public_key(found)
    if key_id_of(key) != key_id:
        raise AuditChainError(
            f"{found}: the file is named for key {key_id} but contains key "
            f"{key_id_of(key)}; replace it with the published key, or pass the right one with "
            f"--public-key"
        )
    return key, str(found)


_KEY_ID = re.compile(r"[0-9a-f]{16}")


def _find_published_key(chain_file: Path, key_id: str) -> Path | None:
    name = public_key_file_name(key_id)
    start = chain_file.resolve().parent
    for folder in (start, *start.parents):
        for candidate in (folder / name, folder / "keys" / name):
            if candidate.is_file():
                return candidate
        # The audit repository's root is as far up as a key belonging to it can be.
        if (folder / ".git").exists():
            break
    return None


def _first_record_problem(
    records: list[dict[str, Any] | str], key: Ed25519PublicKey | None
) -> Problem | None:
    indexes = {record["index"] for record in records if isinstance(record, dict)}
    key_id = key_id_of(key) if key is not None else None
    seen_hashes: set[str] = set()
    previous: dict[str, Any] | None = None
    first: dict[str, Any] = {}
    for position, record in enumerate(records):
        if isinstance(record, str):
            return Problem(position, MALFORMED, f"record {position} is {record}")
        first = first or record
        if previous is not None and previous["kind"] == SEAL:
            return Problem(
                position,
                AFTER_SEAL,
                f"record {position} comes after the seal (record {previous['index']}); "
                f"nothing may follow a seal",
            )
        problem = (
            _hash_problem(position, record)
            or _signature_problem(position, record, key, key_id)
            or _position_problem(position, record, indexes, seen_hashes)
            or _link_problem(position, record, previous, first)
            or _seal_problem(position, record)
        )
        if problem is not None:
            return problem
        seen_hashes.add(record["hash"])
        previous = record
    return None


def _hash_problem(position: int, record: dict[str, Any]) -> Problem | None:
    try:
        computed = record_hash(record)
    except ValueError as error:
        return Problem(position, MALFORMED, f"record {position} cannot be hashed ({error})")
    if computed == record["hash"]:
        return None
    return Problem(
        position,
        HASH_MISMATCH,
        f"record {position} does not match its hash: it was changed after it was written",
    )


def _signature_problem(
    position: int, record: dict[str, Any], key: Ed25519PublicKey | None, key_id: str | None
) -> Problem | None:
    if key is None:
        return None
    if "signature" not in record or "key_id" not in record:
        return Problem(position, UNSIGNED, f"record {position} has no signature")
    if record["key_id"] != key_id:
        return Problem(
            position,
            WRONG_KEY,
            f"record {position} is signed by key {record['key_id']}, not by the key used to "
            f"verify ({key_id})",
        )
    if not verify_signature(key, record["hash"].encode("ascii"), record["signature"]):
        return Problem(
            position,
            BAD_SIGNATURE,
            f"record {position} has an invalid signature for key {key_id}",
        )
    return None


def _position_problem(
    position: int, record: dict[str, Any], indexes: set[int], seen_hashes: set[str]
) -> Problem | None:
    claimed = record["index"]
    if claimed == position:
        return None
    if claimed < position and record["hash"] in seen_hashes:
        return Problem(
            position, DUPLICATED, f"record {position} is a second copy of record {claimed}"
        )
    if claimed < position or position in indexes:
        return Problem(
            position,
            REORDERED,
            f"record {position} is out of order: its place holds record {claimed}",
        )
    return Problem(
        position,
        DELETED,
        f"record {position} is missing: the record in its place is record {claimed}",
    )


def _link_problem(
    position: int,
    record: dict[str, Any],
    previous: dict[str, Any] | None,
    first: dict[str, Any],
) -> Problem | None:
    if (record["batch"], record["run_id"]) != (first["batch"], first["run_id"]):
        return Problem(
            position,
            WRONG_RUN,
            f"record {position} belongs to batch {record['batch']} run {record['run_id']}, "
            f"not to this chain's batch {first['batch']} run {first['run_id']}",
        )
    if previous is None:
        expected = genesis_hash(first["batch"], first["run_id"])
        link = "the start value of this batch and run"
    else:
        expected = previous["hash"]
        link = f"the hash of record {position - 1}"
    if record["prev_hash"] == expected:
        return None
    return Problem(
        position,
        PREV_HASH_MISMATCH,
        f"record {position} does not link to {link}: a record before it was removed or "
        f"replaced",
    )


def _seal_problem(position: int, record: dict[str, Any]) -> Problem | None:
    if record["kind"] != SEAL:
        return None
    if record["count"] != position:
        return Problem(
            position,
            BAD_SEAL,
            f"the seal (record {position}) counts {record['count']} records, but {position} "
            f"come before it",
        )
    if record["head_hash"] != record["prev_hash"]:
        return Problem(
            position,
            BAD_SEAL,
            f"the seal (record {position}) names a head hash other than the hash of the "
            f"record before it",
        )
    return None

"""Tests of `rollback-coordinator audit verify` as a separate process, on real chain files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_coordinator.core.audit_chain import AuditChain
from rollback_coordinator.core.signing import KeyPair, Signer, generate_keypair

BATCH = "REL-12"
RUN_ID = "manual__2025-03-07T12:00:00+00:00"
STEPS = 4

# Builds the command line the way cli/main.py does (each subcommand module's add_parser, a
# --json flag, run() as the handler, CoordinatorError as exit 3), with only the audit module.
COMMAND = [sys.executable, "-m", "rollback_coordinator.cli.main"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=120, check=False
    )


def write_chain(path: Path, *, signer: Signer | None = None, seal: bool = True) -> None:
    chain = AuditChain(path, signer=signer)
    for number in range(STEPS):
        chain.append(
            {
                "batch": BATCH,
                "run_id": RUN_ID,
                "service": "worker",
                "step": f"step-{number}",
                "inputs": {"number": number},
                "decision": {"decision": "AUTHORIZE"},
            }
        )
    if seal:
        chain.seal(batch=BATCH, run_id=RUN_ID)


def change_byte(path: Path, marker: bytes) -> None:
    data = bytearray(path.read_bytes())
    offset = data.index(marker) + len(marker) - 2
    data[offset] = ord("X")
    path.write_bytes(bytes(data))


@pytest.fixture
def chain_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_chain(path)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_keypair(tmp_path / "secrets")


def test_valid_chain_exits_zero(chain_file: Path) -> None:
    result = cli("audit", "verify", str(chain_file))

    assert result.returncode == 0, result.stderr
    assert f"{chain_file}: valid, {STEPS + 1} records, sealed" in result.stdout
    assert f"batch {BATCH}, run {RUN_ID}" in result.stdout


def test_valid_chain_as_json(chain_file: Path) -> None:
    result = cli("audit", "verify", str(chain_file), "--json")
    report = json.loads(result.stdout)

    assert result.returncode == 0
    assert report["valid"] is True
    assert report["problem"] is None
    assert report["records"] == STEPS + 1
    assert report["sealed"] is True
    assert report["path"] == str(chain_file)


def test_json_flag_works_before_action(chain_file: Path) -> None:
    result = cli("audit", "--json", "verify", str(chain_file))

    assert result.returncode == 0
    assert json.loads(result.stdout)["valid"] is True


def test_changed_byte_exits_five(chain_file: Path) -> None:
    change_byte(chain_file, b'"step-2"')

    result = cli("audit", "verify", str(chain_file), "--json")
    report = json.loads(result.stdout)

    assert result.returncode == 5
    assert report["valid"] is False
    assert report["problem"]["index"] == 2
    assert report["problem"]["kind"] == "hash_mismatch"


def test_broken_chain_names_record_in_text(chain_file: Path) -> None:
    lines = chain_file.read_bytes().split(b"\n")
    del lines[1]
    chain_file.write_bytes(b"\n".join(lines))

    result = cli("audit", "verify", str(chain_file))

    assert result.returncode == 5
    assert "broken at record 1 (deleted)" in result.stdout


def test_signed_chain_verifies_with_public_key(tmp_path: Path, keys: KeyPair) -> None:
    path = tmp_path / "signed.jsonl"
    write_chain(path, signer=Signer.from_file(keys.private_key_path))

    result = cli("audit", "verify", str(path), "--public-key", str(keys.public_key_path))

    assert result.returncode == 0, result.stderr
    assert f"signed by key {keys.key_id}" in result.stdout


def test_wrong_key_exits_five(tmp_path: Path, keys: KeyPair) -> None:
    path = tmp_path / "signed.jsonl"
    write_chain(path, signer=Signer.from_file(keys.private_key_path))
    other = generate_keypair(tmp_path / "other")

    result = cli("audit", "verify", str(path), "--public-key", str(other.public_key_path), "--json")
    report = json.loads(result.stdout)

    assert result.returncode == 5
    assert report["problem"]["kind"] == "wrong_key"
    assert report["problem"]["index"] == 0


def test_signed_chain_without_key_exits_three(tmp_path: Path, keys: KeyPair) -> None:
    path = tmp_path / "signed.jsonl"
    write_chain(path, signer=Signer.from_file(keys.private_key_path))

    result = cli("audit", "verify", str(path), "--json")
    error = json.loads(result.stdout)

    assert result.returncode == 3
    assert error["exit_code"] == 3
    assert "--public-key" in error["error"]


def test_missing_file_exits_three(tmp_path: Path) -> None:
    result = cli("audit", "verify", str(tmp_path / "absent.jsonl"))

    assert result.returncode == 3
    assert "no audit chain file" in result.stderr


def test_unsealed_chain_exits_five_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    write_chain(path, seal=False)

    strict = cli("audit", "verify", str(path))
    allowed = cli("audit", "verify", str(path), "--allow-unsealed")

    assert strict.returncode == 5
    assert "(unsealed)" in strict.stdout
    assert allowed.returncode == 0
    assert "not sealed" in allowed.stdout


def test_help_lists_exit_codes() -> None:
    result = cli("audit", "verify", "--help")

    assert result.returncode == 0
    assert "--public-key FILE" in result.stdout
    assert "5 it is broken" in result.stdout

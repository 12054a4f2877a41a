"""Tests of Ed25519 signing keys and of signed audit chains, on real key files."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rollback_coordinator.core.audit_chain import (
    AuditChain,
    AuditChainError,
    record_hash,
    verify_chain,
)
from rollback_coordinator.core.signing import (
    KeyPair,
    Signer,
    SigningError,
    generate_keypair,
    key_id_of,
    load_public_key,
    publish_public_key,
    read_public_key,
    verify_signature,
)

BATCH = "REL-9"
RUN_ID = "manual__2025-03-05T09:00:00+00:00"
STEPS = 5


def step_fields(number: int) -> dict[str, object]:
    return {
        "batch": BATCH,
        "run_id": RUN_ID,
        "service": "db",
        "step": f"step-{number}",
        "inputs": {"number": number},
        "decision": {"decision": "AUTHORIZE"},
        "output_sha256": None,
        "started_at": "2025-03-05T09:00:00+00:00",
        "ended_at": "2025-03-05T09:00:05+00:00",
    }


def write_signed_chain(path: Path, signer: Signer) -> None:
    chain = AuditChain(path, signer=signer)
    for number in range(STEPS):
        chain.append(step_fields(number))
    chain.seal(batch=BATCH, run_id=RUN_ID)


def chain_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def raw_private_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_keypair(tmp_path / "secrets")


@pytest.fixture
def signer(keys: KeyPair) -> Signer:
    return Signer.from_file(keys.private_key_path)


@pytest.fixture
def signed_chain(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "records" / "audit.jsonl"
    write_signed_chain(path, signer)
    return path


def test_key_id_is_public_key_digest(signer: Signer) -> None:
    raw = signer.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )

    assert signer.key_id == hashlib.sha256(raw).hexdigest()[:16]


def test_generate_keypair_writes_private_key_owner_only(keys: KeyPair) -> None:
    mode = stat.S_IMODE(keys.private_key_path.stat().st_mode)

    assert mode == 0o600
    assert keys.public_key_path.name == f"{keys.key_id}.pub.pem"
    assert key_id_of(read_public_key(keys.public_key_path)) == keys.key_id


def test_generate_keypair_never_overwrites_key(keys: KeyPair) -> None:
    before = keys.private_key_path.read_bytes()

    with pytest.raises(SigningError, match="already exists"):
        generate_keypair(keys.private_key_path.parent)

    assert keys.private_key_path.read_bytes() == before


def test_private_key_loads_from_every_encoding(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    raw = raw_private_bytes(key)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    raw_file = tmp_path / "raw.key"
    raw_file.write_bytes(raw)
    expected = key_id_of(key.public_key())

    signers = {
        "raw file": Signer.from_file(raw_file),
        "raw bytes": Signer.from_bytes(raw, source="test"),
        "base64 raw (connection password)": Signer.from_bytes(
            base64.b64encode(raw).decode(), source="connection audit_signing_key"
        ),
        "PEM": Signer.from_bytes(pem, source="test"),
        "base64 PEM": Signer.from_bytes(base64.b64encode(pem), source="test"),
    }

    for encoding, loaded in signers.items():
        assert loaded.key_id == expected, encoding


def test_raw_key_with_whitespace_bytes_loads_unchanged() -> None:
    raw = b" " + bytes(range(1, 30)) + b"\n\n"
    key = Ed25519PrivateKey.from_private_bytes(raw)

    assert Signer.from_bytes(raw, source="test").key_id == key_id_of(key.public_key())


def test_encrypted_pem_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "encrypted.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )

    with pytest.raises(SigningError, match="encrypted"):
        Signer.from_file(path)


def test_rsa_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(SigningError, match="not Ed25519"):
        Signer.from_file(path)


def test_invalid_key_error_never_quotes_key(tmp_path: Path) -> None:
    material = "c2VjcmV0LWtleS1tYXRlcmlhbA-not-a-key"

    with pytest.raises(SigningError) as raised:
        Signer.from_bytes(material, source="connection audit_signing_key")

    assert material not in str(raised.value)
    assert "connection audit_signing_key" in str(raised.value)


def test_missing_key_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="absent.pem"):
        Signer.from_file(tmp_path / "absent.pem")


def test_private_key_is_rejected_as_public_key(keys: KeyPair) -> None:
    with pytest.raises(SigningError, match="this is a private key"):
        load_public_key(keys.private_key_path.read_bytes(), source="test")


def test_signature_verifies_only_its_message(signer: Signer) -> None:
    signature = signer.sign(b"record hash")

    assert verify_signature(signer.public_key, b"record hash", signature)
    assert not verify_signature(signer.public_key, b"other hash", signature)
    assert not verify_signature(signer.public_key, b"record hash", "not base64!")


def test_publish_same_key_twice_keeps_file(signer: Signer, tmp_path: Path) -> None:
    first = publish_public_key(signer.public_key, tmp_path / "keys")
    second = publish_public_key(signer.public_key, tmp_path / "keys")

    assert first == second
    assert first.read_bytes() == signer.public_key_pem()


def test_publish_over_different_key_is_rejected(signer: Signer, tmp_path: Path) -> None:
    target = publish_public_key(signer.public_key, tmp_path / "keys")
    other = Ed25519PrivateKey.generate().public_key()
    target.write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    with pytest.raises(SigningError, match="different public key"):
        publish_public_key(signer.public_key, tmp_path / "keys")


def test_signed_record_carries_key_id_and_signature(signed_chain: Path, signer: Signer) -> None:
    record = AuditChain(signed_chain).read()[0]

    assert record["key_id"] == signer.key_id
    assert verify_signature(signer.public_key, record["hash"].encode(), record["signature"])


def test_signed_chain_verifies_with_public_key(signed_chain: Path, keys: KeyPair) -> None:
    report = verify_chain(signed_chain, keys.public_key_path)

    assert report.valid
    assert report.signed
    assert report.key_id == keys.key_id
    assert report.key_source == str(keys.public_key_path)


def test_signed_chain_finds_published_key(signed_chain: Path, signer: Signer) -> None:
    published = publish_public_key(signer.public_key, signed_chain.parent.parent / "keys")

    report = verify_chain(signed_chain)

    assert report.valid
    assert report.key_source == str(published)


def test_signed_chain_without_key_raises(signed_chain: Path) -> None:
    with pytest.raises(AuditChainError, match="--public-key"):
        verify_chain(signed_chain)


def test_wrong_key_is_reported(signed_chain: Path, tmp_path: Path) -> None:
    other = generate_keypair(tmp_path / "other")

    problem = verify_chain(signed_chain, other.public_key_path).problem

    assert problem is not None
    assert problem.kind == "wrong_key"
    assert problem.index == 0


def test_chain_resigned_with_other_key_is_reported(
    signed_chain: Path, keys: KeyPair, tmp_path: Path
) -> None:
    forger = Signer.from_file(generate_keypair(tmp_path / "forger").private_key_path)
    rewritten = tmp_path / "rewritten.jsonl"
    write_signed_chain(rewritten, forger)

    problem = verify_chain(rewritten, keys.public_key_path).problem

    assert problem is not None
    assert problem.kind == "wrong_key"
    assert problem.index == 0


def test_rehashed_record_fails_signature(signed_chain: Path, keys: KeyPair) -> None:
    lines = chain_lines(signed_chain)
    record = json.loads(lines[2])
    record["service"] = "api"
    record["hash"] = record_hash(record)
    lines[2] = json.dumps(record).encode()
    write_lines(signed_chain, lines)

    problem = verify_chain(signed_chain, keys.public_key_path).problem

    assert problem is not None
    assert problem.kind == "bad_signature"
    assert problem.index == 2


def test_swapped_signature_is_reported(signed_chain: Path, keys: KeyPair) -> None:
    lines = chain_lines(signed_chain)
    records = [json.loads(line) for line in lines]
    records[3]["signature"] = records[1]["signature"]
    lines[3] = json.dumps(records[3]).encode()
    write_lines(signed_chain, lines)

    problem = verify_chain(signed_chain, keys.public_key_path).problem

    assert problem is not None
    assert problem.kind == "bad_signature"
    assert problem.index == 3


def test_removed_signature_is_reported(signed_chain: Path, keys: KeyPair) -> None:
    lines = chain_lines(signed_chain)
    record = json.loads(lines[4])
    del record["signature"]
    lines[4] = json.dumps(record).encode()
    write_lines(signed_chain, lines)

    problem = verify_chain(signed_chain, keys.public_key_path).problem

    assert problem is not None
    assert problem.kind == "unsigned"
    assert problem.index == 4


def test_unsigned_chain_fails_when_key_given(tmp_path: Path, keys: KeyPair) -> None:
    path = tmp_path / "plain.jsonl"
    AuditChain(path).append(step_fields(0))

    problem = verify_chain(path, keys.public_key_path, require_seal=False).problem

    assert problem is not None
    assert problem.kind == "unsigned"
    assert problem.index == 0


def test_signed_chain_rejects_unsigned_append(signed_chain: Path, tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    signer = Signer.from_file(generate_keypair(tmp_path / "k").private_key_path)
    AuditChain(path, signer=signer).append(step_fields(0))

    with pytest.raises(AuditChainError, match="signed by the same key"):
        AuditChain(path).append(step_fields(1))


def test_signed_chain_rejects_other_key(tmp_path: Path) -> None:
    path = tmp_path / "open.jsonl"
    first = Signer.from_file(generate_keypair(tmp_path / "a").private_key_path)
    second = Signer.from_file(generate_keypair(tmp_path / "b").private_key_path)
    AuditChain(path, signer=first).append(step_fields(0))

    with pytest.raises(AuditChainError, match="signed by the same key"):
        AuditChain(path, signer=second).append(step_fields(1))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_verifies_record_signature(
    signed_chain: Path, keys: KeyPair, tmp_path: Path
) -> None:
    record = AuditChain(signed_chain).read()[1]
    message = tmp_path / "hash.txt"
    message.write_bytes(record["hash"].encode("ascii"))
    signature = tmp_path / "signature.bin"
    signature.write_bytes(base64.b64decode(record["signature"]))

    completed = subprocess.run(
        [
            "openssl", "pkeyutl", "-verify", "-rawin", "-pubin",
            "-inkey", str(keys.public_key_path),
            "-in", str(message), "-sigfile", str(signature),
        ],
        capture_output=True,
        text=True,
    )

    assert completed.returncode == 0, completed.stderr

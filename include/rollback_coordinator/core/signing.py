"""Ed25519 keys for the signed audit: load, sign, verify, publish the public key.

A private key comes from a key file outside the repository, or from the bytes of an Airflow
connection's password (base64). Three encodings are accepted for either key: PEM, the raw
32 key bytes, and base64 of either. Encrypted PEM files are not supported, because a task has
no one to type a passphrase.

A key id is the first 16 hex characters of the SHA-256 of the raw 32-byte public key. The
public key is published as ``<key id>.pub.pem``, so that a chain can be verified without the
private key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rollback_coordinator.core.errors import CoordinatorError

KEY_ID_LENGTH = 16
RAW_KEY_LENGTH = 32
PUBLIC_KEY_SUFFIX = ".pub.pem"
PRIVATE_KEY_FILE = "audit-signing-key.pem"

_PEM_MARKER = b"-----BEGIN "


class SigningError(CoordinatorError):
    """A signing key that cannot be read, decoded or published."""


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Return the key id: the first 16 hex characters of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_LENGTH]


def public_key_file_name(key_id: str) -> str:
    return f"{key_id}{PUBLIC_KEY_SUFFIX}"


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_forms(data: bytes) -> list[bytes]:
    """Return the forms of ``data`` worth decoding: as given, and base64-decoded when valid.

    Raw key bytes are never stripped, because whitespace bytes can be part of a raw key.
    """
    if len(data) == RAW_KEY_LENGTH:
        return [data]
    stripped = data.strip()
    forms = [stripped]
    try:
        decoded = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        return forms
    if decoded.strip().startswith(_PEM_MARKER):
        forms.append(decoded.strip())
    elif decoded:
        forms.append(decoded)
    return forms


def load_private_key(data: bytes, *, source: str) -> Ed25519PrivateKey:
    """Decode an Ed25519 private key from PEM, raw 32 bytes, or base64 of either.

    ``source`` names where the bytes came from (a file, a connection) for the error message.
    The message never quotes the key bytes.
    """
    for form in _key_forms(data):
        if form.startswith(_PEM_MARKER):
            return _private_key_from_pem(form, source)
        if len(form) == RAW_KEY_LENGTH:
            return Ed25519PrivateKey.from_private_bytes(form)
    raise SigningError(
        f"{source}: not an Ed25519 private key; expected an unencrypted PEM key, the raw "
        f"32 key bytes, or base64 of either (create one with generate_keypair or "
        f"`openssl genpkey -algorithm ed25519`)"
    )


def _private_key_from_pem(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as error:
        raise SigningError(
            f"{source}: the PEM private key is encrypted; store it unencrypted in a file only "
            f"the Airflow user can read, or in the password of an Airflow connection"
        ) from error
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SigningError(f"{source}: invalid PEM private key ({error})") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(
            f"{source}: the PEM key is a {type(key).__name__}, not Ed25519; create an Ed25519 "
            f"key with generate_keypair or `openssl genpkey -algorithm ed25519`"
        )
    return key


def load_public_key(data: bytes, *, source: str) -> Ed25519PublicKey:
    """Decode an Ed25519 public key from PEM, raw 32 bytes, or base64 of either."""
    for form in _key_forms(data):
        if form.startswith(_PEM_MARKER):
            return _public_key_from_pem(form, source)
        if len(form) == RAW_KEY_LENGTH:
            return Ed25519PublicKey.from_public_bytes(form)
    raise SigningError(
        f"{source}: not an Ed25519 public key; expected a PEM public key such as the "
        f"{PUBLIC_KEY_SUFFIX} file published beside the audit chain"
    )


def _public_key_from_pem(pem: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as error:
        if b"PRIVATE KEY" in pem:
            raise SigningError(
                f"{source}: this is a private key; pass the public key ({PUBLIC_KEY_SUFFIX} "
                f"file) instead, so the private key never leaves the signing machine"
            ) from error
        raise SigningError(f"{source}: invalid PEM public key ({error})") from error
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{source}: the PEM key is a {type(key).__name__}, not Ed25519")
    return key


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SigningError(
            f"{path}: cannot read the {what} ({error.strerror or error}); check the path and "
            f"that this user may read it"
        ) from error


def read_public_key(path: str | Path) -> Ed25519PublicKey:
    source = Path(path)
    return load_public_key(_read_key_file(source, "public key"), source=str(source))


def verify_signature(public_key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    """Return whether ``signature`` (base64) is a valid signature of ``message``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, message)
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


class Signer:
    """An Ed25519 private key that signs audit records."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        source = Path(path)
        data = _read_key_file(source, "private signing key")
        return cls(load_private_key(data, source=str(source)))

    @classmethod
    def from_bytes(cls, data: bytes | str, *, source: str) -> Signer:
        """Build a signer from key bytes, for example an Airflow connection's password."""
        raw = data.encode("ascii", errors="replace") if isinstance(data, str) else data
        return cls(load_private_key(raw, source=source))

    def sign(self, message: bytes) -> str:
        """Return the base64 Ed25519 signature of ``message``."""
        return base64.b64encode(self._private_key.sign(message)).decode("ascii")

    def public_key_pem(self) -> bytes:
        return public_key_pem(self.public_key)


def publish_public_key(public_key: Ed25519PublicKey, directory: str | Path) -> Path:
    """Write ``<key id>.pub.pem`` into ``directory`` and return its path.

    Publishing the same key again leaves the file as it is. A file of that name with other
    content raises, because a verifier would then trust the wrong key.
    """
    folder = Path(directory)
    pem = public_key_pem(public_key)
    target = folder / public_key_file_name(key_id_of(public_key))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_new_file(target, pem, mode=0o644)
    except FileExistsError:
        if _read_key_file(target, "published public key") != pem:
            raise SigningError(
                f"{target}: contains a different public key than the one being published; "
                f"remove the file if it is stale, or check who wrote it"
            ) from None
    except OSError as error:
        raise SigningError(f"{target}: cannot publish the public key ({error})") from error
    return target


@dataclass(frozen=True)
class KeyPair:
    """The files written by generate_keypair."""

    private_key_path: Path
    public_key_path: Path
    key_id: str


def generate_keypair(directory: str | Path) -> KeyPair:
    """Create a new Ed25519 key pair in ``directory``, for tests and first-time setup.

    The private key goes to ``audit-signing-key.pem`` (mode 0600, never overwritten) and the
    public key to ``<key id>.pub.pem``. Keep the folder outside any git repository.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path = folder / PRIVATE_KEY_FILE
    try:
        _write_new_file(private_path, pem, mode=0o600)
    except FileExistsError as error:
        raise SigningError(
            f"{private_path}: a signing key already exists; keep it, or move it away before "
            f"generating a new one"
        ) from error
    public_path = publish_public_key(private_key.public_key(), folder)
    return KeyPair(private_path, public_path, key_id_of(private_key.public_key()))


def _write_new_file(path: Path, content: bytes, *, mode: int) -> None:
    # O_EXCL so that two writers, or a writer and an existing key, never clobber each other.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)

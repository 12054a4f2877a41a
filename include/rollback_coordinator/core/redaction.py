"""Masking of secret values before text or JSON reaches a log, a notification or an audit file.

The Airflow layer registers the secrets it handles (connection passwords, tokens, signing
keys). The redactor then replaces each of them with ``***`` wherever it appears, and masks the
whole value of any mapping key whose name marks it as sensitive ("password", "token", ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

MASK = "***"

# The same default as Airflow's [logging] min_length_masked_secret (3.3). Masking shorter
# values would garble ordinary words, so such a value is not masked: see Redactor.skipped.
DEFAULT_MIN_LENGTH = 5

# A key is sensitive when its lower-case name, with non-word characters as "_", contains
# one of these.
SENSITIVE_KEY_PARTS = frozenset(
    {
        "access_key",
        "api_key",
        "apikey",
        "authorization",
        "bearer",
        "client_secret",
        "cookie",
        "credential",
        "passphrase",
        "passwd",
        "password",
        "private_key",
        "secret",
        "signing_key",
        "token",
    }
)


class Redactor:
    """Replace registered secrets, and the values of sensitive keys, with ``***``.

    Besides each secret as given, its JSON-escaped form (as it appears inside a JSON string),
    its URL-encoded form, and each line of a multi-line secret (a PEM key) are masked too.
    """

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        sensitive_key_parts: Iterable[str] = SENSITIVE_KEY_PARTS,
        min_length: int = DEFAULT_MIN_LENGTH,
    ) -> None:
        self.min_length = min_length
        self.sensitive_key_parts = frozenset(part.lower() for part in sensitive_key_parts)
        self.skipped: list[int] = []
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | bytes | None) -> bool:
        """Register a secret; return False when it is too short to mask (its length goes to
        ``skipped``, never the value itself)."""
        if secret is None:
            return False
        text = secret.decode("utf-8", errors="replace") if isinstance(secret, bytes) else secret
        if len(text) < self.min_length:
            if text:
                self.skipped.append(len(text))
            return False
        forms = {text, json.dumps(text)[1:-1], quote(text, safe="")}
        forms.update(line.strip() for line in text.splitlines())
        self._forms.update(form for form in forms if len(form) >= self.min_length)
        self._pattern = None
        return True

    def redact_text(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact(self, value: Any) -> Any:
        """Return a copy of ``value`` (text or nested JSON-like data) with secrets masked.

        Mapping keys are redacted like any text, and the value of a sensitive key is masked
        whole unless it is None or empty. Numbers whose decimal form contains a secret
        become ``***``. Other values (None, booleans) are returned unchanged.
        """
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, bytes):
            return self.redact_text(value.decode("utf-8", errors="replace"))
        if isinstance(value, Mapping):
            return {
                self.redact(key): self._redact_item(key, item) for key, item in value.items()
            }
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.redact(item) for item in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return MASK if self.redact_text(str(value)) != str(value) else value
        return value

    def _redact_item(self, key: object, item: Any) -> Any:
        # An empty value stays visible, so a reader can tell "not set" from "set and masked".
        if self.is_sensitive_key(key) and item not in (None, ""):
            return MASK
        return self.redact(item)

    def is_sensitive_key(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        normalized = re.sub(r"\W+", "_", key.strip().lower())
        return any(part in normalized for part in self.sensitive_key_parts)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._forms:
            # Longest first, so that a secret containing another is masked whole.
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))
        return self._pattern

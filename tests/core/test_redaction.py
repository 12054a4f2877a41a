"""Tests of secret masking in text and nested JSON."""

from __future__ import annotations

import json
from urllib.parse import quote

from rollback_coordinator.core.redaction import MASK, Redactor

PASSWORD = "s3cr3t-Pa55word"
TOKEN = "tok_9f8e7d6c5b4a"


def test_secret_in_text_is_masked() -> None:
    redactor = Redactor([PASSWORD])

    text = redactor.redact_text(f"psql failed: password {PASSWORD} rejected")

    assert PASSWORD not in text
    assert text == f"psql failed: password {MASK} rejected"


def test_secret_in_nested_structure_is_masked() -> None:
    redactor = Redactor([PASSWORD, TOKEN])
    value = {
        "service": "db",
        "inputs": {
            "env": [f"PGPASSWORD={PASSWORD}", "PGHOST=127.0.0.1"],
            "calls": ({"url": f"http://127.0.0.1/hook?token={TOKEN}"},),
        },
        f"key-{TOKEN}": "value",
    }

    output = json.dumps(redactor.redact(value))

    assert PASSWORD not in output
    assert TOKEN not in output
    assert "PGHOST=127.0.0.1" in output


def test_sensitive_key_value_is_masked_whole() -> None:
    redactor = Redactor()

    output = redactor.redact({"db_password": "short", "API-Token": "abc", "user": "alice"})

    assert output == {"db_password": MASK, "API-Token": MASK, "user": "alice"}


def test_empty_sensitive_value_stays_visible() -> None:
    output = Redactor().redact({"password": "", "token": None})

    assert output == {"password": "", "token": None}


def test_json_escaped_secret_is_masked() -> None:
    secret = 'pa"ss\\word'
    redactor = Redactor([secret])

    text = redactor.redact_text(json.dumps({"output": f"login with {secret}"}))

    assert json.dumps(secret)[1:-1] not in text
    assert MASK in text


def test_url_encoded_secret_is_masked() -> None:
    secret = "p@ss/word+1"
    redactor = Redactor([secret])

    text = redactor.redact_text(f"GET /hook?key={quote(secret, safe='')}")

    assert quote(secret, safe="") not in text


def test_each_line_of_multiline_secret_is_masked() -> None:
    key_body = "MC4CAQAwBQYDK2VwBCIEIHx1c2VkLWZvci10ZXN0cy1vbmx5LW5vdC1yZWFs"
    pem = f"-----BEGIN PRIVATE KEY-----\n{key_body}\n-----END PRIVATE KEY-----\n"
    redactor = Redactor([pem])

    text = redactor.redact_text(f"script printed: {key_body}")

    assert key_body not in text


def test_longer_secret_is_masked_whole() -> None:
    redactor = Redactor(["abcdef", "abcdefghijkl"])

    assert redactor.redact_text("x abcdefghijkl y") == f"x {MASK} y"


def test_number_containing_secret_is_masked() -> None:
    redactor = Redactor(["9876543"])

    assert redactor.redact({"pin": 19876543, "port": 5432}) == {"pin": MASK, "port": 5432}


def test_short_secret_is_skipped_by_length_only() -> None:
    redactor = Redactor(["abc"])

    assert redactor.redact_text("abc") == "abc"
    assert redactor.skipped == [3]


def test_added_secret_applies_to_later_text() -> None:
    redactor = Redactor()
    assert redactor.redact_text(f"token {TOKEN}") == f"token {TOKEN}"

    redactor.add(TOKEN)

    assert redactor.redact_text(f"token {TOKEN}") == f"token {MASK}"


def test_bytes_secret_and_value_are_masked() -> None:
    redactor = Redactor()
    redactor.add(PASSWORD.encode())

    assert redactor.redact(f"out: {PASSWORD}".encode()) == f"out: {MASK}"


def test_booleans_and_none_pass_through() -> None:
    assert Redactor([PASSWORD]).redact([True, None, 1.5]) == [True, None, 1.5]

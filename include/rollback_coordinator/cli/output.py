"""Exit codes, the acting user, and printing for people or for scripts (--json)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INVALID = 3
EXIT_REFUSED = 4
# A chain that was changed, cut, reordered or signed by another key. Distinct from invalid
# input (the file or key cannot be read), so a script can tell "tampered" from "not checked".
EXIT_BROKEN_CHAIN = 5
EXIT_AIRFLOW_API = 6

ACTOR_VARIABLE = "ROLLBACK_ACTOR"


def current_actor() -> str:
    """Return who runs this command: ROLLBACK_ACTOR when set, else the login name.

    NOTE: this identity is as strong as access to this machine and its data folder. Where
    separation of duties must hold between people, approve through Airflow, which
    authenticates its users.
    """
    return os.environ.get(ACTOR_VARIABLE) or getpass.getuser()


class Printer:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def result(self, data: dict[str, Any], lines: list[str]) -> None:
        if self.as_json:
            json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
            sys.stdout.write("\n")
        else:
            for line in lines:
                print(line)

    def error(self, message: str, code: int) -> int:
        if self.as_json:
            json.dump({"error": message, "exit_code": code}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"rollback-coordinator: error: {message}", file=sys.stderr)
        return code

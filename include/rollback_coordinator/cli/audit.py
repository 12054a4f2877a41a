"""`audit verify`: check a run's hash-chained audit file, and its signatures when signed."""

from __future__ import annotations

import argparse
from pathlib import Path

from rollback_coordinator.cli.output import EXIT_BROKEN_CHAIN, EXIT_OK, Printer
from rollback_coordinator.core.audit_chain import VerifyReport, verify_chain


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "audit",
        help="inspect audit records",
        description="Inspect the audit records that rollback runs write.",
    )
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check that a run's audit chain is complete and unchanged",
        description=(
            "Check a run's JSON-lines audit chain: every record's hash, its link to the record "
            "before it, its position, the seal that closes the chain and, for a signed chain, "
            "every signature. Reports the first bad record by index."
        ),
        epilog=(
            f"exit codes: 0 the chain is valid; {EXIT_BROKEN_CHAIN} it is broken (the first "
            f"bad record is reported); 3 the file or key cannot be read, or a signed chain "
            f"has no public key to check it with"
        ),
    )
    verify.add_argument("path", type=Path, help="the chain file, for example audit.jsonl")
    verify.add_argument(
        "--public-key",
        type=Path,
        metavar="FILE",
        help=(
            "Ed25519 public key (PEM) to check signatures with; by default the <key id>.pub.pem "
            "published beside the chain or in a keys/ folder above it"
        ),
    )
    verify.add_argument(
        "--allow-unsealed",
        action="store_true",
        help="accept a chain without a seal, for a run that is still going",
    )
    # SUPPRESS keeps `audit --json verify` working: this copy only sets the value when given.
    verify.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print one JSON object for scripts",
    )
    return parser


def run(args: argparse.Namespace, printer: Printer) -> int:
    report = verify_chain(
        args.path, args.public_key, require_seal=not args.allow_unsealed
    )
    printer.result(report.as_dict(), report_lines(report))
    return EXIT_OK if report.valid else EXIT_BROKEN_CHAIN


def report_lines(report: VerifyReport) -> list[str]:
    if report.problem is not None:
        lines = [
            f"{report.path}: broken at record {report.problem.index} "
            f"({report.problem.kind}): {report.problem.message}"
        ]
    else:
        seal = "sealed" if report.sealed else "not sealed"
        lines = [f"{report.path}: valid, {report.records} records, {seal}"]
    if report.batch is not None:
        lines.append(f"  batch {report.batch}, run {report.run_id}")
    if report.signed:
        lines.append(f"  signed by key {report.key_id}, checked with {report.key_source}")
    elif report.key_id is not None:
        lines.append(f"  not signed (key {report.key_id} given)")
    else:
        lines.append("  not signed: hashes show changes, but anyone who can write the file "
                     "could rewrite the whole chain")
    if report.problem is None and report.head_hash:
        lines.append(f"  head hash {report.head_hash}")
    return lines

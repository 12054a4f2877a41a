"""Plans as text: inert() on outside text, CLI lines and the DAG's Markdown docs."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from builders import (
    REPO_URL,
    batch_touching,
    batches_of,
    example_services,
    make_batch,
    plan_request,
    write_services,
)

from rollback_coordinator.core.batches import Batch
from rollback_coordinator.core.plan import Plan
from rollback_coordinator.core.planner import build_plan
from rollback_coordinator.core.render import dag_doc, inert, plan_lines

# The Airflow UI renders doc_md with react-markdown, a CommonMark renderer, so markdown-it-py's
# CommonMark preset shows what a reader would see. It is installed because rich depends on it.
markdown_it = pytest.importorskip("markdown_it")
COMMONMARK = markdown_it.MarkdownIt("commonmark")

DIGEST = "ab12cd34" * 8

HOSTILE_TEXTS = [
    "# heading",
    "<script>alert(1)</script>",
    "[x](http://e)",
    "{{ 7*7 }}",
    "![pixel](http://e/p.png)",
    "<img src=x onerror=alert(1)>",
    "**bold** _em_ ~~gone~~ `code`",
    "1. numbered",
    "- bullet",
    "> quote",
    "| a | b |",
    "<http://e>",
    "back\\slash",
    "Tom & Jerry",
    '"double quotes"',
    "&amp; &#35; &lt;",
]


def rendered_text(markdown: str) -> str:
    """Render one paragraph of Markdown and return its visible text."""
    output = COMMONMARK.render(markdown).strip()
    assert output.startswith("<p>"), output
    assert output.endswith("</p>"), output
    return html.unescape(output[len("<p>") : -len("</p>")])


def element_tags(page: str) -> list[str]:
    return re.findall(r"</?[a-z][a-z0-9]*", page)


def test_inert_escapes_heading() -> None:
    assert inert("# heading") == "\\# heading"


def test_inert_escapes_script_tag() -> None:
    assert inert("<script>") == "&lt;script&gt;"


def test_inert_escapes_link() -> None:
    assert inert("[x](http://e)") == "\\[x\\]\\(http://e\\)"


def test_inert_escapes_template_braces() -> None:
    assert inert("{{ 7*7 }}") == "\\{\\{ 7\\*7 \\}\\}"


def test_inert_escapes_ampersand() -> None:
    assert inert("a & b") == "a &amp; b"


def test_inert_flattens_newlines() -> None:
    assert inert("first line\nsecond line") == "first line second line"
    assert inert("first\r\n# second") == "first  \\# second"


def test_inert_replaces_control_characters() -> None:
    assert inert("\x1b[31mred\x07\x00\x7f") == " \\[31mred   "


def test_inert_leaves_plain_text() -> None:
    assert inert("Fix checkout totals for EUR carts") == "Fix checkout totals for EUR carts"


def test_inert_truncates_to_limit() -> None:
    assert inert("x" * 300) == "x" * 199 + "…"
    assert inert("abcdef", limit=4) == "abc…"


def test_inert_keeps_text_at_limit() -> None:
    assert inert("x" * 200) == "x" * 200


def test_inert_escapes_after_truncating() -> None:
    assert inert("#" * 50, limit=5) == "\\#" * 4 + "…"


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_inert_output_has_no_raw_markup(text: str) -> None:
    output = inert(text)

    assert "<" not in output
    assert ">" not in output
    assert "\n" not in output


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_inert_text_renders_as_itself(text: str) -> None:
    assert rendered_text(inert(text)) == text


def test_inert_apostrophe_renders_as_itself() -> None:
    assert rendered_text(inert("Don't retry payments")) == "Don't retry payments"


@pytest.fixture
def services_dir(tmp_path: Path) -> Path:
    return tmp_path / "config"


def two_service_plan(services_dir: Path, batch: Batch, **changes: object) -> Plan:
    services = write_services(services_dir, example_services(worker={"environment": ["prod"]}))
    return build_plan(plan_request(batch.id, **changes), batches_of(batch), services, REPO_URL)


def test_plan_lines_in_run_order(services_dir: Path) -> None:
    batch = batch_touching("REL-1", 1, "db", "api")
    plan = two_service_plan(services_dir, batch)

    assert plan_lines(plan, DIGEST) == [
        f"plan {DIGEST} for batch REL-1",
        "  environment staging, profile flow, author pat, dry run no",
        "  reason: checkout errors after deploy",
        f"  batch REL-1: {batch.from_ref[:12]} -> {batch.to_ref[:12]}",
        "    level 0: api: authorize > rollback",
        "    level 1: db after api: authorize > rollback",
    ]


def test_plan_lines_list_skipped_services(services_dir: Path) -> None:
    plan = two_service_plan(services_dir, batch_touching("REL-1", 1, "api", "worker"))

    assert plan_lines(plan, DIGEST)[-1] == (
        "  skipped worker: not deployed in environment 'staging'"
    )


def test_plan_lines_flatten_reason(services_dir: Path) -> None:
    plan = two_service_plan(
        services_dir, batch_touching("REL-1", 1, "api"), reason="broken\n\x1b[2Jcheckout"
    )

    assert "  reason: broken  [2Jcheckout" in plan_lines(plan, DIGEST)


def test_plan_lines_omit_empty_reason(services_dir: Path) -> None:
    plan = two_service_plan(services_dir, batch_touching("REL-1", 1, "api"), reason="")

    assert not any(line.startswith("  reason:") for line in plan_lines(plan, DIGEST))


def test_plan_lines_mark_dry_run(services_dir: Path) -> None:
    plan = two_service_plan(services_dir, batch_touching("REL-1", 1, "api"), dry_run=True)

    assert plan_lines(plan, DIGEST)[1].endswith("dry run yes")


def test_plan_lines_show_root_target(services_dir: Path) -> None:
    batch = Batch(
        id="REL-1",
        commits=(),
        from_ref="f" * 40,
        to_ref=None,
        sequence=1,
        files=("services/api/app.py",),
    )
    plan = two_service_plan(services_dir, batch)

    assert f"  batch REL-1: {'f' * 12} -> root" in plan_lines(plan, DIGEST)


def cascade_plan(services_dir: Path) -> tuple[Plan, dict[str, Batch]]:
    services = write_services(services_dir, example_services())
    batches = batches_of(batch_touching("REL-1", 1, "api"), batch_touching("REL-2", 2, "api"))
    plan = build_plan(plan_request("REL-1", cascade=True), batches, services, REPO_URL)
    return plan, batches


def test_plan_lines_mark_cascade(services_dir: Path) -> None:
    plan, batches = cascade_plan(services_dir)

    lines = plan_lines(plan, DIGEST)

    assert lines[0] == f"plan {DIGEST} for batch REL-1 (cascading: newer batches first)"
    assert "    level 0: REL-2__api: authorize > rollback" in lines
    assert "    level 1: api after REL-2__api: authorize > rollback" in lines


def test_dag_doc_names_refs_and_order(services_dir: Path) -> None:
    batch = make_batch(
        "REL-1",
        1,
        ["services/api/app.py", "db/schema.sql"],
        subjects=["Add EUR rounding", "Index orders by cart"],
    )
    plan = two_service_plan(services_dir, batch)

    doc = dag_doc(plan, batches_of(batch))

    lines = doc.splitlines()
    assert lines[0] == "### Rollback of batch REL\\-1"
    assert f"Goes back from `{batch.from_ref[:12]}` to `{batch.to_ref[:12]}`" in doc
    assert f"- `{batch.commits[0].sha[:10]}` Add EUR rounding (Ada Lovelace)" in lines
    assert "- level 1: `api` (batch REL\\-1): authorize, rollback" in lines
    assert "- level 2: `db` (batch REL\\-1): authorize, rollback" in lines


def test_dag_doc_renders_hostile_subjects_inert(services_dir: Path) -> None:
    hostile = make_batch("REL-1", 1, ["services/api/app.py"], subjects=HOSTILE_TEXTS)
    plain = make_batch("REL-1", 1, ["services/api/app.py"], subjects=["plain"] * 16)
    plan = two_service_plan(services_dir, hostile)

    hostile_page = COMMONMARK.render(dag_doc(plan, batches_of(hostile)))
    plain_page = COMMONMARK.render(dag_doc(plan, batches_of(plain)))

    # Subjects are text only, so they add no element to the page.
    assert element_tags(hostile_page) == element_tags(plain_page)
    assert "<script" not in hostile_page
    assert "<a " not in hostile_page


def test_dag_doc_shows_hostile_subjects(services_dir: Path) -> None:
    batch = make_batch("REL-1", 1, ["services/api/app.py"], subjects=HOSTILE_TEXTS)
    plan = two_service_plan(services_dir, batch)

    page = html.unescape(COMMONMARK.render(dag_doc(plan, batches_of(batch))))

    for subject in HOSTILE_TEXTS:
        assert f"{subject} (Ada Lovelace)" in page


def test_dag_doc_subject_starts_no_line(services_dir: Path) -> None:
    subject = "Fix totals\n# Approved by security\n<b>skip approvals</b>"
    batch = make_batch("REL-1", 1, ["services/api/app.py"], subjects=[subject])
    plan = two_service_plan(services_dir, batch)

    lines = dag_doc(plan, batches_of(batch)).splitlines()

    assert not any(line.startswith("# ") for line in lines)
    assert sum("Approved by security" in line for line in lines) == 1


def test_dag_doc_lists_twenty_commits(services_dir: Path) -> None:
    subjects = [f"Change {number}" for number in range(25)]
    batch = make_batch("REL-1", 1, ["services/api/app.py"], subjects=subjects)
    plan = two_service_plan(services_dir, batch)

    lines = dag_doc(plan, batches_of(batch)).splitlines()

    assert sum(line.startswith("- `") for line in lines) == 20
    assert "- and 5 more" in lines


def test_dag_doc_shows_root_target(services_dir: Path) -> None:
    batch = Batch(
        id="REL-1",
        commits=(),
        from_ref="f" * 40,
        to_ref=None,
        sequence=1,
        files=("services/api/app.py",),
    )
    plan = two_service_plan(services_dir, batch)

    assert "to `(root)`" in dag_doc(plan, batches_of(batch))


def test_dag_doc_explains_cascade(services_dir: Path) -> None:
    plan, batches = cascade_plan(services_dir)

    doc = dag_doc(plan, batches)

    assert "Newer batches touch the same services: REL\\-2." in doc
    assert "- level 1: `REL-2__api` (batch REL\\-2): authorize, rollback" in doc.splitlines()
    assert "- level 2: `api` (batch REL\\-1): authorize, rollback" in doc.splitlines()


def test_dag_doc_plain_has_no_cascade_note(services_dir: Path) -> None:
    batch = batch_touching("REL-1", 1, "api")
    plan = two_service_plan(services_dir, batch)

    assert "Newer batches" not in dag_doc(plan, batches_of(batch))

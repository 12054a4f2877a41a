"""Plans as text for people: task logs, the CLI, and the DAG's docs in the Airflow UI."""

from __future__ import annotations

import html
import re

from rollback_coordinator.core.batches import Batch
from rollback_coordinator.core.plan import Plan

_MARKDOWN_ACTIVE = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def inert(text: str, limit: int = 200) -> str:
    """Make outside text (commit subjects, reasons) safe to show inside Markdown.

    Control characters become spaces and every character Markdown or HTML would act on is
    escaped, so a crafted subject can neither fake a heading nor inject a link or a tag.
    """
    flat = _CONTROL.sub(" ", text)
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _MARKDOWN_ACTIVE.sub(r"\\\1", html.escape(flat, quote=False))


def plan_lines(plan: Plan, digest: str) -> list[str]:
    """Return the plan as short lines, one per service, in the order the run takes them."""
    lines = [
        f"plan {digest} for batch {plan.batch}"
        + (" (cascading: newer batches first)" if plan.cascade else ""),
        f"  environment {plan.environment}, profile {plan.profile}, author {plan.author}, "
        f"dry run {'yes' if plan.dry_run else 'no'}",
    ]
    if plan.reason:
        lines.append(f"  reason: {_CONTROL.sub(' ', plan.reason)}")
    for phase in plan.phases:
        lines.append(f"  batch {phase.batch}: {phase.from_ref[:12]} -> {(phase.to_ref or 'root')[:12]}")
        for step in phase.services:
            waits = f" after {', '.join(step.after)}" if step.after else ""
            lines.append(f"    level {step.level}: {step.group_id}{waits}: {' > '.join(step.steps)}")
    for service, why in plan.skipped:
        lines.append(f"  skipped {service}: {why}")
    return lines


def dag_doc(plan: Plan, batches: dict[str, Batch]) -> str:
    """Return the DAG's Markdown docs: the batch, its commits and the order of the rollback."""
    batch = batches[plan.batch]
    to_ref = batch.to_ref[:12] if batch.to_ref else "(root)"
    out = [
        f"### Rollback of batch {inert(plan.batch)}",
        "",
        f"Goes back from `{batch.from_ref[:12]}` to `{to_ref}`, the release before the batch.",
        "",
        "**Commits in the batch**",
        "",
    ]
    for commit in batch.commits[:20]:
        out.append(f"- `{commit.sha[:10]}` {inert(commit.subject)} ({inert(commit.author, 60)})")
    if len(batch.commits) > 20:
        out.append(f"- and {len(batch.commits) - 20} more")

    out += ["", "**Rollback order** (a level starts when the level before it is done)", ""]
    if plan.cascade:
        newer = ", ".join(inert(phase.batch) for phase in plan.phases[:-1])
        out += [
            f"Newer batches touch the same services: {newer}. A run without the *cascade* "
            f"parameter is refused; with it, those batches are rolled back first, newest first.",
            "",
        ]
    for phase in plan.phases:
        for step in phase.services:
            out.append(
                f"- level {step.level + 1}: `{step.group_id}` (batch {inert(phase.batch)}): "
                + ", ".join(step.steps).replace("_", " ")
            )
    out += [
        "",
        "Trigger with the form: pick the profile and the environment, give a reason, and "
        "choose a dry run to rehearse without running rollback scripts.",
    ]
    return "\n".join(out)

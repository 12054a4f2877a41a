"""The Airflow UI path in headless Chromium: read the plan, trigger with the form, approve.

alice makes a balanced plan with the CLI. bob opens the batch's DAG, reads the plan in its
docs and triggers it with the form, pasting the plan digest. gina, who holds the guardian
role, approves the api in the required actions view. The last test saves screenshots of the
form, the approval and the finished graph to SCREENSHOT_DIR, or to a temporary folder when it
is unset; SCREENSHOT_DIR=docs/images refreshes the pictures in the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
from playwright.sync_api import sync_playwright

from rollback_coordinator.airflow.factory import trigger_params
from rollback_coordinator.cli.airflow_api import SETTLE_S
from rollback_coordinator.core.governance import load_governance
from rollback_coordinator.core.run_records import safe_name
from rollback_coordinator.demo.stack import stack_environment, start_stack
from tests_support import (
    GOVERNANCE_YAML,
    admin_get,
    commit_all,
    free_port,
    init_repository,
    services_yaml,
    write_config,
)
from tests_support import wait_for_run as wait_for_stack_run

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(600)]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
# Chromium's sandbox does not start as root. The other flags turn off the GPU, the first-run
# setup and background calls to Google's servers.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
DAG_ID = "rollback_REL-7"
REASON = "orders fail after REL-7"
APPROVAL_SUBJECT = "Approve the rollback of service api (batch REL-7)"
RUN_TIMEOUT_S = 240
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    config, data, repo = root / "config", root / "data", root / "repo"
    data.mkdir()
    write_config(config, services_yaml(approvals=True), GOVERNANCE_YAML)
    init_repository(repo)
    commit_all(repo, "REL-7: ship the api and the worker",
               {"services/api": "2\n", "services/worker": "2\n"})

    env = stack_environment(root / "airflow", data, config, free_port())
    # alice's plan also registers the batch, so its DAG exists from the first parse.
    plan_file = root / "plan.json"
    planned = subprocess.run(
        [str(BIN / "rollback-coordinator"), "plan", "REL-7", "--repo", str(repo),
         "--profile", "balanced", "--reason", REASON, "--out", str(plan_file)],
        env={**env, "ROLLBACK_ACTOR": "alice"}, capture_output=True, text=True, timeout=120,
    )
    if planned.returncode != 0:
        raise AssertionError(f"plan exited {planned.returncode}: {planned.stdout}{planned.stderr}")
    stack = start_stack(env, root / "standalone.log")
    yield {
        "stack": stack, "data": data, "config": config,
        "digest": json.loads(plan_file.read_text())["sha256"],
    }
    stack.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(browser, ui, user: str, height: int = 800):
    """Open a fresh browser context and sign in on Airflow's login page."""
    context = browser.new_context(viewport={"width": 1280, "height": height})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    stack = ui["stack"]
    page.goto(f"{stack.url}/auth/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", stack.passwords[user])
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def open_trigger_form(page, ui):
    page.goto(f"{ui['stack'].url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    return page.get_by_role("dialog")


def api_get(ui, path: str):
    return admin_get(ui["stack"], path)


def wait_until_parked(ui, run_id: str, task_id: str) -> None:
    """Wait until the task has been awaiting input for SETTLE_S seconds.

    Airflow 3.3.2 fails a task whose response arrives before the scheduler has processed the
    executor's event for the parked attempt, so the test responds only after that.
    """
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    parked_since = None
    state = None
    while time.monotonic() < deadline:
        state = api_get(ui, path).get("state")
        if state == "awaiting_input":
            parked_since = parked_since or time.monotonic()
            if time.monotonic() - parked_since >= SETTLE_S:
                return
        time.sleep(1)
    raise AssertionError(f"{task_id} of run {run_id} did not wait for input; last state {state}")


def wait_for_run(ui, run_id: str) -> dict:
    return wait_for_stack_run(ui["stack"], DAG_ID, run_id, RUN_TIMEOUT_S)


def test_dag_docs_show_plan(ui, browser):
    page = log_in(browser, ui, "bob")

    page.goto(f"{ui['stack'].url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Dag Docs").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Rollback order").wait_for()
    docs = dialog.inner_text()
    page.context.close()

    assert "Rollback of batch REL-7" in docs
    assert "REL-7: ship the api and the worker" in docs
    assert "worker (batch REL-7): health before, authorize, rollback, health after" in docs
    assert "api (batch REL-7): approval, authorize, rollback" in docs


def test_trigger_form_describes_every_param(ui, browser):
    params = trigger_params(load_governance(ui["config"] / "governance.yaml"))
    page = log_in(browser, ui, "bob")

    form = open_trigger_form(page, ui)
    form.get_by_text(params["plan_sha256"].description).wait_for()
    form_text = form.inner_text()
    page.context.close()

    assert sorted(params) == [
        "cascade", "dry_run", "environment", "plan_sha256", "profile", "reason",
    ]
    for name, param in params.items():
        assert param.description in form_text, name
        assert param.schema["title"] in form_text, name


def test_form_run_approved_in_browser(ui, browser, screenshots):
    trigger_page = log_in(browser, ui, "bob", height=1500)
    form = open_trigger_form(trigger_page, ui)
    form.get_by_role("combobox").first.click()
    trigger_page.get_by_role("option", name="balanced", exact=True).click()
    trigger_page.fill("#element_reason", REASON)
    trigger_page.fill("#element_plan_sha256", ui["digest"])
    form.screenshot(path=str(screenshots / "ui-trigger-form.png"))
    form.get_by_role("button", name="Trigger", exact=True).click()
    trigger_page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")
    run_id = unquote(trigger_page.url.split("/runs/", 1)[1].split("/", 1)[0])
    trigger_page.context.close()

    wait_until_parked(ui, run_id, "api.approval")
    approve_page = log_in(browser, ui, "gina")
    approve_page.get_by_role("button", name="Browse").click()
    approve_page.get_by_role("menuitem", name="Required Actions").click()
    approve_page.get_by_role("link", name=APPROVAL_SUBJECT).click()
    approve_page.get_by_role("button", name="Approve", exact=True).wait_for()
    approve_page.screenshot(path=str(screenshots / "ui-approval.png"))
    approve_page.get_by_role("button", name="Approve", exact=True).click()
    note = approve_page.get_by_text("Response received").first
    note.wait_for()
    response_note = note.inner_text()
    approve_page.context.close()

    run = wait_for_run(ui, run_id)
    graph = open_finished_graph(browser, ui, run_id, screenshots / "ui-graph.png")
    plan = json.loads((ui["data"] / "plans" / "REL-7" / f"{ui['digest']}.json").read_text())
    memory = "".join(path.read_text() for path in (ui["data"] / "audit" / "memory").glob("*.md"))
    section = memory[memory.index(run_id):]
    steps = ui["data"] / "runs" / "REL-7" / safe_name(run_id) / "steps"
    approval = json.loads((steps / "api.approval.json").read_text())["approvals"][0]

    assert "from gina" in response_note
    assert run["state"] == "success"
    assert run["triggering_user_name"] == "bob"
    assert plan["plan"]["profile"] == "balanced"
    assert "- profile: balanced" in section
    assert "- planner: alice" in section
    assert "- runner: bob" in section
    assert "- approvers: gina" in section
    assert approval["user"] == "gina"
    assert approval["via"] == "airflow"
    for name in ("Authorize plan", "Approval by guardian", "Governor authorization",
                 "Run rollback script", "Health before", "Health after", "Audit"):
        assert name in graph, name


def open_finished_graph(browser, ui, run_id: str, screenshot: Path) -> str:
    """Show the run's graph with every task group expanded; return the text it shows."""
    page = log_in(browser, ui, "bob", height=560)
    page.goto(f"{ui['stack'].url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    page.get_by_role("button", name="Expand all task groups").click()
    page.get_by_role("button", name="Collapse Details Panel").click()
    page.get_by_role("button", name="Fit View").click()
    page.get_by_text("Run rollback script").first.wait_for()
    # The graph animates into place after Fit View.
    page.wait_for_timeout(1000)
    page.screenshot(path=str(screenshot))
    text = page.locator(".react-flow").inner_text()
    page.context.close()
    return text

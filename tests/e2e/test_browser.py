"""The pages in a real browser: headless Chromium from the distribution, driven by Playwright,
against a live `sweep api` and worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.e2e.conftest import Processes

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download cannot work here: it drives the system's Chromium.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = (
    Path(os.environ.get("SWEEP_SCREENSHOTS", "")) if os.environ.get("SWEEP_SCREENSHOTS") else None
)


def ensure_chromium() -> None:
    """Install Debian's chromium when it is missing (CI runs as root on a fresh machine)."""
    if Path(CHROMIUM).exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing and cannot be installed here")
        pytest.skip(f"{CHROMIUM} is missing; install it: apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, timeout=1200)


def test_sign_in_watch_progress_and_pause_in_chromium(  # type: ignore[no-untyped-def]
    processes, sqlite_url: str, tmp_path: Path
) -> None:
    ensure_chromium()
    if IN_CI:
        from playwright.sync_api import expect, sync_playwright
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
        expect, sync_playwright = sync_api.expect, sync_api.sync_playwright

    procs: Processes = processes(sqlite_url)
    procs.start("worker", "--device", "cpu", name="worker")  # starts while the API does
    api = procs.api()
    token = procs.env["SWEEP_TOKEN"]  # a user token
    body = {
        "name": "in-browser",
        "task": "synthetic",
        "task_options": {"epoch_seconds": 0.1},
        "epochs": 8,
        "n_trials": 40,
        "baseline": False,
        "race": False,
    }
    assert api.post("/v1/sweeps", json=body).status_code == 201, procs.log("api")
    base = str(api.base_url).rstrip("/")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base}/sweeps/in-browser")
        assert "/login?next=" in page.url  # signed out: sent to sign in
        page.fill("#token", token)
        page.click("form[action='/login'] button")
        page.wait_for_url(f"{base}/sweeps/in-browser")

        label = page.locator("[data-progress] .label")
        before = label.inner_text()
        # progress advances in place, polled from the JSON twin, without a reload
        page.wait_for_function(
            "document.querySelector('[data-progress] .label').textContent"
            f" !== {json.dumps(before)}",
            timeout=30_000,
        )
        page.wait_for_function(
            "document.querySelector('[data-chart]').naturalWidth > 0", timeout=30_000
        )
        expect(page.locator("[data-status]")).to_have_text("running")

        page.click("form[data-action='pause'] button")
        expect(page.locator("[data-status]")).to_have_text("paused")
        expect(page.locator("form[data-action='resume'] button")).to_be_visible()
        expect(page.locator("form[data-action='pause']")).to_be_hidden()
        assert page.locator("tbody[data-top] tr").count() >= 1
        page.wait_for_function(
            "document.querySelector('[data-chart]').complete"
            " && document.querySelector('[data-chart]').naturalWidth > 0"
        )
        shots = SHOTS or tmp_path
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "sweep-page.png"))
        assert (shots / "sweep-page.png").stat().st_size > 10_000

        page.goto(f"{base}/")
        expect(page.locator("tr[data-sweep='in-browser'] [data-status]")).to_have_text("paused")
        page.screenshot(path=str(shots / "overview.png"))

        study_id = {s["study_name"]: s["study_id"] for s in api.get("/api/studies").json()[
            "study_summaries"]}["in-browser"]  # fmt: skip
        for role in ("reader", "admin"):
            signed_in = browser.new_page(viewport={"width": 1280, "height": 800})
            check_the_dashboard(signed_in, expect, base, procs.token(role), study_id, role)
            signed_in.close()
        browser.close()
    assert api.get("/v1/sweeps/in-browser").json()["status"] == "paused"
    names = [s["study_name"] for s in api.get("/api/studies").json()["study_summaries"]]
    assert sorted(names) == ["in-browser", "in-browser.eval"]


def check_the_dashboard(page, expect, base: str, token: str, study_id: int, role: str) -> None:  # type: ignore[no-untyped-def]
    """optuna-dashboard at /dashboard/ behind the sign-in: the study and its intermediate
    values are shown, and deleting the study backing the sweep is refused, for any role."""
    page.goto(f"{base}/dashboard/")
    assert "/login?next=" in page.url  # a new browser is signed out
    page.fill("#token", token)
    page.click("form[action='/login'] button")
    page.wait_for_url(f"{base}/dashboard/**")
    card = page.locator(".MuiCard-root", has_text="in-browser").filter(has_not_text=".eval")
    expect(card).to_be_visible()

    if role == "reader":  # the study's page, reached inside the dashboard's own page
        card.get_by_text("in-browser").click()
        page.wait_for_url(f"{base}/dashboard/studies/{study_id}**")
        expect(page.get_by_text("Intermediate values")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("trial #0", exact=True).first).to_be_visible()
        if SHOTS:
            page.screenshot(path=str(SHOTS / "dashboard.png"))
        page.go_back()

    card.get_by_role("button", name="delete study").click()
    with page.expect_response(f"{base}/api/studies/{study_id}") as deleted:
        page.get_by_role("dialog").get_by_role("button", name="YES").click()
    assert deleted.value.status == 403
    reason = deleted.value.json()["detail"]
    assert ("admin role" if role == "reader" else "backs sweep 'in-browser'") in reason
    expect(page.get_by_text(f"Failed to delete study (id={study_id})")).to_be_visible()
    expect(card).to_be_visible()  # still there

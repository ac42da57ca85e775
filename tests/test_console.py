"""The web console in a real browser: ``kubesage ui`` in its own process over a store of real
runs (the subprocess runner on the probe pipelines) and records written straight into it, and
headless Chromium from Debian's ``chromium`` package driven by Playwright."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import KUBESAGE, REPO
from tests.console_site import HOSTILE_TAG, TOKEN, Site, chromium, environment, make_site, stop

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fsx_root: str) -> Iterator[Site]:
    served = make_site(str(tmp_path_factory.mktemp("console")), fsx_root)
    try:
        yield served
    finally:
        stop(served)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright, launched = chromium()
    try:
        yield launched
    finally:
        launched.close()
        playwright.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    assert errors == [], f"script errors on the page: {errors}"


def test_the_runs_page_lists_a_run(site: Site, page: Any) -> None:
    page.goto(site.url + "/")
    row = page.locator(f'tr.run[data-run="{site.runs["fan-out"]}"]')
    row.wait_for()
    assert "fan-out" in row.inner_text() and row.get_attribute("data-status") == "succeeded"
    page.goto(site.url + "/?status=failed")
    assert page.locator("tr.run").count() == 1  # the hostile run only
    page.goto(site.url + f"/?prefix={site.runs['fan-out'][:-3]}")
    assert page.locator(f'tr.run[data-run="{site.runs["fan-out"]}"]').count() == 1


def test_the_run_graph_has_one_node_per_step_with_its_state(site: Site, page: Any) -> None:
    record = site.store.get(site.runs["fan-out"])
    page.goto(f"{site.url}/runs/{record.run_id}")
    nodes = page.locator("#run-graph svg g.node")
    assert nodes.count() == len(record.steps) == 6
    shown = {nodes.nth(i).get_attribute("data-step"): nodes.nth(i).get_attribute("data-state")
             for i in range(nodes.count())}
    assert shown == {s.name: s.status for s in record.steps}
    assert shown["gated"] == "skipped" and "st-skipped" in page.locator(
        '#run-graph g.node[data-step="gated"]').get_attribute("class")
    clusters = page.locator("#run-graph svg g.cluster").all_text_contents()
    assert any("ParallelFor(clients)" in c and "3 items" in c for c in clusters)
    assert any("Condition(score.output == '1.0')" in c for c in clusters)
    assert "'b'" in page.locator('#run-graph g.node[data-step="per-client[1]"]').text_content()


def test_a_cache_hit_links_to_the_run_it_reused(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/runs/{site.runs['cached']}")
    node = page.locator('#run-graph g.node[data-step="score"]')
    assert "cached" in node.get_attribute("class")
    href = node.locator("a").first.get_attribute("xlink:href")
    assert href == f"/runs/{site.runs['fan-out']}#step-score"
    node.locator("a").first.click()
    page.wait_for_url(re.compile(re.escape(site.runs["fan-out"])))


def test_a_steps_log_shows(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/runs/{site.runs['fan-out']}")
    page.locator('details.log[id="log-per-client[2]"] summary').click()
    log = page.locator('details.log[id="log-per-client[2]"] pre.logtext')
    log.wait_for()
    page.wait_for_function("e => e.textContent.includes('probe: c')", arg=log.element_handle())
    assert log.inner_text().strip() == "probe: c"


def test_compare_overlays_two_runs_curves(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/compare?run=curves-a&run=curves-b")
    chart = page.locator('.chart[data-key="train.loss"]')
    chart.wait_for()
    assert chart.get_attribute("data-lines") == "2"
    assert chart.locator("canvas").count() == 1  # uPlot drew it
    legend = chart.locator(".u-legend").inner_text()
    assert "curves-a" in legend and "curves-b" in legend
    assert page.locator("table.compare tr.param th", has_text="param lr").count() == 1
    assert page.locator("table.compare th", has_text="param epochs").count() == 0  # the same


def test_a_running_run_changes_state_on_the_page_without_a_reload(site: Site, page: Any) -> None:
    page.goto(site.url + "/")
    page.evaluate("window.keptAcrossUpdates = 'yes'")
    before = {s.run_id for s in site.store.list(limit=100)}
    run = subprocess.Popen([*KUBESAGE, "run", "tests/pipelines/probes.py:slow", "--runner",
                            "subprocess", "--config", site.config, "--param", "seconds=6"],
                           cwd=REPO, env=environment(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        new = page.locator('tr.run[data-status="running"]')
        new.wait_for(timeout=60_000)  # the live list shows it: no reload
        run_id = new.get_attribute("data-run")
        assert run_id not in before and page.evaluate("window.keptAcrossUpdates") == "yes"
        page.goto(f"{site.url}/runs/{run_id}")
        page.evaluate("window.keptAcrossUpdates = 'still'")
        node = page.locator('#run-graph g.node[data-step="probe"]')
        assert node.get_attribute("data-state") in ("pending", "running")
        page.locator('#run-graph g.node[data-step="probe"][data-state="succeeded"]').wait_for(
            timeout=60_000)
        page.locator("#run-header .badge.st-succeeded").wait_for(timeout=30_000)
        assert page.evaluate("window.keptAcrossUpdates") == "still"  # the same page, updated
    finally:
        assert run.wait(timeout=120) == 0


def test_a_post_without_the_token_is_refused(site: Site, page: Any) -> None:
    run_id = site.runs["fan-out"]
    assert site.get(f"/runs/{run_id}/cancel", "POST")[0] == 403
    assert site.get(f"/runs/{run_id}/rerun", "POST", data=b"token=wrong")[0] == 403
    status, body = site.get(f"/runs/{run_id}/cancel", "POST", headers={"X-Kubesage-Token": TOKEN})
    assert status == 409 and "is succeeded, not running" in body  # the token is what it lacked
    status, _ = site.get(f"/runs/{run_id}/cancel", "POST", headers={
        "X-Kubesage-Token": TOKEN, "Origin": "http://evil.example"})
    assert status == 403
    page.goto(f"{site.url}/runs/{run_id}")  # the page's own button, without the token
    with page.expect_navigation():
        page.locator("form[action$='/rerun'] button").first.click()
    assert page.locator("h1").inner_text().startswith("403")
    assert site.store.count(pipeline="fan-out") == 2  # nothing ran again


def test_a_tag_holding_a_script_renders_as_text(site: Site, page: Any) -> None:
    for path in ("/", f"/runs/{site.runs['hostile']}"):
        page.goto(site.url + path)
        assert page.get_by_text(f"note={HOSTILE_TAG}").count() >= 1
        assert page.evaluate("window.pwned") is None


def test_an_artifact_path_leading_outside_is_refused(site: Site) -> None:
    base = f"/runs/{site.runs['evaluated']}/artifacts/evaluate/report"
    assert site.get(f"{base}/view?path=report.md")[0] == 200
    for bad in ("../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd",
                "a/../../x", "%2e%2e/%2e%2e/etc/passwd"):
        for kind in ("view", "raw"):
            status, body = site.get(f"{base}/{kind}?path={bad}")
            assert status == 403 and "root:" not in body, (bad, kind, status)


def test_an_unknown_run_gets_a_404_page(site: Site, page: Any) -> None:
    response = page.goto(f"{site.url}/runs/no-such-run")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "404 Not found"
    assert "No run 'no-such-run'" in page.locator(".message").inner_text()


def test_artifacts_are_shown_as_what_they_are(site: Site, page: Any) -> None:
    base = f"{site.url}/runs/{site.runs['evaluated']}/artifacts/evaluate/report"
    page.goto(base)
    assert page.locator("table.files tr", has_text="report.md").count() == 1
    page.goto(base + "/view?path=confusion_matrix.json")
    cells = page.locator("table.heatmap tbody td").all_inner_texts()
    assert cells == ["8", "2", "1", "9"]
    page.goto(base + "/view?path=report.md")
    assert page.locator("article.markdown h1").inner_text() == "Report"
    assert page.locator("article.markdown img").count() == 0  # HTML in markdown stays text
    page.goto(base + "/view?path=evaluation.json")
    assert '"accuracy": {' in page.locator("pre.json").inner_text()
    page.goto(base + "/view?path=plot.png")
    assert page.locator(".preview img").evaluate("i => i.complete && i.naturalWidth") == 4
    facts = page.locator("p.facts").inner_text()
    assert "sha256" in facts and re.search(r"\d+ B", facts)


def test_lineage_catalog_and_clients(site: Site, page: Any) -> None:
    page.goto(f"{site.url}/lineage?model=model-curves-a")
    assert page.locator("a", has_text="curves-a").count() >= 1
    page.goto(f"{site.url}/lineage?data=fp-" + "d" * 20)
    models = page.locator("table.runs").first.inner_text()
    assert "model-curves-a" in models and "model-curves-b" in models
    page.goto(f"{site.url}/clients?pipeline=fan-out")
    rows = page.locator("tr.client")
    assert [rows.nth(i).get_attribute("data-client") for i in range(rows.count())] == ["a", "b", "c"]
    assert site.runs["cached"] in rows.first.inner_text()  # the newest run
    page.goto(f"{site.url}/catalog")
    assert page.locator("h1").inner_text() == "Component catalog"


def test_secret_values_are_never_shown(tmp_path, fsx_root: str) -> None:
    """The store password, a webhook URL and secret environment values are not on any page,
    even where a record holds them (a step's error)."""
    from kubesage.runs.record import RunRecord, StepRecord
    from tests.conftest import write_config
    from tests.console_site import start

    hook = "https://hooks.example.com/services/T000/B000/sekrit-hook-value"
    config = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"),
                          webhooks=[hook])
    from kubesage.store import RunStore

    store = RunStore(str(tmp_path / "store"))
    record = RunRecord("leaky-1", "p", "", "h", "docker", status="failed", started=time.time())
    record.steps = [StepRecord("s", "s", "c", "1", "i", status="failed",
                               error=f"posting to {hook} failed; password pg-pass-4711")]
    store.save(record)
    site = start(Site("", config, store, str(tmp_path)), env={"PGPASSWORD": "pg-pass-4711"})
    try:
        for path in ("/", "/runs/leaky-1", "/compare", "/lineage", "/catalog", "/clients"):
            status, body = site.get(path)
            assert status == 200, path
            assert hook not in body and "pg-pass-4711" not in body and TOKEN not in body, path
        assert "********" in site.get("/runs/leaky-1")[1]
    finally:
        stop(site)


def test_another_host_is_refused_without_a_token(tmp_path) -> None:
    env = {k: v for k, v in environment().items() if k != "KUBESAGE_CONSOLE_TOKEN"}
    proc = subprocess.run([*KUBESAGE, "ui", "--host", "0.0.0.0", "--port", "1"], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "needs a token" in proc.stderr and "KUBESAGE_CONSOLE_TOKEN" in proc.stderr


@pytest.mark.server
def test_the_console_reads_a_team_store_through_a_read_only_role(
        tmp_path, postgres: Any, pg_password: str) -> None:
    from kubesage.store import RunStore
    from tests.console_site import curves_run, start

    url = postgres.fresh_database("console_ro")
    RunStore(url).save(curves_run("team-run-1", 0.1, [0.5, 0.4], time.time()))
    postgres.grant_read("console_ro")
    reader = url.replace("kubesage@", "reader@")
    config = tmp_path / "local.yaml"
    config.write_text(f"store: {reader}\nhome: {tmp_path / 'home'}\n")
    site = start(Site("", str(config), RunStore(reader), str(tmp_path)),
                 env={"PGPASSWORD": pg_password})
    try:
        status, body = site.get("/")
        assert status == 200 and "team-run-1" in body and pg_password not in body
        assert site.get("/runs/team-run-1")[0] == 200
        assert site.get("/lineage?model=model-team-run-1")[0] == 200
        assert site.get("/compare?run=team-run-1&run=team-run-1")[0] == 200
    finally:
        stop(site)
    assert os.path.isdir(tmp_path / "home")


def test_a_large_fan_out_is_one_node_per_task_with_a_chip_per_item(site: Site, page: Any) -> None:
    from benchmarks.console import fan_out_record

    record = fan_out_record("big-fan-out-1", 40)
    record.steps[7].status = "failed"  # per-client[6]
    site.store.save(record)
    page.goto(f"{site.url}/runs/big-fan-out-1")
    nodes = page.locator("#run-graph svg g.node")
    assert sorted(nodes.nth(i).get_attribute("data-step") for i in range(nodes.count())) == [
        "gated", "per-client", "probe", "score"]
    group = page.locator('#run-graph g.node[data-step="per-client"]')
    assert group.get_attribute("data-state") == "failed" and group.get_attribute("data-items") == "40"
    chips = page.locator('#items-per-client a.chip')
    assert chips.count() == 40
    assert page.locator('#items-per-client a.chip[data-step="per-client[6]"]').get_attribute(
        "data-state") == "failed"
    page.goto(f"{site.url}/runs/big-fan-out-1?expand=1")
    assert page.locator("#run-steps tr.step").count() == 43

"""The incident dashboard as a person sees it: in process, then in a real headless Chromium.

The incident log holds real incidents: the watcher, with an in-memory ECS, a fake CloudWatch
and the z-score detector fitted on two weeks of quiet metrics, lives through a CPU surge that
the scale-up fixes and an error storm that the rollback does not (it escalates).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from detection.zscore import RobustZDetector
from rca.playbook import load_playbook
from rca.rules import RuleClassifier
from service.api import create_app
from service.scoring import ServiceModels
from service.settings import ServiceTarget, Settings
from service.store import IncidentStore
from tests.fakes import Clock, FakeSource, fake_platform, normal

pytestmark = pytest.mark.e2e
T0 = pd.Timestamp("2026-11-16 10:00", tz="UTC")
MINUTE = pd.Timedelta(minutes=1)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass(frozen=True)
class Log:
    settings: Settings
    resolved: int     # high_cpu, scaled up, verified resolved
    escalated: int    # error_rate_high, rolled back, still failing: escalated


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Log:
    """An incident log written by the watcher itself: one resolved incident, one escalated."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("dashboard"))
    history = pd.date_range(T0 - pd.Timedelta(days=14), T0, freq="1min", inclusive="left")
    detector = RobustZDetector().fit(normal(history, np.random.default_rng(0)))
    clock = Clock(T0)
    source = FakeSource([(T0 + 3 * MINUTE, T0 + 10 * MINUTE, "high_cpu"),
                         (T0 + 40 * MINUTE, None, "error_rate_high")])
    platform = fake_platform(settings, clock=clock)
    store = platform.store
    watcher = platform.watcher(ServiceTarget(), detector, source=source)
    for _ in range(40 + 3 + 15 + 20):
        watcher.tick()
        clock.advance()
    resolved, escalated = sorted(i.id for i in store.list())
    assert store.get(resolved).status == "resolved" and store.get(escalated).status == "escalated"
    store.close()
    return Log(settings, resolved, escalated)


def make_app(settings: Settings):
    return create_app(settings, RuleClassifier(load_playbook()), models=ServiceModels(where="none"))


@pytest.fixture(scope="module")
def client(log) -> TestClient:
    return TestClient(make_app(log.settings))


# --- in process -----------------------------------------------------------------------------------

def test_the_front_page_lists_incidents_in_progress_and_recent_ones(client, log) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    in_progress = text.split('id="open"')[1].split('id="recent"')[0]
    assert f'href="/incidents/{log.escalated}"' in in_progress, "the escalated incident is still open"
    assert f'href="/incidents/{log.resolved}"' not in in_progress
    recent = text.split('id="recent"')[1]
    assert "high_cpu" in recent and "error_rate_high" in recent
    assert "CPU: 85% (expected 30%)" in recent
    assert "http://" not in text and "https://" not in text, "no external asset"


def test_an_incident_page_tells_the_whole_story(client, log) -> None:
    text = client.get(f"/incidents/{log.resolved}").text
    assert '<b class="root-cause">high_cpu</b>' in text
    assert "scale_up" in text and "desired count 2 -&gt; 3" in text
    assert "passed" in text and "all health metrics back inside their baselines" in text
    assert "Nobody was paged." in text
    assert f'src="/incidents/{log.resolved}/plots/cpu_utilization.png"' in text
    assert "metrics_window" not in text, "plot data is not a timeline step"

    escalated = client.get(f"/incidents/{log.escalated}").text
    assert "rollback" in escalated and "failed" in escalated
    section = escalated.split('id="escalation"')[1].split("</section>")[0]
    assert "paged on-call engineer" in section and "paged team lead" in section


def test_a_plot_is_a_png_of_the_recorded_window(client, log) -> None:
    from PIL import Image

    reply = client.get(f"/incidents/{log.resolved}/plots/cpu_utilization.png")
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(reply.content)).convert("RGB")
    assert image.size == (750, 260)
    assert _red_pixels(image) > 20, "the anomalies are marked in red"


def test_unknown_incidents_and_metrics_are_clear_404s(client, log) -> None:
    for path in ("/incidents/999", "/incidents/abc", "/incidents/0"):
        reply = client.get(path)
        assert reply.status_code == 404 and "all incidents" in reply.text.lower()
    assert "no incident 999" in client.get("/incidents/999/plots/cpu_utilization.png").text
    missing = client.get(f"/incidents/{log.resolved}/plots/disk_space.png")
    assert missing.status_code == 404 and "no disk_space data" in missing.text


def test_what_the_log_holds_is_escaped_not_run(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = IncidentStore(settings.db_path)
    incident = store.open_incident("prod", "<script>alert(1)</script>", T0)
    store.record(incident, T0, "note", {"summary": "<img src=x onerror=alert(2)>"})
    client = TestClient(make_app(settings))
    for path in ("/", f"/incidents/{incident}"):
        text = client.get(path).text
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    assert "<img src=x" not in client.get(f"/incidents/{incident}").text
    assert "Not diagnosed yet." in client.get(f"/incidents/{incident}").text


def test_an_incident_split_off_from_another_links_both_ways(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = IncidentStore(settings.db_path)
    first = store.open_incident("prod", "web", T0)
    store.set_status(first, T0, "escalated")
    second = store.split_incident("prod", "web", T0 + 30 * MINUTE, first, {
        "reason": "another_root_cause", "root_cause": "memory_leak", "set_aside": {},
        "summary": f"another fault (memory_leak) while incident {first} (high_cpu) is escalated"})
    client = TestClient(make_app(settings))
    page = client.get(f"/incidents/{second}").text
    related = page.split('id="related-to"')[1].split("</div>")[0]
    assert f'href="/incidents/{first}"' in related
    assert "another fault (memory_leak) while incident" in page, "the timeline says why"
    older = client.get(f"/incidents/{first}").text
    assert f'href="/incidents/{second}"' in older.split('id="split-off"')[1].split("</div>")[0]
    assert f"another fault split off as incident {second} (memory_leak)" in older
    in_progress = client.get("/").text.split('id="open"')[1].split('id="recent"')[0]
    assert "split off from" in in_progress


def test_an_empty_log_says_so(tmp_path) -> None:
    text = TestClient(make_app(Settings(data_dir=tmp_path))).get("/").text
    assert "No incident in progress." in text and "The incident log is empty." in text


# --- in a real browser ----------------------------------------------------------------------------

def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _red_pixels(image) -> int:
    """Pixels of matplotlib's tab:red (the anomaly markers), give or take anti-aliasing."""
    rgb = np.asarray(image.convert("RGB"), dtype=int)
    return int(((rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum())


class Server:
    """The app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            self.thread.join(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture(scope="module")
def browser_page(log, tmp_path_factory):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium found (set CHROMIUM or install Debian's chromium; `make test` does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with Server(make_app(log.settings)) as base, sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            yield context.new_page(), base
        finally:
            context.close()


def test_in_a_browser_the_list_leads_to_the_incident_and_its_plots_render(browser_page, log) -> None:
    from PIL import Image

    page, base = browser_page
    page.goto(base + "/")
    row = page.locator(f"#recent tr.incident[data-id='{log.resolved}']")
    assert "high_cpu" in row.inner_text() and "resolved" in row.inner_text()

    row.get_by_role("link", name="high_cpu").click()
    page.wait_for_url(f"{base}/incidents/{log.resolved}")
    assert page.locator("#diagnosis .root-cause").inner_text() == "high_cpu"
    assert page.locator("#diagnosis .confidence").inner_text().endswith("%")
    assert "scale_up" in page.locator("#actions").inner_text()
    assert "passed" in page.locator("#verification").inner_text()

    plots = page.locator("img.plot")
    assert plots.count() >= 4
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    widths = page.eval_on_selector_all("img.plot", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths), f"every plot loaded: natural widths {widths}"

    cpu = page.locator("img.plot[src$='/cpu_utilization.png']")
    cpu.scroll_into_view_if_needed()
    shot = Image.open(io.BytesIO(cpu.screenshot())).convert("RGB")
    colours = shot.getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 50, "the plot region is not blank"
    assert _red_pixels(shot) > 10, "the anomalies show in red on screen"

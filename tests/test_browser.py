"""The dashboards in a real browser: Voila serves notebooks/, headless Chromium clicks them.

Everything is real and local: the session's Kafka broker, a dummy service subprocess per
test, a Voila server whose page kernels talk to that broker (`dashboard` fixture), Debian's
Chromium driven by Playwright with every request off the loopback aborted (`chromium`,
`browser_page` fixtures, in conftest.py). Without Chromium the tests fail, naming the package.

The helpers below (`open_dashboard_page`, `label_beside`, `producer_row`, `save_screenshot`)
are meant for every dashboard's browser test. Screenshots of the final states go to
`test-artifacts/` at the repository root.
"""

from __future__ import annotations

import html
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from conftest import subprocess_env, wait_for_status
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from streamforge_nb.control.queue import Queue
from streamforge_nb.platform.contract import Pong
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.ui.dashboard import Dashboard, start_dashboard

StartDummy = Callable[..., subprocess.Popen[str]]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# A page's kernel starts and runs the notebook (imports, Kafka clients) before any widget
# shows: a few seconds on the 2-core CI machine; ample room.
PAGE_READY_MS = 120_000
# Clicks end in a Kafka round trip (ping 5 s, stop 30 s at most in QueuePanel).
ACTION_MS = 45_000
RTT = re.compile(r"^\d+(\.\d+)? ms$")


# -- helpers for dashboard tests -------------------------------------------------------------
def open_dashboard_page(page: Page, url: str, *, timeout_ms: float = PAGE_READY_MS) -> None:
    """Load a Voila page and wait until its widgets are live (a button is shown).

    A notebook that fails shows its traceback instead of widgets: the test fails with the
    page's text, not after the whole timeout.
    """
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    ready = page.locator(".widget-button").first
    failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        if ready.is_visible():
            return
        if "Traceback" in " ".join(failed.all_inner_texts()):
            pytest.fail(f"the notebook failed at {url}:\n{_page_text(page)}", pytrace=False)
        page.wait_for_timeout(100)
    pytest.fail(f"no widget at {url} within {timeout_ms / 1000:g} s:\n{_page_text(page)}")


def button(page: Page, name: str) -> Locator:
    """The ipywidgets button labelled `name`.

    By its text, not its accessible name: an icon's glyph is part of the latter.
    """
    return page.locator(".widget-button", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))


def label_beside(page: Page, button_name: str) -> Locator:
    """The first label in the same row (HBox) as the button `button_name`."""
    row = page.locator(".widget-hbox", has=button(page, button_name)).last
    return row.locator(".widget-label").first


def producer_row(page: Page, producer: str) -> Locator:
    """The producer table's row of `producer` (its cells: producer, status, records, ...)."""
    return page.locator(".widget-html tr", has=page.locator("code", has_text=producer))


def save_screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as test-artifacts/<name>.png; return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _page_text(page: Page, limit: int = 4000) -> str:
    try:
        return page.locator("body").inner_text(timeout=5_000)[-limit:]
    except PlaywrightTimeout:
        return "(page text unavailable)"


def _pongs(queue_id: str, settings: Settings) -> list[Pong]:
    with Queue(queue_id, settings) as queue:
        return [e for e in queue.events() if isinstance(e, Pong)]


# -- the control panel -----------------------------------------------------------------------
@pytest.mark.browser
def test_ping_shows_the_round_trip_of_a_real_pong(
    dashboard: Dashboard, browser_page: Page, start_dummy: StartDummy, settings: Settings
) -> None:
    page = browser_page
    queue_id = unique_name("wf-browser")
    start_dummy(queue_id)
    open_dashboard_page(page, dashboard.page_url("control_panel", queue_id=queue_id))
    title = page.locator(".widget-html", has_text="Queue").locator("code").first
    expect(title).to_have_text(queue_id)  # the queue id came from the URL
    rtt = label_beside(page, "Ping")
    expect(rtt).to_have_text("no ping yet")
    assert _pongs(queue_id, settings) == []

    clicked = time.time()
    button(page, "Ping").click()
    expect(rtt).to_have_text(RTT, timeout=ACTION_MS)
    shown = time.time()

    # The number on the page is the round trip of the one pong the dummy sent for this
    # click: the dummy saw the ping after the click, answered before the label changed, and
    # the page's round trip covers (at least) the dummy's receive-to-reply interval.
    pongs = _pongs(queue_id, settings)
    assert len(pongs) == 1, pongs
    pong = pongs[0]
    ms = float(rtt.inner_text().removesuffix(" ms"))
    assert clicked - 0.05 <= pong.ping_timestamp <= pong.timestamp <= shown + 0.05
    assert ms / 1000 >= (pong.timestamp - pong.ping_timestamp) - 0.005
    assert ms / 1000 <= shown - clicked + 0.005
    status = page.locator(".widget-label", has_text="pong from")
    expect(status).to_have_text(f"pong from {pong.producer} in {rtt.inner_text()}")
    expect(button(page, "Ping")).to_be_enabled()
    save_screenshot(page, "control_panel_ping")


@pytest.mark.browser
def test_stop_needs_confirmation_then_interrupts_the_producer(
    dashboard: Dashboard, browser_page: Page, start_dummy: StartDummy, settings: Settings
) -> None:
    page = browser_page
    queue_id = unique_name("wf-browser")
    proc = start_dummy(queue_id)
    open_dashboard_page(page, dashboard.page_url("control_panel", queue_id=queue_id))
    with Queue(queue_id, settings) as queue:
        (producer,) = queue.status().index  # status() waits until caught up
    row = producer_row(page, producer)
    expect(row).to_contain_text("started", timeout=ACTION_MS)

    confirm = button(page, "Confirm stop")
    expect(confirm).to_be_hidden()
    button(page, "Stop").click()
    expect(confirm).to_be_visible()
    expect(button(page, "Cancel")).to_be_visible()
    expect(button(page, "Stop")).to_be_disabled()
    # Asking is not stopping: the dummy keeps serving until the confirmation.
    page.wait_for_timeout(500)
    assert proc.poll() is None

    confirm.click()
    expect(confirm).to_be_hidden()
    expect(row).to_contain_text("interrupted", timeout=ACTION_MS)
    expect(page.locator(".widget-label", has_text="stop acknowledged")).to_have_text(
        f"stop acknowledged by {producer}", timeout=ACTION_MS
    )
    assert proc.wait(timeout=30) == 0
    wait_for_status(settings, queue_id, "interrupted")
    save_screenshot(page, "control_panel_stopped")


@pytest.mark.browser
def test_closing_the_page_shuts_its_kernel_down(dashboard: Dashboard, browser_page: Page) -> None:
    before = dashboard.kernel_pids()
    open_dashboard_page(
        browser_page, dashboard.page_url("control_panel", queue_id=unique_name("wf-browser"))
    )
    started = dashboard.kernel_pids() - before
    assert len(started) == 1, started  # one kernel per page
    browser_page.close(run_before_unload=True)  # Voila's beforeunload asks for a shutdown
    deadline = time.monotonic() + 30
    while started & dashboard.kernel_pids():
        assert time.monotonic() < deadline, "the page's kernel outlived the page by 30 s"
        time.sleep(0.1)


# -- the server, without a browser -----------------------------------------------------------
PARAMETERS = """\
name = "world"
count = 1
ratio = 0.5
loud = False
tags = ["a"]
"""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_query_arguments_become_typed_parameters_and_stop_leaves_no_process(
    tmp_path: Path,
) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python",
    }  # fmt: skip
    notebook.cells = [
        nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('got', repr((name, count, ratio, loud, tags)))"),
    ]
    nbformat.write(notebook, tmp_path / "hello.ipynb")

    board = start_dashboard(tmp_path)
    try:
        status, page = _get(board.page_url("hello"))
        assert status == 200
        assert "got ('world', 1, 0.5, False, ['a'])" in html.unescape(page)
        # Every page needs the server's token (issue 11): none, or a wrong one, gets nothing.
        assert board.token and f"token={board.token}" in board.page_url("hello")
        for url in (
            board.page_url("hello").replace(f"token={board.token}", "token=wrong"),
            board.page_url("hello").split("?")[0],
            board.tree_url.split("?")[0],
        ):
            status, page = _get(url)
            assert status in (401, 403, 404) or "got (" not in page, (url, status)
            assert "got (" not in page

        url = board.page_url(
            "hello", name="Ada & co", count=3, ratio=0.25, loud=True, tags=["x", "y"]
        )
        status, page = _get(url)
        assert status == 200
        assert "got ('Ada & co', 3, 0.25, True, ['x', 'y'])" in html.unescape(page)

        status, page = _get(board.page_url("hello", nmae="typo"))
        assert status == 400
        assert "unknown parameter(s) nmae" in page and "name, count, ratio" in page
        status, page = _get(board.page_url("hello", count="three"))
        assert status == 400
        assert "count=&#39;three&#39;: expected int, as its default 1" in page

        kernels = board.kernel_pids()
        assert len(kernels) == 2  # the two pages rendered; no browser ever closed them
    finally:
        board.stop()
    assert board.process.returncode is not None
    left = [pid for pid in kernels if Path(f"/proc/{pid}").exists()]
    assert not left, f"kernels left running: {left}"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(board.tree_url, timeout=5)


def test_cli_serves_the_panels_until_interrupted(settings: Settings) -> None:
    queue_id = unique_name("wf-cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamforge_nb.cli", "dashboard", "--port", "0"],
        env=subprocess_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job may ignore SIGINT; Ctrl-C must reach this one.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("dashboards of "), lines
        (control,) = [ln.split(": ", 1)[1].strip() for ln in lines if "control_panel:" in ln]
        assert re.search(
            r"/voila/render/control_panel\.ipynb\?token=\w+&queue_id=QUEUE_ID$", control
        )
        assert re.search(r"/voila/tree\?token=\w+$", lines[0].strip()), lines[0]  # as Jupyter's
        status, page = _get(control.replace("QUEUE_ID", queue_id))
        assert status == 200 and queue_id in page
        voila = [p for p in _children(proc.pid) if b"voila" in _cmdline(p)]
        kernels = [k for v in voila for k in _children(v)]
        assert voila and kernels, "no Voila or no kernel under the CLI"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    left = [p for p in voila + kernels if Path(f"/proc/{p}").exists()]
    assert not left, f"Voila or its kernel left running: {left}"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


# -- the launch panel ------------------------------------------------------------------------
@pytest.mark.browser
def test_invalid_input_shows_an_inline_error_and_launches_nothing(
    dashboard: Dashboard, browser_page: Page, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    url = dashboard.page_url("launch_panel", symbol="BTC/USDT", store_url=f"local://{store}")
    open_dashboard_page(browser_page, url)
    button(browser_page, "Launch").click()
    error = browser_page.locator(".widget-html", has_text="BTC/USDT")
    expect(error).to_be_visible(timeout=ACTION_MS)
    assert "invalid symbol" in error.inner_text()
    assert not store.exists()  # no queue state, no Job: nothing was launched


@pytest.mark.browser
def test_launching_a_small_workflow_shows_finished_and_the_chart(
    dashboard: Dashboard, browser_page: Page, settings: Settings, tmp_path: Path
) -> None:
    from streamforge_nb.store.candles import CandleStore
    from streamforge_nb.testing.exchange import ExchangeServer

    store_url = f"local://{tmp_path / 'store'}"
    with ExchangeServer() as exchange:
        url = dashboard.page_url(
            "launch_panel",
            symbol="ETHUSDT",
            interval="15m",
            time_range="2024-08-01:2024-08-02",
            base_url=exchange.base_url,
            store_url=store_url,
        )
        open_dashboard_page(browser_page, url)
        button(browser_page, "Launch").click()
        progress = browser_page.locator(".widget-label", has_text="candles stored")
        expect(progress).to_contain_text("96 candles stored", timeout=180_000)
        expect(progress).to_contain_text("arango-candles: finished", timeout=60_000)
        expect(progress).to_contain_text("loader-candles: finished", timeout=60_000)
        chart = browser_page.locator(".widget-output .js-plotly-plot")
        expect(chart.locator(".gtitle")).to_contain_text("96 candles", timeout=30_000)
        assert chart.locator(".trace.boxes, g.trace").count() > 0  # drawn candles
        save_screenshot(browser_page, "launch_panel_finished")
    with CandleStore.open(store_url) as store:
        assert len(store.load("ETHUSDT", "15m", "2024-08-01", "2024-08-02")) == 96

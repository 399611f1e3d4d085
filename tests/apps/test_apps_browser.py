"""End to end in headless Chromium (Selenium): load the page, run one prediction per tab by
clicking an example and the tab's button, check the visible result, save a screenshot of each
tab (``runs/app-screenshots/`` or ``$MAMBAKIT_SCREENSHOTS``), check that a bad input shows a
readable message, and that the page fetched nothing from outside this machine.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and ``pip install selenium``
(``bash tasks.sh test`` installs the browser when it can); skipped with that hint otherwise.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HINT = ("headless Chromium is not available: apt-get install -y chromium chromium-driver && "
        "pip install selenium (bash tasks.sh test installs the browser when run as root)")


def _browser_paths() -> tuple[str, str] | None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason=HINT)
    paths = _browser_paths()
    if paths is None:
        pytest.skip(HINT)
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1700", "--disable-extensions", "--no-first-run", "--lang=en-US",
                "--disable-background-networking", "--disable-component-update",
                # a synthetic microphone (a beep) for the live streaming mode, no permission prompt
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    except Exception as err:  # noqa: BLE001 - any start-up failure means "no usable browser"
        pytest.skip(f"{HINT} (start failed: {str(err).splitlines()[0]})")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("MAMBAKIT_SCREENSHOTS", ROOT / "runs" / "app-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait_for(driver, predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - the element may not exist yet
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def text_of(driver, css: str) -> str:
    return driver.execute_script(f"const e = document.querySelector({json.dumps(css)}); return e ? e.innerText : '';")


def click(driver, css: str, index: int = 0) -> None:
    driver.execute_script(f"""const els = document.querySelectorAll({json.dumps(css)});
        els[{index}].scrollIntoView({{block: 'center'}}); els[{index}].click();""")


def open_tab(driver, name: str) -> None:
    click(driver, f"#tab-{name}-button")
    wait_for(driver, lambda: driver.execute_script(
        f"const e = document.querySelector('#tab-{name}'); return e && e.offsetParent !== null;"), 20, f"tab {name}")


def seconds_heard(text: str) -> float:
    """``"Heard 1.6 s at 48000 Hz ..."`` -> 1.6 (0 before the first update)."""
    m = re.search(r"Heard (\d+(?:\.\d+)?) s", text)
    return float(m.group(1)) if m else 0.0


# Gradio's streaming microphone loads its WAV encoder (two dynamic imports, then a worker) only
# once the live tab is shown, and a record press before that finishes throws "... is not a
# constructor" inside Gradio and records nothing: a race a slow CI machine loses. The encoder is
# ready when the extendable MediaRecorder module (same URL, so the same module instance) reports
# audio/wav as supported, which only a registered encoder makes true.
WAV_ENCODER_READY = r"""
const done = arguments[arguments.length - 1];
const urls = performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => /\/module-[^/]*\.js$/.test(n));
Promise.all(urls.map(u => import(u).catch(() => ({})))).then(
    mods => done(mods.some(m => m.MediaRecorder && m.register
                                && m.MediaRecorder.isTypeSupported('audio/wav'))),
    () => done(false));
"""


def wait_for_wav_encoder(driver, timeout: float = 60.0) -> None:
    driver.set_script_timeout(10)
    wait_for(driver, lambda: driver.execute_async_script(WAV_ENCODER_READY), timeout,
             "Gradio's WAV encoder for the streaming microphone")


def record_one_second(driver, attempts: int = 3, timeout: float = 45.0) -> str:
    """Start the fake microphone and wait until the app reports a second of streamed audio.

    On a busy 2-core CI machine the first start can be lost (the media stream opens after the
    click, or the first chunks queue behind the server's start-up work); the user's remedy is to
    press record again, and so does this. Fails with what the page and the browser console said.
    """
    live_info = lambda: text_of(driver, "#audio-live-info")  # noqa: E731
    for attempt in range(attempts):
        click(driver, "#audio-mic .record-button")
        try:
            return wait_for(driver, lambda: seconds_heard(live_info()) >= 1.0 and live_info(),
                            timeout, "a second of streamed audio")
        except AssertionError:
            if attempt == attempts - 1:
                console = [e.get("message", "") for e in driver.get_log("browser")][-10:]
                raise AssertionError(f"no second of streamed audio after {attempts} starts of "
                                     f"{timeout:.0f} s; live info: {live_info()!r}; console: {console}")
            driver.execute_script("const b = document.querySelector('#audio-mic .stop-button'); if (b) b.click();")
            wait_for(driver, lambda: driver.execute_script(
                "return !!document.querySelector('#audio-mic .record-button');"), 20, "the record button")
    raise AssertionError("unreachable")


def shoot(driver, folder: Path, name: str) -> Path:
    driver.execute_script("window.scrollTo(0, 0);")
    for _ in range(2):   # the page scrolls inside Gradio's container: size the window to the last element
        height = driver.execute_script("""let bottom = 1200;
            document.querySelectorAll('footer, .model-card').forEach(e => {
                bottom = Math.max(bottom, e.getBoundingClientRect().bottom + window.scrollY); });
            return bottom;""")
        driver.set_window_size(1400, min(int(height) + 120, 3600))
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


def test_one_prediction_per_tab_in_chromium(browser, server, shots, shipped_vision):
    d = browser
    d.get(server)
    wait_for(d, lambda: text_of(d, "#tab-vision-button"), 60, "the page to render")
    # the model cards are filled in on page load (size, measured latency)
    wait_for(d, lambda: "ms for one" in text_of(d, "#vision-card"), 60, "the vision model card")

    # vision: the coat photographed on white (inverted and resized by the app)
    click(d, "#tab-vision .gallery-item", 2)
    wait_for(d, lambda: d.execute_script("return !!document.querySelector('#vision-input img');"), 20,
             "the example image to load")
    click(d, "#vision-run")
    wait_for(d, lambda: "%" in text_of(d, "#vision-label"), 60, "the image prediction")
    assert "inverted (light background detected)" in text_of(d, "#vision-info")
    if shipped_vision:
        assert text_of(d, "#vision-label .output-class") == "Coat"
    shoot(d, shots, "1-vision")

    # keyword spotting: a spoken "seven"
    open_tab(d, "audio")
    click(d, "#tab-audio .gallery-item", 3)
    wait_for(d, lambda: "7_lucas_2" in d.execute_script(
        "const e = document.querySelector('#audio-input'); return e ? e.innerHTML : '';"), 20, "the example clip")
    click(d, "#audio-run")
    wait_for(d, lambda: "seven" in text_of(d, "#audio-label") and "%" in text_of(d, "#audio-label"), 60,
             "the keyword prediction")
    wait_for(d, lambda: d.execute_script("return !!document.querySelector('#audio-plot img');"), 30, "the plot")
    assert text_of(d, "#audio-label .output-class") == "7 (seven)"
    assert "accuracy 98.0%" in text_of(d, "#audio-card")
    shoot(d, shots, "2-keyword-spotting")

    # live mode: the fake microphone streams 100 ms chunks; the running prediction updates
    click(d, "#tab-audio button[role=tab]", 1)
    wait_for(d, lambda: d.execute_script("return !!document.querySelector('#audio-mic .record-button');"), 20,
             "the record button")
    wait_for_wav_encoder(d)
    heard = record_one_second(d)
    assert "resampled to 16 kHz on the fly" in heard and text_of(d, "#audio-live-label .output-class")
    shoot(d, shots, "3-keyword-spotting-live")
    click(d, "#audio-mic .stop-button")

    # DNA: a bad sequence first (a readable message, no traceback), then a coding window
    open_tab(d, "genomics")
    d.execute_script("""const t = document.querySelector('#dna-input textarea');
        t.value = 'ACGTACGTXXACGT'; t.dispatchEvent(new Event('input', {bubbles: true}));""")
    click(d, "#dna-run")
    toast = wait_for(d, lambda: d.execute_script(
        "const e = document.querySelector('.toast-body'); return e ? e.innerText : '';"), 30, "the error message")
    assert "invalid DNA character 'X' at position 8" in toast and "Traceback" not in toast
    shoot(d, shots, "4-dna-error")
    d.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click());")
    click(d, "#tab-genomics .gallery-item", 1)
    wait_for(d, lambda: d.execute_script(
        "return document.querySelector('#dna-input textarea').value.startsWith('>MGH78578');"), 20, "the example")
    click(d, "#dna-run")
    wait_for(d, lambda: "%" in text_of(d, "#dna-label") and "coding" in text_of(d, "#dna-label"), 60,
             "the DNA prediction")
    wait_for(d, lambda: d.execute_script("return !!document.querySelector('#dna-plot img');"), 30, "the track")
    assert "200 bp" in text_of(d, "#dna-info")
    shoot(d, shots, "5-dna")

    # time series: a slice of the ETTh1 test period, last 96 rows held out as truth
    open_tab(d, "timeseries")
    click(d, "#tab-timeseries .gallery-item", 0)
    wait_for(d, lambda: "etth1-test" in text_of(d, "#ts-input"), 20, "the example series")
    click(d, "#ts-run")
    wait_for(d, lambda: "held-out rows" in text_of(d, "#ts-info"), 60, "the forecast")
    wait_for(d, lambda: d.execute_script("return !!document.querySelector('#ts-plot img');"), 30, "the plot")
    assert "ETTh1 training-split scaler" in text_of(d, "#ts-info")
    shoot(d, shots, "6-timeseries")

    # graphs: a PATTERN test graph, nodes coloured by P(pattern)
    open_tab(d, "graphs")
    click(d, "#tab-graphs .gallery-item", 0)
    wait_for(d, lambda: ".json" in text_of(d, "#graphs-input") or ".txt" in text_of(d, "#graphs-input"), 20,
             "the example graph")
    click(d, "#graphs-run")
    wait_for(d, lambda: "predicted in the pattern" in text_of(d, "#graphs-info"), 60, "the node scores")
    wait_for(d, lambda: d.execute_script("return !!document.querySelector('#graphs-plot img');"), 30, "the drawing")
    shoot(d, shots, "7-graphs")

    # nothing but this server (and in-page data/blob URLs) was contacted
    urls = set()
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.add(msg["params"]["request"]["url"])
    outside = sorted(u for u in urls if not u.startswith((server.rstrip("/"), "data:", "blob:")))
    assert urls and not outside, outside
    severe = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"
              and "Failed to load resource" not in e["message"]]
    assert not severe, severe

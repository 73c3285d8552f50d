"""Open a local HTML file in headless Chromium (Selenium + chromedriver) and
report what a person's browser would see: console messages, every network
request, the plotly plots that rendered, and a full-page screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package; :func:`unavailable` says which is missing (tests skip with it).
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--disable-default-apps", "--no-default-browser-check", "--mute-audio",
         "--window-size=1400,1000")

INTERNAL = ("chrome:", "chrome-untrusted:", "chrome-search:", "devtools:")

# Every plot div is rendered when plotly has drawn its .main-svg inside it.
PLOTS_JS = """
return Array.from(document.querySelectorAll('div.plot')).map(d => ({
  id: d.id, section: d.closest('section') ? d.closest('section').id : null, figure: d.getAttribute('data-figure'),
  rendered: d.getAttribute('data-rendered') === 'true', svg: d.querySelector('.main-svg') !== null}));
"""

# Each trace viewer: pick its last trace as a person would, then see which panel is visible.
TRACES_JS = """
return Array.from(document.querySelectorAll('select.trace-select')).map(sel => {
  const panels = Array.from(document.getElementById(sel.getAttribute('data-target')).children);
  const visible = () => panels.filter(d => !d.hidden && d.offsetHeight > 0).map(d => d.id);
  const before = visible();
  sel.value = sel.options[sel.options.length - 1].value;
  sel.dispatchEvent(new Event('change'));
  const after = visible();
  const shown = after.length ? document.getElementById(after[0]).innerText : '';
  return {id: sel.closest('.trace-viewer').id, options: sel.options.length, before: before, chosen: sel.value,
          after: after, text: shown};
});
"""


# What plotly drew for each figure key: tick labels of the x and y axes, bar shapes, heat-map images, cell texts.
DRAWN_JS = """
const out = {};
document.querySelectorAll('div.plot[data-figure]').forEach(d => {
  const key = d.getAttribute('data-figure');
  if (key in out) return;
  const texts = sel => Array.from(d.querySelectorAll(sel)).map(t => t.textContent);
  out[key] = {xticks: texts('.xaxislayer-above text'), yticks: texts('.yaxislayer-above text'),
              bars: d.querySelectorAll('.bars .point path').length, heat: d.querySelectorAll('.hm image').length,
              bartext: texts('.bars .point text'), celltext: texts('.hm text, .heatmap text, g.textpoint text')};
});
return out;
"""


@dataclass
class PageReport:
    url: str
    console: list[dict] = field(default_factory=list)  # {"level", "message"}
    requests: list[tuple[str, str]] = field(default_factory=list)  # (url, document url) of every request
    plots: list[dict] = field(default_factory=list)  # {"id", "section", "figure", "rendered", "svg"}
    # per trace viewer: {"id", "options", "before", "chosen", "after", "text"}
    traces: list[dict] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    acted: object = None  # what open_page's ``act`` returned
    screenshot: Path | None = None
    # per CSS selector asked for in ``shots``: {"path", "width", "height", "text"} of the element as drawn
    elements: dict[str, dict] = field(default_factory=dict)
    lang: str = ""  # <html lang>
    load_seconds: float = 0.0  # from the request for the page until every plot has rendered
    # per data-figure key (first figure with it): its axis tick labels, bars and heat-map images as drawn
    drawn: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def errors(self) -> list[dict]:
        return [m for m in self.console if m["level"] == "SEVERE"]

    @property
    def page_requests(self) -> list[str]:
        """What our page asked for (the browser's own chrome:// pages are left out)."""
        return [u for u, doc in self.requests if not doc.startswith(INTERNAL)]

    @property
    def foreign_requests(self) -> list[str]:
        """Requests by the page for anything but the file itself (inline data: URLs are not
        network), and any request to the network at all, whoever made it."""
        ours = [u for u in self.page_requests if u.split("#")[0] != self.url and not u.startswith("data:")]
        net = [u for u, _ in self.requests if u.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))]
        return sorted(set(ours + net))


def unavailable() -> str | None:
    """Why the browser check cannot run here, or None."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found (apt-get install -y chromium chromium-driver)"
    if not Path(CHROMEDRIVER).is_file():
        return f"{CHROMEDRIVER} not found (apt-get install -y chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install selenium; it is in the test extra)"
    return None


def open_page(html: Path, screenshot: Path | None = None, timeout: float = 20.0, act=None,
              shots: dict[str, Path] | None = None) -> PageReport:
    """``act(driver)``: run on the loaded page (clicks, reads) before the console is read; its result is
    ``PageReport.acted``. ``shots``: CSS selector -> PNG path; each first matching element is scrolled into
    view and captured by itself (what a reader sees of it), with its size and visible text."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.monotonic()
    profile = Path(tempfile.mkdtemp(prefix="valuelens-chromium-"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    url = html.resolve().as_uri()
    report = PageReport(url)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get_log("performance")  # drop what the browser did before our page (its new-tab page)
        driver.get_log("browser")
        t0 = time.monotonic()
        driver.get(url)
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(
            lambda d: all(p["rendered"] and p["svg"] for p in d.execute_script(PLOTS_JS)))
        report.load_seconds = time.monotonic() - t0
        report.drawn = driver.execute_script(DRAWN_JS)
        report.plots = driver.execute_script(PLOTS_JS)
        report.traces = driver.execute_script(TRACES_JS)
        report.sections = driver.execute_script(
            "return Array.from(document.querySelectorAll('section')).map(s => s.id)")
        report.lang = driver.execute_script("return document.documentElement.lang")
        for selector, path in (shots or {}).items():
            report.elements[selector] = _element(driver, selector, path)
        if act is not None:
            report.acted = act(driver)
        report.console = [{"level": e["level"], "message": e["message"]} for e in driver.get_log("browser")]
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                p = msg["params"]
                report.requests.append((p["request"]["url"], p.get("documentURL", "")))
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            report.screenshot = _full_page(driver, screenshot)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    report.seconds = time.monotonic() - start
    return report


def _element(driver, selector: str, path: Path) -> dict:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, selector)
    if not found:
        return {}
    el = found[0]
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(16000, max(1000, int(el.size["height"]) + 300)))  # the whole element in view
    time.sleep(0.3)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", el)
    time.sleep(0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    el.screenshot(str(path))
    return {"path": path, "width": el.size["width"], "height": el.size["height"], "text": el.text}


def _full_page(driver, path: Path, max_height: int = 16000) -> Path:
    """The whole page as one PNG: the window grows to the page's height first, so
    the capture shows the layout a person scrolling through would see."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(height + 200, max_height))
    time.sleep(0.3)  # let plotly's responsive layout settle after the resize
    path.write_bytes(base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]))
    return path

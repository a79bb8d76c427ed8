"""report.html from a tiny pipeline run, checked as a file and in a real browser.

The browser test drives Debian's headless Chromium (`chromium` + `chromium-driver`, which `.ci/run`
installs) through Selenium, offline. It saves a full-page screenshot of the report to
``$DARLA_TEST_ARTIFACTS/report.png``, by default ``test-artifacts/report.png`` under the repository
root (git-ignored). Without Chromium, chromedriver or selenium it skips locally, but fails when the
``CI`` environment variable is set, so CI cannot skip it silently.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]

#: Chromium flags for a closed network: without them Chromium stalls on background fetches.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
]


def artifacts_dir() -> Path:
    d = Path(os.environ.get("DARLA_TEST_ARTIFACTS") or REPO / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def require(ok: bool, reason: str) -> None:
    """Skip when a browser prerequisite is missing, fail instead under CI."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser test must run, see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of one complete tiny run (32 px, a few hundred steps), shared by this module."""
    from conftest import TINY

    from darla.config import config_from_dict
    from darla.pipeline import run_pipeline

    cfg = config_from_dict(json.loads(json.dumps(TINY)), "tiny.yaml")
    rd = run_pipeline(cfg, run_dir=tmp_path_factory.mktemp("runs") / "tiny", progress=False, log=lambda m: None)
    return rd.root / "report.html"


# --------------------------------------------------------------------------- self-contained

#: Attributes that hold a URL, and the (tag, attribute) pairs whose URL the browser fetches.
URL_ATTRS = {"src", "href", "srcset", "data", "poster", "action", "formaction", "background", "xlink:href"}
FETCHED = {("img", "src"), ("img", "srcset"), ("source", "src"), ("source", "srcset"), ("script", "src"),
           ("iframe", "src"), ("embed", "src"), ("audio", "src"), ("video", "src"), ("video", "poster"),
           ("track", "src"), ("input", "src"), ("object", "data"), ("link", "href"), ("image", "href"),
           ("image", "xlink:href"), ("use", "href"), ("use", "xlink:href")}
EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http://, https://, file://, //host
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]*)|@import\s+['"]([^'"]*)""", re.I)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name == "style":
                self.css.append(value)
            elif name in URL_ATTRS:
                urls = [value]
                if name == "srcset":  # "URL 2x, URL 300w": data: URLs hold commas, descriptors don't
                    urls = [u.rstrip(",") for u in value.split() if not re.fullmatch(r"[\d.]+[wxh],?", u)]
                self.refs += [(tag, name, u) for u in urls]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def test_report_is_self_contained(report):
    """No http(s)/protocol-relative/file URL in any src/href (links included); everything the page
    loads (images, scripts, styles, CSS url()/@import) is embedded as a data: URI."""
    html = report.read_text(encoding="utf-8")
    p = _Refs()
    p.feed(html)
    p.close()
    assert p.refs, "the report references no images at all"
    external = [(t, a, u[:80]) for t, a, u in p.refs if EXTERNAL.match(u) or re.match(r"\s*https?:", u, re.I)]
    assert not external, f"external references in report.html: {external}"
    not_embedded = [(t, a, u[:80]) for t, a, u in p.refs if (t, a) in FETCHED and not u.strip().startswith("data:")]
    assert not not_embedded, f"resources not embedded as data: URIs: {not_embedded}"
    css_urls = [u for css in p.css for m in CSS_URL.finditer(css) for u in m.groups() if u is not None]
    assert not [u for u in css_urls if not u.strip().startswith("data:")], f"CSS loads {css_urls}"
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*https?://""", html, re.I)  # belt and braces


# --------------------------------------------------------------------------- headless Chromium

@pytest.fixture
def browser(tmp_path):
    require(CHROMIUM.is_file(), f"{CHROMIUM} not found (Debian: apt-get install chromium chromium-driver)")
    require(CHROMEDRIVER.is_file(), f"{CHROMEDRIVER} not found (Debian: apt-get install chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is not installed (pip install -e '.[test]')")

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path keeps Selenium Manager (which would go online) out of it.
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


def save_full_page_screenshot(driver, path: Path) -> None:
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1},
    })
    path.write_bytes(base64.b64decode(shot["data"]))


def test_report_renders_in_headless_chromium_without_console_errors(browser, report):
    """Open report.html in headless Chromium: no SEVERE console entry, every <img> decoded, the
    transfer summary table shown, nothing fetched from outside the page. The full-page screenshot
    goes to $DARLA_TEST_ARTIFACTS/report.png (default: <repo>/test-artifacts/report.png)."""
    from selenium.webdriver.common.by import By

    browser.get(report.resolve().as_uri())
    shot = artifacts_dir() / "report.png"
    save_full_page_screenshot(browser, shot)  # before the asserts: a failing page is worth seeing

    assert browser.title.startswith("darla report"), browser.title
    broken = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const imgs = Array.from(document.images);
        Promise.all(imgs.map(i => i.decode().then(() => null, () => i.alt || i.src.slice(0, 60))))
          .then(errs => done({n: imgs.length,
                              broken: errs.filter(e => e !== null).concat(
                                imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0))
                                    .map(i => 'naturalWidth 0: ' + (i.alt || i.src.slice(0, 60))))}));
    """)
    assert broken["n"] >= 6 and not broken["broken"], broken

    tables = [t for t in browser.find_elements(By.TAG_NAME, "table") if "transfer ratio" in t.text]
    assert tables, "no summary table with a 'transfer ratio' column"
    summary = tables[0]
    assert summary.is_displayed() and summary.size["height"] > 0
    rows = [r.text for r in summary.find_elements(By.TAG_NAME, "tr")]
    # Rows are "<method> <domain> …": the tiny run has one method, named after its vision model.
    assert any(r.startswith("beta_vae source") for r in rows) and any(r.startswith("beta_vae target_floor_object") for r in rows), rows

    # the agent's video plays (an animated GIF, decoded above), the config is folded away
    gifs = browser.execute_script(
        "return Array.from(document.images).filter(i => i.src.startsWith('data:image/gif')).map(i => i.naturalWidth)")
    assert gifs and all(w > 0 for w in gifs), gifs
    details = browser.find_element(By.TAG_NAME, "details")
    assert details.get_attribute("open") is None and "name: tiny" not in details.text

    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
    assert not fetched, f"the report fetched {fetched}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    assert shot.stat().st_size > 10_000

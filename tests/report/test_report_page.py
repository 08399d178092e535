"""`show --format html`, one self-contained page, checked as markup and in a real Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import init_state

# Debian's chromium, as .ci/run installs it; these flags keep it from reaching any network of its own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
A4_POINTS = (595, 842)


@pytest.fixture
def report(finance, cli, tmp_path):  # noqa: F811
    """(the page's path, the JSON report of the same figures)."""
    _, state = finance
    page = tmp_path / "report.html"
    written = cli("show", "--state", state, "--format", "html", "--out", page)
    assert written.exit_code == 0, written.output
    assert f"Wrote the credits report (html) to {page}: 2 clients, 4 batches." in written.stderr
    as_json = json.loads(cli("show", "--state", state, "--format", "json").stdout)
    return page, as_json


class Page(HTMLParser):
    """What a page is made of: tags with their attributes, and the text of some of them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[tuple[str, str]] = []
        self.totals: dict[str, str] = {}
        self._open: list[tuple[str, dict, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self._open.append((tag, attributes, []))

    def handle_endtag(self, tag):
        while self._open:  # void elements (meta, br) never end: close them on the way
            name, attributes, text = self._open.pop()
            content = "".join(text)
            if self._open:
                self._open[-1][2].append(content)
            if name == tag:
                if name in ("h1", "h2", "h3"):
                    self.headings.append((name, content.strip()))
                if "data-total" in attributes:
                    self.totals[attributes["data-total"]] = content.strip()
                return

    def handle_data(self, data):
        if self._open:
            self._open[-1][2].append(data)

    def all(self, tag: str) -> list[dict]:
        return [attributes for name, attributes in self.tags if name == tag]


def credits(text: str) -> int:
    return int(text.replace(",", ""))


def test_page_is_self_contained_and_runs_nothing(report):
    page, _ = report
    text = page.read_text(encoding="utf-8")
    parsed = Page(text)

    assert text.startswith("<!doctype html>")
    policy = next(m["content"] for m in parsed.all("meta") if m.get("http-equiv") == "Content-Security-Policy")
    assert policy.startswith("default-src 'none'")  # nothing may be loaded, nothing may run
    assert parsed.all("script") == [] and "<script" not in text
    loaded = [a.get("src") or a.get("href") for _, a in parsed.tags if a.get("src") or a.get("href")]
    assert loaded == ["data:,"]  # the empty icon: the browser asks for no favicon
    assert "@import" not in text and "url(" not in text
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls  # XML namespaces


def test_page_is_accessible_markup(report):
    page, _ = report
    parsed = Page(page.read_text(encoding="utf-8"))

    assert parsed.all("html")[0]["lang"] == "en"
    assert [h for h in parsed.headings if h[0] == "h1"] == [("h1", "Credits report")]
    assert [title for level, title in parsed.headings if level == "h2"] == [
        "Totals",
        "Where each client’s credits went",
        "Credits expiring per month",
        "Batches",
    ]
    assert len(parsed.all("table")) == len(parsed.all("caption")) == 3
    assert all(th.get("scope") in ("col", "row") for th in parsed.all("th"))
    charts = parsed.all("svg")
    assert len(charts) == 2
    for chart in charts:  # announced as one picture, with a name and a description in words
        assert chart["role"] == "img"
        assert chart["aria-labelledby"].endswith("-title") and chart["aria-describedby"].endswith("-desc")
    named = {title["id"] for title in parsed.all("title") if "id" in title}
    assert named == {chart["aria-labelledby"] for chart in charts}
    described = {desc["id"] for desc in parsed.all("desc") if "id" in desc}
    assert described == {chart["aria-describedby"] for chart in charts}
    assert len(parsed.all("figcaption")) == 2
    text = page.read_text(encoding="utf-8")
    assert "⚠ expires soon" in text  # the marker is words, not a colour alone


def test_page_shows_the_same_figures_as_the_json(report):
    page, as_json = report
    parsed = Page(page.read_text(encoding="utf-8"))
    totals = as_json["totals"]
    assert {name: credits(value) for name, value in parsed.totals.items()} == {
        name: totals[name] for name in ("issued", "used", "remaining", "expired_unused")
    }
    assert "1 batch expires within 30 days, with 750 credits unused" in page.read_text(encoding="utf-8")


def test_page_names_the_time_of_its_figures(report):
    page, _ = report
    assert "Figures as recorded in state at 2026-01-02 03:04 UTC." in page.read_text(encoding="utf-8")


def test_page_of_an_empty_state_still_opens(cli, tmp_path):
    page = tmp_path / "empty.html"
    assert cli("show", "--state", init_state(tmp_path / "none.json"), "--format", "html", "--out", page).exit_code == 0
    parsed = Page(page.read_text(encoding="utf-8"))
    assert parsed.totals["issued"] == "0" and parsed.all("svg") == []


# ------------------------------------------------------------------ in a real browser


def unavailable(reason: str):
    """Skipped where no browser can be had; in CI (which installs one) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run installs Debian's chromium with apt-get and the test extra")
    pytest.skip(reason)


@pytest.fixture
def browser_page():
    """A page of a fresh headless Debian Chromium (its own empty profile), driven by Playwright."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        unavailable("no Chromium on this machine (install Debian's chromium package, as .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_report_in_chromium(report, browser_page, tmp_path):
    page_file, as_json = report
    page = browser_page
    console, errors, requests = [], [], []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))

    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")

    assert console == [] and errors == []  # a blocked load or a script would show here
    assert requests == [page_file.as_uri()]  # opens from disk, asks for nothing else
    shown = {
        name: credits(page.inner_text(f'[data-total="{name}"]'))
        for name in ("issued", "used", "remaining", "expired_unused")
    }
    assert shown == {name: as_json["totals"][name] for name in shown}
    assert page.locator("svg[role=img]").count() == 2
    box = page.locator("svg[role=img]").first.bounding_box()
    assert box["width"] > 300 and box["height"] > 100  # the chart is drawn, not collapsed

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    width, height = png_size(screenshot)
    assert width == 1100 and height > 900

    # Printed: A4 pages, nothing cut off at the right edge.
    pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert boxes and {(round(float(w)), round(float(h))) for w, h in boxes} == {A4_POINTS}
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 703, "height": 1000})  # 210 mm less 2 x 12 mm margins, in CSS pixels
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

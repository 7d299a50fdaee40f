"""The documentation site: the generated configuration reference holds every field of the training config, and the
built site (mkdocs --strict, as `make docs`) is searchable in a real browser: a search for "calibrate" reaches the
Recognition page (Debian's chromium driven by Playwright, as tests/test_space.py does)."""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import missing_system_tool

from wavlmrawnet.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def load_hook():
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "docs" / "hooks" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(model, prefix=""):
    """(dotted section name, pydantic model) for every section and sub-section of the config."""
    hook = load_hook()
    for name, field in model.model_fields.items():
        inner = hook._section_model(field.annotation)
        if inner is not None:
            yield f"{prefix}{name}", inner
            yield from sections(inner, f"{prefix}{name}.")


def test_configuration_reference_has_every_field_with_its_default():
    page = load_hook().render_config_reference()
    found = list(sections(TrainConfig))
    assert {name for name, _ in found} >= {"model", "data", "data.dataset", "data.augment", "training"}
    for name, model in found:
        heading = f"## `{name}`\n"
        assert heading in page, name
        body = page.split(heading, 1)[1].split("\n## ", 1)[0]
        for key, field in model.model_fields.items():
            row = next((line for line in body.splitlines() if line.startswith(f"| `{key}` |")), None)
            assert row is not None, f"{name}.{key} is missing from the reference"
            if field.description:
                assert field.description.replace("|", "\\|") in row
    assert "| `log_with` | list[str] | `['tensorboard']` |" in page
    assert "| `max_steps` | int (> 0) | `1000` |" in page


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if found := shutil.which(name):
            return found
    return None


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """The site built with --strict into a temporary folder, served on 127.0.0.1 (search fetches its index)."""
    site = tmp_path_factory.mktemp("site")
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)]
    built = subprocess.run(mkdocs, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    handler = functools.partial(QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join()


@pytest.mark.slow
def test_search_for_calibrate_reaches_the_recognition_page(site_url, tmp_path):
    chromium = find_chromium()
    if chromium is None:  # `make browser` installs Debian's chromium (`make test` runs it)
        missing_system_tool("no Chromium found (install Debian's chromium package: `make browser`)")
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "docs_search.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(site_url, wait_until="domcontentloaded")
            expect(page.locator("h1").first).to_contain_text("wavlmrawnet")
            search = page.locator("input.md-search__input")
            search.click()
            meta = page.locator(".md-search-result__meta")
            expect(meta).not_to_contain_text("Initializing", timeout=30_000)  # the search worker has its index
            search.press_sequentially("calibrate", delay=30)
            expect(meta).to_contain_text("matching", timeout=30_000)
            result = page.locator(".md-search-result__link[href*='/recognition/']").first
            expect(result).to_be_visible(timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=False)
            result.click()
            expect(page).to_have_url(re.compile(r"/recognition/(\?h=calibrate)?(#.*)?$"), timeout=30_000)
            expect(page.locator("h1").first).to_contain_text("Recognition")
            expect(page.get_by_text("wavlmrawnet calibrate").first).to_be_attached()
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")

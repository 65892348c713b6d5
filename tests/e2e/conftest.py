"""Browser fixtures: Debian's Chromium (installed with apt when missing) driving the real app."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.served import ServedApp
from tests.tiny_models import make_parrot_llama

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
VIEWPORT = {"width": 1280, "height": 800}


def apt_install(package: str) -> subprocess.CompletedProcess:
    command = ["apt-get", "install", "-y", "--no-install-recommends", package]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


def ensure_chromium() -> Path:
    """Debian's chromium, never a browser download: install it with apt when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail("the browser tests need Debian's chromium (/usr/bin/chromium) and apt-get")
    done = apt_install("chromium")
    if done.returncode != 0:  # a fresh machine may not have package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=900, check=False)
        done = apt_install("chromium")
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(f"could not install chromium with apt-get (are we root?):\n{done.stderr}")
    return CHROMIUM


@pytest.fixture(scope="module")  # Playwright's loop must not outlive the browser tests
def browser():
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def parrot_app(tmp_path_factory):
    """The real app in a subprocess on loopback, serving a model whose answer is an XSS payload."""
    root = tmp_path_factory.mktemp("e2e")
    with ServedApp(root / "data", str(make_parrot_llama(root / "parrot"))) as served:
        yield served


@pytest.fixture
def page(browser, parrot_app):
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    opened.goto(parrot_app.url + "/")
    opened.get_by_role("tab", name="Chat").wait_for()
    yield opened
    context.close()

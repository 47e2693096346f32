"""What the real-browser tests share: Debian's chromium through Playwright (never ``playwright install``),
every request that does not go to 127.0.0.1 blocked, a free local port, and skip-or-fail when a tool is
missing (fail under AMCT_NB_REQUIRE_UI=1, as in CI)."""

from __future__ import annotations

import contextlib
import os
import socket

import pytest

CHROMIUM = os.environ.get("AMCT_NB_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("AMCT_NB_REQUIRE_UI") == "1"


def need(ok: bool, what: str) -> None:
    if not ok:
        (pytest.fail if REQUIRED else pytest.skip)(f"browser test needs {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_browser(viewport: dict, cookies: list | None = None):
    """(browser context, list of blocked URLs): headless chromium that reaches 127.0.0.1 only."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        ctx = b.new_context(viewport=viewport)
        if cookies:
            ctx.add_cookies(cookies)
        blocked = []

        def route(r):
            host = r.request.url.split("/")[2] if "://" in r.request.url else ""
            if r.request.url.startswith(("data:", "blob:")) or host.split(":")[0] == "127.0.0.1":
                return r.continue_()
            blocked.append(r.request.url)
            return r.abort()

        ctx.route("**/*", route)
        try:
            yield ctx, blocked
        finally:
            b.close()

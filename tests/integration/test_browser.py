"""A real browser: Debian's headless Chromium, driven over WebDriver (Selenium), loads the
demo's WebSocket page from caboose over HTTPS and echoes messages over ``wss://``.

Chromium uses RFC 8441 when the page's HTTP/2 connection advertises
SETTINGS_ENABLE_CONNECT_PROTOCOL, so the socket rides the same HTTP/2 connection; with
``--no-http2`` ALPN gives HTTP/1.1 and the socket is an ``Upgrade: websocket``. Which one it
was is read on the server's side, from the scope the app was given.

Chromium is told to accept the test certificate and may resolve no name but loopback
(``--host-resolver-rules``), so it sends nothing off this machine.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from caboose.demo import app as demo
from tests.serving import running
from tests.tls import issue_certificate

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

scopes: list[dict[str, Any]] = []


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] in ("http", "websocket"):
        scopes.append(scope)
    await demo(scope, receive, send)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    # make test installs both (scripts/install-tools.sh): missing, they fail, not skip.
    assert CHROMIUM and CHROMEDRIVER, "chromium and chromedriver are needed (make tools)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",  # the test CA's certificate
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, script: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{script!r} stayed false; page says {driver.page_source[:500]}")


def chat(driver: webdriver.Chrome, port: int) -> list[str]:
    """Open the chat page, echo two messages, return what the socket received."""
    driver.get(f"https://127.0.0.1:{port}/chat")
    wait_for(driver, "return window.socketOpen === true")
    driver.execute_script(
        "document.getElementById('text').value = 'hello';"
        "document.getElementById('form').requestSubmit();"
        "document.getElementById('text').value = 'wörld';"
        "document.getElementById('form').requestSubmit();"
    )
    wait_for(driver, "return window.received.length >= 3")
    return list(driver.execute_script("return window.received"))


def test_the_socket_rides_the_pages_http2_connection(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    scopes.clear()
    certificate = issue_certificate(tmp_path)
    with running(app, http2=True, **certificate.server_options()) as server:
        received = chat(browser, server.port)
        assert received == ["connected over HTTP/2", "echo: hello", "echo: wörld"]
        page = next(s for s in scopes if s["type"] == "http" and s["path"] == "/chat")
        socket = next(s for s in scopes if s["type"] == "websocket")
        assert page["http_version"] == "2" and socket["http_version"] == "2"  # RFC 8441
        assert socket["scheme"] == "wss" and socket["path"] == "/ws"
        assert socket["client"] == page["client"]  # the same connection: one client port
        browser.get("about:blank")  # the page goes: the socket closes


def test_without_http2_the_socket_falls_back_to_http1(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    scopes.clear()
    certificate = issue_certificate(tmp_path)
    with running(app, http2=False, **certificate.server_options()) as server:
        received = chat(browser, server.port)
        assert received == ["connected over HTTP/1.1", "echo: hello", "echo: wörld"]
        socket = next(s for s in scopes if s["type"] == "websocket")
        assert socket["http_version"] == "1.1" and socket["scheme"] == "wss"
        browser.get("about:blank")

"""Headless Chromium driven over the DevTools protocol, for the HTML report's browser test.

No websocket client and no Playwright: with `--remote-debugging-pipe` Chromium reads protocol
commands on file descriptor 3 and writes answers and events on 4, each a JSON text ended by a
NUL byte. `os.posix_spawn` puts our pipe ends at those numbers (no `preexec_fn`, which is unsafe
once threads run). A page records console errors, uncaught exceptions and browser log errors
(failed loads, Content-Security-Policy refusals) so a test can assert there were none.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import time
from pathlib import Path
from typing import Any

EXECUTABLE = shutil.which("chromium") or shutil.which("chromium-browser")
# A name the tests' media server goes by: an https host, as a report's thumbnails come from
# (the report fetches none from a loopback or private address), that is loopback here.
MEDIA_HOST = "media.test"
# A closed, quiet browser: no background fetches, no first-run work, no GPU, root allowed; it
# finds MEDIA_HOST on loopback and takes the tests' self-signed certificate.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--remote-debugging-pipe",
    f"--host-resolver-rules=MAP {MEDIA_HOST} 127.0.0.1", "--ignore-certificate-errors",
)  # fmt: skip


class ProtocolError(RuntimeError):
    """Chromium answered a command with an error, or did not answer in time."""


class Browser:
    """One headless Chromium process; `open` gives a `Page`."""

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        if EXECUTABLE is None:
            raise FileNotFoundError("no chromium on PATH")
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""
        profile.mkdir(parents=True, exist_ok=True)
        commands_in, self._commands = os.pipe()
        self._answers, answers_out = os.pipe()
        # dup2 onto the same number would keep close-on-exec: move the child's ends above 9 first.
        child_in = fcntl.fcntl(commands_in, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(answers_out, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(commands_in)
        os.close(answers_out)
        log = os.open(profile / "chromium.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.pid = os.posix_spawn(
                EXECUTABLE,
                [EXECUTABLE, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log, 1),
                    (os.POSIX_SPAWN_DUP2, log, 2),
                    (os.POSIX_SPAWN_DUP2, child_in, 3),
                    (os.POSIX_SPAWN_DUP2, child_out, 4),
                ],
            )
        finally:
            for fd in (child_in, child_out, log):
                os.close(fd)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        """Sends one command and returns its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._receive()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise ProtocolError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        """The first event of this kind on this session, received already or next."""
        while True:
            for event in self.events:
                if event["method"] == method and event.get("sessionId") == session:
                    self.events.remove(event)
                    return event
            self._receive()

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise ProtocolError(f"no answer from chromium in {self.timeout:g} s")
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                raise ProtocolError("chromium closed the protocol pipe")
            self._buffer += chunk
        text, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(text)
        if "id" not in message:
            self.events.append(message)
        return message

    def open(self, url: str, width: int = 1200, height: int = 900) -> Page:
        """A new tab at this size, loaded (the load event has fired)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        for domain in ("Runtime", "Log", "Page"):
            page.send(f"{domain}.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired", page.session)
        return page

    def close(self) -> None:
        with contextlib.suppress(ProtocolError, OSError):
            self.send("Browser.close")
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        os.close(self._commands)
        os.close(self._answers)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Page:
    """One tab: evaluate script, read its errors, take a screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The expression's value (JSON-able), awaited when it is a promise."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen on this page so far."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console.{params['type']}: {params['args']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        return found

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

"""Headless Chromium driven over the DevTools protocol: set the Airflow token cookie, open a page,
save a screenshot. Debian's chromium; the test skips where it is not installed."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

from rec_models.stack.devstack import free_port

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, width: int = 1280, height: int = 900):
        port = free_port()
        self.profile = tempfile.mkdtemp(prefix="recs-chromium-")
        self.proc = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    targets = [t for t in json.load(r) if t["type"] == "page"]
                if targets:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.3)
        self.ws = connect(targets[0]["webSocketDebuggerUrl"], max_size=64 * 2**20)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def set_cookie(self, name: str, value: str, url: str) -> None:
        self.call("Network.enable")
        self.call("Network.setCookie", name=name, value=value, url=url)

    def screenshot(self, url: str, path: Path, settle_s: float = 1.0) -> str:
        """Open url, wait for load, save a PNG; returns the page's text."""
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while self.call("Runtime.evaluate", expression="document.readyState")["result"]["value"] != "complete":
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(settle_s)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return self.call("Runtime.evaluate", expression="document.body.innerText")["result"].get("value", "")

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)

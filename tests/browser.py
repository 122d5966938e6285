"""
What the browser tests run: real headless Chromium driven by selenium (Debian's ``chromium``
and ``chromium-driver``), a real ``twistd -n hbchat`` process, and a loopback TCP proxy
whose connections a test can cut.  Everything here blocks (selenium does): the tests are
synchronous, and nothing of theirs runs in a reactor the server needs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.trial import unittest

from tests.test_twistd import TWISTD, freePort

#: How long any single wait in a browser test may take (generous: the machine is shared).
DEADLINE = 60.0

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,700",
)

T = TypeVar("T")


def missing_tools() -> str | None:
    """What the browser tests lack here (None: nothing)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    if TWISTD is None:
        return "no twistd executable"
    return None


def poll(condition: Callable[[], T], what: str, deadline: float = DEADLINE, interval: float = 0.1) -> T:
    """Call ``condition`` until it returns something true, at most ``deadline`` seconds; that value."""
    pause = threading.Event()
    waited = 0.0
    while True:
        value = condition()
        if value:
            return value
        if waited >= deadline:
            raise unittest.FailTest(f"{what}: not within {deadline}s")
        pause.wait(interval)
        waited += interval


class Server:
    """A ``twistd -n hbchat`` with one --listen and one --web on loopback; stopped with SIGTERM."""

    def __init__(self, directory: str, *arguments: str) -> None:
        self.directory = directory
        self.arguments = arguments
        self.tcpPort = freePort()
        self.webPort = freePort()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = os.path.join(directory, "twistd.out")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webPort}/"

    def start(self) -> None:
        assert TWISTD is not None
        argv = [
            TWISTD,
            "-n",
            "--pidfile=",
            "hbchat",
            "--listen",
            f"tcp:{self.tcpPort}:interface=127.0.0.1",
            "--web",
            f"tcp:{self.webPort}:interface=127.0.0.1",
            *self.arguments,
        ]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(argv, cwd=self.directory, stdout=out, stderr=subprocess.STDOUT)
        poll(self._listening, f"twistd listening on {self.webPort}\n{self.output()}")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise unittest.FailTest(f"twistd exited\n{self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.webPort), timeout=DEADLINE):
                return True
        except ConnectionRefusedError:
            return False

    def stop(self) -> None:
        """SIGTERM (the graceful stop: BYE shutdown to everyone), and wait for the exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=DEADLINE)
            raise unittest.FailTest(f"twistd did not stop on SIGTERM\n{self.output()}") from None

    def output(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-6000:]
        except OSError:
            return ""


class Proxy:
    """A loopback TCP proxy to ``port`` whose connections :meth:`cut` resets at once."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.holding = False
        self.closed = False
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.holding or self.closed:
                self._reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=DEADLINE)
            except OSError:
                self._reset(client)
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Reset every connection through the proxy, and every new one until :meth:`restore`."""
        self.holding = True
        with self.lock:
            sockets, self.sockets = self.sockets, set()
        for sock in sockets:
            self._reset(sock)

    def restore(self) -> None:
        self.holding = False

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()


class Page:
    """One browser (its own Chromium) showing the chat page."""

    def __init__(self, testCase: unittest.TestCase, name: str) -> None:
        from selenium import webdriver

        self.name = name
        profile = tempfile.mkdtemp(prefix="hbchat-chromium-")
        testCase.addCleanup(shutil.rmtree, profile, True)
        options = webdriver.ChromeOptions()
        assert CHROMIUM is not None and CHROMEDRIVER is not None
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
        self.driver = webdriver.Chrome(service=service, options=options)
        testCase.addCleanup(self.driver.quit)
        self.driver.set_script_timeout(DEADLINE)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *arguments: Any) -> Any:
        return self.driver.execute_script(script, *arguments)

    def status(self) -> str:
        return str(self.js("return document.getElementById('status').textContent"))

    def waitFor(self, check: Callable[[], T], what: str) -> T:
        try:
            return poll(check, f"{self.name}: {what}")
        except unittest.FailTest as failure:
            raise unittest.FailTest(f"{failure} (status: {self.safeStatus()})\n{self.transcript()}") from None

    def transcript(self) -> str:
        """The page's log as text, for a failure's message."""
        try:
            lines = self.js(
                "return [...document.querySelectorAll('#log li')].map(li => li.className + ': ' + li.textContent)"
            )
        except Exception as error:
            return f"(no transcript: {error})"
        return "\n".join(f"  {line}" for line in lines[-40:])

    def safeStatus(self) -> str:
        try:
            return self.status()
        except Exception as error:  # the page may be loading
            return f"unknown ({error})"

    def login(self, nick: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.waitFor(lambda: self.js("return !document.getElementById('login').hidden"), "the login form")
        field = self.driver.find_element(By.ID, "nick")
        field.clear()
        field.send_keys(nick + Keys.ENTER)
        self.waitFor(lambda: self.status().startswith("connected"), "connected")

    def fill(self, field: str, text: str, submit: bool = False) -> None:
        """Type ``text`` into the field with this id (replacing what it holds); Enter if ``submit``."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        element = self.driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(text + (Keys.ENTER if submit else ""))

    def say(self, text: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.driver.find_element(By.ID, "line").send_keys(text + Keys.ENTER)

    def messages(self) -> list[tuple[int, str, str]]:
        """The MSGs shown: (seq, nick, text), in the order shown."""
        rows = self.js(
            "return [...document.querySelectorAll('#log li.msg')].map("
            "li => [Number(li.dataset.seq), li.dataset.nick, li.querySelector('.text').textContent])"
        )
        return [(int(seq), str(nick), str(text)) for seq, nick, text in rows]

    def texts(self) -> list[str]:
        return [text for _, _, text in self.messages()]

    def askedForPassword(self) -> bool:
        return bool(self.js("return !document.getElementById('password-row').hidden"))

    def connected(self) -> bool:
        return self.status().startswith("connected")

    def waitForText(self, text: str) -> None:
        self.waitFor(lambda: text in self.texts(), f"the message {text!r}")

    def users(self) -> list[str]:
        return [
            str(nick)
            for nick in self.js("return [...document.querySelectorAll('#userlist li')].map(li => li.textContent)")
        ]

    def idle(self) -> bool:
        """Everything typed has been sent and echoed (the session's outbox and unechoed lines are empty)."""
        return bool(self.js("return window.hbchat !== undefined && window.hbchat.session.idle"))

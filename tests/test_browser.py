"""
The chat page end to end, in real headless Chromium (selenium) against a real ``twistd -n
hbchat``: two pages chat; a page whose connection is cut resumes with every missed message
shown once; a reload resumes; a graceful restart is survived by the pages on their own (and,
with ``--state``, resumed with no history gap); a line typed while the server is down
arrives once.  Never skipped under ``CI=true``.
"""

from __future__ import annotations

import functools
import os
import signal
from collections import Counter
from typing import Any

from twisted.trial import unittest

from tests.browser import Page, Proxy, Server, missing_tools, poll

MISSING = missing_tools()


class BrowserTestCase(unittest.TestCase):
    #: More options for the server (--drain 0 and --retry-hint 2 come first).
    serverArguments: tuple[str, ...] = ()

    def setUp(self) -> None:
        if MISSING is not None:
            if os.environ.get("CI") == "true":
                raise unittest.FailTest(f"CI=true and the browser tests cannot run: {MISSING}")
            raise unittest.SkipTest(MISSING)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        # --drain 0: everyone is told BYE at once; --retry-hint 2: pages come back within 2 s.
        self.directory = directory
        self.server = Server(directory, "--drain", "0", "--retry-hint", "2", *self.serverArguments)
        self.server.start()
        self.addCleanup(self.server.stop)

    def page(self, name: str, url: str | None = None) -> Page:
        page = Page(self, name)
        page.open(url or self.server.url)
        return page

    def assertOnce(self, page: Page, texts: list[str]) -> None:
        counts = Counter(page.texts())
        self.assertEqual({text: counts[text] for text in texts}, dict.fromkeys(texts, 1), page.messages())


class PageTests(BrowserTestCase):
    def test_two_pages_chat(self) -> None:
        alice, bob = self.page("alice"), self.page("bob")
        alice.login("alice")
        bob.login("bob")
        alice.say("hello bob")
        bob.waitForText("hello bob")
        bob.say("hi alice")
        alice.waitForText("hi alice")
        self.assertEqual(alice.messages(), bob.messages())
        alice.waitFor(lambda: alice.users() == ["alice", "bob"], "both in the user list")
        self.assertIn("round trip", alice.waitFor(lambda: "round trip" in alice.status() and alice.status(), "an RTT"))

    def test_cut_page_resumes_with_every_missed_message_once(self) -> None:
        proxy = Proxy(self.server.webPort)
        self.addCleanup(proxy.close)
        alice, bob = self.page("alice", proxy.url), self.page("bob")
        alice.login("alice")
        bob.login("bob")
        bob.say("before the cut")
        alice.waitForText("before the cut")
        proxy.cut()
        alice.waitFor(lambda: "reconnecting in" in alice.status(), "reconnecting after the cut")
        missed = [f"missed {index}" for index in range(5)]
        for text in missed:
            bob.say(text)
        bob.waitFor(lambda: all(text in bob.texts() for text in missed), "bob's own echoes")
        proxy.restore()
        alice.waitFor(lambda: "resumed: 5 missed messages" in alice.status(), "resumed with 5 missed")
        self.assertOnce(alice, ["before the cut", *missed])
        bob.say("after the resume")
        alice.waitForText("after the resume")
        self.assertOnce(alice, ["before the cut", *missed, "after the resume"])

    def test_reload_resumes(self) -> None:
        alice, bob = self.page("alice"), self.page("bob")
        alice.login("alice")
        bob.login("bob")
        bob.say("seen before leaving")
        alice.waitForText("seen before leaving")
        alice.open("about:blank")
        bob.say("said while away")
        bob.waitForText("said while away")
        alice.open(self.server.url)
        alice.waitFor(lambda: "resumed: 1 missed message" in alice.status(), "resumed with the missed one")
        self.assertEqual(alice.texts(), ["said while away"])
        alice.driver.refresh()
        alice.waitFor(lambda: "resumed: 0 missed messages" in alice.status(), "resumed after a reload")
        self.assertTrue(alice.js("return document.getElementById('login').hidden"), "asked to log in again")
        bob.say("after the reload")
        alice.waitForText("after the reload")
        self.assertOnce(alice, ["after the reload"])


class SharedRulesTests(BrowserTestCase):
    """The page's session and backoff modules, run in the page itself (docs/protocol.md, section 14)."""

    def run_module(self, script: str) -> Any:
        page = self.page("rules")
        page.waitFor(lambda: page.js("return window.hbchat !== undefined"), "the page's modules loaded")
        return page.driver.execute_async_script("const done = arguments[arguments.length - 1];\n" + script)

    def test_session_resends_only_what_never_came_back(self) -> None:
        results = self.run_module(
            """
            import("/session.js").then(({ Session }) => {
              const store = new Map();
              const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
              const session = new Session(storage);
              session.registered("alice", "token", 10);
              for (const line of ["SAY a", "SAY b", "SAY c"]) session.sending(line);
              session.queue("SAY typed while away");
              const echoedB = session.echoed("alice", "b");
              const unechoed = [...session.unechoed];
              const fresh = [session.isNew(11), session.isNew(11), session.isNew(5)];
              const resend = session.toResend();
              const reloaded = new Session(storage);
              done({ echoedB, unechoed, fresh, resend, reloaded: [reloaded.nick, reloaded.token, reloaded.lastSeq] });
            });
            """
        )
        self.assertEqual(
            results,
            {
                "echoedB": True,
                "unechoed": ["c"],
                "fresh": [True, False, False],
                "resend": ["SAY c", "SAY typed while away"],
                "reloaded": ["alice", "token", 11],
            },
        )

    def test_backoff_is_full_jitter_capped_at_30_and_hints_are_honoured(self) -> None:
        results = self.run_module(
            """
            import("/backoff.js").then(({ fullJitter, hinted }) => {
              const top = [0, 1, 2, 3, 4, 5, 6, 10].map((attempt) => fullJitter(attempt, () => 1));
              const bottom = fullJitter(7, () => 0);
              done({ top, bottom, retry: hinted(2, null, () => 0.5), at: hinted(2, 0.75) });
            });
            """
        )
        self.assertEqual(results, {"top": [1, 2, 4, 8, 16, 30, 30, 30], "bottom": 0, "retry": 1, "at": 0.75})


class RestartTests(BrowserTestCase):
    def test_pages_reconnect_by_themselves_after_a_graceful_restart(self) -> None:
        alice, bob = self.page("alice"), self.page("bob")
        alice.login("alice")
        bob.login("bob")
        self.server.stop()
        alice.waitFor(lambda: "reconnecting in" in alice.status(), "reconnecting while the server is down")
        self.server.start()
        for page in (alice, bob):
            page.waitFor(page.connected, "connected again")
        # Sessions live in the server's memory: after a restart they are gone, and the page says so.
        self.assertIn("history gap", alice.status())
        alice.say("after the restart")
        bob.waitForText("after the restart")

    def test_line_typed_while_the_server_is_down_arrives_once(self) -> None:
        # Alice comes through a proxy that holds her back after the restart until bob is in
        # again: the chat starts afresh (no --state), so bob sees what is said after he joins.
        proxy = Proxy(self.server.webPort)
        self.addCleanup(proxy.close)
        alice, bob = self.page("alice", proxy.url), self.page("bob")
        alice.login("alice")
        bob.login("bob")
        self.server.stop()
        proxy.cut()
        alice.waitFor(lambda: "reconnecting in" in alice.status(), "reconnecting while the server is down")
        alice.say("typed while down")
        self.assertFalse(alice.idle())
        self.server.start()
        bob.waitFor(bob.connected, "connected again")
        proxy.restore()
        bob.waitForText("typed while down")
        poll(alice.idle, "alice's outbox sent and echoed")
        alice.waitForText("typed while down")
        bob.say("a line after it")
        alice.waitForText("a line after it")
        self.assertOnce(bob, ["typed while down", "a line after it"])
        self.assertOnce(alice, ["typed while down", "a line after it"])


class AuthPageTests(BrowserTestCase):
    serverArguments: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.passwords = os.path.abspath(self.mktemp())
        with open(self.passwords, "w") as handle:
            handle.write("alice:wonderland\nbob:builder\n")
        self.serverArguments = ("--auth", f"file:{self.passwords}")
        super().setUp()

    def test_password_asked_then_tell_and_who(self) -> None:
        alice, bob = self.page("alice"), self.page("bob")
        for page, nick, password in ((alice, "alice", "wrong"), (bob, "bob", "builder")):
            page.waitFor(page.askedForPassword, "the password asked for")
            page.fill("password", password)
            page.fill("nick", nick, submit=True)
        alice.waitFor(lambda: "invalid nick or password" in alice.js("return document.body.textContent"), "ERR 401")
        alice.fill("password", "wonderland", submit=True)
        alice.waitFor(alice.connected, "connected with the right password")
        bob.waitFor(bob.connected, "connected")
        alice.say("/tell bob only for you")
        bob.waitFor(
            lambda: "only for you" in bob.js("return document.querySelector('#log .priv')?.textContent || ''"), "PRIV"
        )
        bob.say("/who")
        bob.waitFor(lambda: bob.users() == ["alice", "bob"], "WHO's answer in the user list")
        alice.say("/quit")
        bob.waitFor(lambda: "alice left (quit)" in bob.js("return document.body.textContent"), "alice's LEFT")
        alice.waitFor(lambda: alice.status() == "disconnected", "alice's page says so")


class SilentServerTests(BrowserTestCase):
    serverArguments = ("--ping", "1", "--timeout", "3")

    def test_a_silent_server_is_noticed_and_the_page_resumes_when_it_wakes(self) -> None:
        alice = self.page("alice")
        alice.login("alice")
        process = self.server.process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        try:
            alice.waitFor(lambda: "server silent for" in alice.status(), "silence shown")
            alice.waitFor(lambda: "reconnecting in" in alice.status(), "given up on the silent server")
        finally:
            process.send_signal(signal.SIGCONT)
        alice.waitFor(lambda: "resumed: 0 missed messages" in alice.status(), "resumed once the server woke")


class SlowLoginTests(BrowserTestCase):
    serverArguments = ("--register-timeout", "1")

    def test_a_person_slower_than_register_timeout_still_joins(self) -> None:
        alice = self.page("alice")
        alice.waitFor(lambda: alice.js("return window.hbchat.link.state === 'idle'"), "the server's ERR 408, quietly")
        self.assertNotIn("reconnecting", alice.status())
        alice.login("alice")


def resumed(page: Page) -> bool:
    return page.connected() and "resumed: " in page.status()


class StateRestartTests(BrowserTestCase):
    # #8's --state: the chat outlives a graceful restart, so the pages resume.
    serverArguments = ("--state", "chat.state")

    def gaps(self, page: Page) -> list[str]:
        return [
            str(text)
            for text in page.js("return [...document.querySelectorAll('#log li.gap')].map(li => li.textContent)")
        ]

    def test_pages_resume_after_a_graceful_restart_with_state(self) -> None:
        alice, bob = self.page("alice"), self.page("bob")
        alice.login("alice")
        bob.login("bob")
        bob.say("before the restart")
        alice.waitForText("before the restart")
        self.server.stop()
        alice.waitFor(lambda: "reconnecting in" in alice.status(), "reconnecting while the server is down")
        alice.say("said meanwhile")
        self.assertFalse(alice.idle())
        self.server.start()
        for page in (alice, bob):
            page.waitFor(functools.partial(resumed, page), "resumed")
        bob.waitForText("said meanwhile")
        poll(alice.idle, "alice's line sent and echoed")
        bob.say("after the restart")
        alice.waitForText("after the restart")
        for page in (alice, bob):
            self.assertNotIn("history gap", page.status())
            self.assertEqual(self.gaps(page), [], page.transcript())
            self.assertOnce(page, ["before the restart", "said meanwhile", "after the restart"])

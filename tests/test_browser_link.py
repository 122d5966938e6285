"""
The page's ChatLink (hbchat/web/static/link.js) in real headless Chromium, driven line by
line: the modules are loaded from a real ``twistd -n hbchat --web`` into its own page, a
ChatLink is given a scripted socket (what it sends is recorded, what the server would say
is handed to it), so that answers the in-memory server never gives (``ERR 503 cluster
unavailable``) can be tested.  Timers are the browser's own: waits are polled with deadlines.
"""

from __future__ import annotations

from typing import Any

from tests.browser import Page
from tests.test_browser import BrowserTestCase

#: Loads the modules and builds ``window.t``: a ChatLink on a scripted socket and an in-memory storage.
HARNESS = """
const done = arguments[arguments.length - 1];
Promise.all([import("/link.js"), import("/session.js")]).then(([linkModule, sessionModule]) => {
  const items = new Map();
  const storage = {
    written: 0,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => {
      storage.written += String(value).length;
      items.set(key, String(value));
    },
    removeItem: (key) => items.delete(key),
  };
  const calls = [];
  const observer = new Proxy({}, { get: (target, name) => (...args) => { calls.push([String(name), ...args]); } });
  const sent = [];
  const socket = { readyState: WebSocket.OPEN, send: (line) => sent.push(line), close: () => {} };
  const session = new sessionModule.Session(storage);
  session.nick = arguments[0];
  session.token = arguments[1];
  session.lastSeq = arguments[2];
  const link = new linkModule.ChatLink("ws://127.0.0.1:9/ws", session, observer);
  link.ws = socket;
  link.state = "connecting";
  window.t = { link, session, sent, calls, socket, storage, items };
  done(true);
}, (error) => done(String(error)));
"""

HELLO = "HELLO hbchat/1 ping=30 timeout=90 rate=0 burst=0"


class ScriptedLink:
    """One ChatLink in a page, on a socket the test speaks for."""

    def __init__(self, page: Page, nick: str, token: str | None = None, last_seq: int = 0) -> None:
        self.page = page
        result = page.driver.execute_async_script(HARNESS, nick, token, last_seq)
        if result is not True:
            raise AssertionError(f"the harness did not load: {result}")

    def hear(self, line: str) -> None:
        self.page.js("window.t.link.received(arguments[0])", line)

    def sent(self) -> list[str]:
        return [str(line) for line in self.page.js("return window.t.sent.filter(l => !l.startsWith('PING'))")]

    def value(self, expression: str) -> Any:
        return self.page.js("return " + expression)

    def notices(self) -> list[str]:
        return [str(c[1]) for c in self.page.js("return window.t.calls.filter(c => c[0] === 'notice')")]

    def waitForSent(self, line: str, times: int) -> None:
        self.page.waitFor(lambda: self.sent().count(line) >= times, f"{line!r} sent {times} times: {self.sent()}")


class ClusterUnavailableTests(BrowserTestCase):
    def scripted(self, token: str | None = None, last_seq: int = 0) -> ScriptedLink:
        page = Page(self, "alice")
        page.open(self.server.url)
        return ScriptedLink(page, "alice", token, last_seq)

    def test_refused_says_are_sent_again_in_order_one_at_a_time(self) -> None:
        link = self.scripted()
        link.hear(HELLO)
        link.hear("WELCOME alice tok1 0")
        link.value("window.t.link.submit('SAY one') && window.t.link.submit('SAY two')")
        self.assertEqual(link.sent(), ["NICK alice", "WHO", "SAY one", "SAY two"])
        link.hear("ERR 503 cluster unavailable: SAY not handled")
        link.hear("ERR 503 cluster unavailable: SAY not handled")
        self.assertEqual(link.value("window.t.session.outbox"), ["SAY one", "SAY two"])
        self.assertEqual(link.value("window.t.session.unechoed"), [])
        link.waitForSent("SAY one", 2)
        # One SAY in flight while the cluster is unavailable: "two" waits for "one"'s echo.
        self.assertEqual(link.sent().count("SAY two"), 1)
        link.hear("MSG 1 alice one")
        link.waitForSent("SAY two", 2)
        link.hear("MSG 2 alice two")
        self.assertTrue(link.value("window.t.session.idle"))
        told = [text for text in link.notices() if "503" in text]
        self.assertEqual(len(told), 1, link.notices())
        self.assertIn("cluster unavailable: SAY not handled: kept, sent again in", told[0])

    def test_refused_resume_is_sent_again(self) -> None:
        link = self.scripted(token="tok1", last_seq=7)
        link.hear(HELLO)
        self.assertEqual(link.sent(), ["RESUME tok1 7"])
        link.hear("ERR 503 cluster unavailable: RESUME not handled")
        link.waitForSent("RESUME tok1 7", 2)
        link.hear("WELCOME alice tok1 7")
        link.hear("RESUMED 0 complete")
        self.assertEqual(link.value("window.t.link.state"), "ready")

    def test_refused_nick_is_sent_again(self) -> None:
        link = self.scripted()
        link.hear(HELLO)
        link.hear("ERR 503 cluster unavailable: NICK not handled")
        link.waitForSent("NICK alice", 2)
        link.hear("WELCOME alice tok1 0")
        self.assertEqual(link.value("window.t.link.state"), "ready")

    def test_resume_refused_for_the_rate_is_sent_again(self) -> None:
        link = self.scripted(token="tok1", last_seq=3)
        link.hear(HELLO)
        link.hear("ERR 429 too many requests: RESUME not handled")
        link.waitForSent("RESUME tok1 3", 2)


class OutboxTests(BrowserTestCase):
    def ready(self) -> ScriptedLink:
        page = Page(self, "alice")
        page.open(self.server.url)
        link = ScriptedLink(page, "alice")
        link.hear(HELLO)
        link.hear("WELCOME alice tok1 0")
        return link

    def test_a_line_stays_in_the_outbox_while_the_socket_is_closing(self) -> None:
        link = self.ready()
        link.value("window.t.socket.readyState = WebSocket.CLOSING")
        link.value("window.t.link.submit('TELL bob are you there')")
        self.assertEqual(link.value("window.t.session.outbox"), ["TELL bob are you there"])
        self.assertNotIn("TELL bob are you there", link.sent())

    def test_one_tell_in_flight_until_its_ping_told_comes_back(self) -> None:
        link = self.ready()
        link.value("window.t.link.submit('TELL bob one') && window.t.link.submit('TELL bob two')")
        self.assertEqual(link.value("window.t.sent.slice(-2)"), ["TELL bob one", "PING told"])
        self.assertNotIn("TELL bob two", link.sent())
        link.hear("PONG told")
        self.assertEqual(link.value("window.t.sent.slice(-2)"), ["TELL bob two", "PING told"])
        link.hear("PONG told")
        self.assertTrue(link.value("window.t.session.idle"))

    def test_a_tell_refused_for_an_unavailable_cluster_is_sent_again(self) -> None:
        link = self.ready()
        link.value("window.t.link.submit('TELL bob one')")
        link.hear("ERR 503 cluster unavailable: TELL not handled")
        link.hear("PONG told")
        link.waitForSent("TELL bob one", 2)
        link.hear("PONG told")
        self.assertTrue(link.value("window.t.session.idle"))

    def test_a_tell_to_no_such_nick_is_not_sent_again(self) -> None:
        link = self.ready()
        link.value("window.t.link.submit('TELL nobody one') && window.t.link.submit('SAY after')")
        link.hear("ERR 406 no such nick")
        self.assertIn("SAY after", link.sent())
        self.assertEqual(link.sent().count("TELL nobody one"), 1)


class RateLimitTests(BrowserTestCase):
    def test_the_only_say_refused_for_the_rate_is_sent_again(self) -> None:
        page = Page(self, "alice")
        page.open(self.server.url)
        link = ScriptedLink(page, "alice")
        link.hear("HELLO hbchat/1 ping=30 timeout=90 rate=10 burst=20")
        link.hear("WELCOME alice tok1 0")
        link.value("window.t.link.submit('SAY only')")
        link.hear("ERR 429 too many requests: SAY not handled")
        link.waitForSent("SAY only", 2)
        link.hear("MSG 1 alice only")
        self.assertTrue(link.value("window.t.session.idle"))


class StorageTests(BrowserTestCase):
    def test_an_event_writes_only_the_small_parts_of_the_session(self) -> None:
        page = Page(self, "alice")
        page.open(self.server.url)
        link = ScriptedLink(page, "alice")
        link.value("[...Array(100).keys()].forEach(i => window.t.link.submit('SAY ' + 'x'.repeat(4000) + i))")
        self.assertEqual(link.value("window.t.session.outbox.length"), 100)
        link.value("window.t.storage.written = 0")
        for seq in range(1, 51):
            link.hear(f"JOIN {seq} bob{seq}")
        self.assertEqual(link.value("window.t.session.lastSeq"), 50)
        # The outbox is 400 KB: written with each event, 20 MB; now a few bytes each.
        self.assertLess(link.value("window.t.storage.written"), 50 * 20)
        self.assertEqual(link.value("JSON.parse(window.t.items.get('hbchat.lastSeq'))"), 50)

    def test_a_session_that_cannot_be_saved_is_said_in_the_status_line(self) -> None:
        alice = Page(self, "alice")
        alice.open(self.server.url)
        alice.login("alice")
        self.server.stop()
        alice.waitFor(lambda: "reconnecting in" in alice.status(), "reconnecting while the server is down")
        alice.js(FILL_STORAGE)
        self.assertNotIn("not saved", alice.status())
        alice.say("typed while the storage is full")
        alice.waitFor(lambda: "not saved for a reload: storage full" in alice.status(), "the status saying so")


#: Fills the page's sessionStorage to its quota.
FILL_STORAGE = """
let size = 1 << 22;
let index = 0;
while (size >= 1) {
  try {
    sessionStorage.setItem("fill" + index, "x".repeat(size));
    index += 1;
  } catch (error) {
    size = Math.floor(size / 2);
  }
}
return index;
"""

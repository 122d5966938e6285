// One chat session across WebSocket connections: connect, greet, register or resume,
// the heartbeat both ways, reconnect with backoff, and the outbox sent at the server's
// pace. The same life as hbchat-client's (docs/architecture.md), states named alike:
//   idle -> connecting -> greeted -> registering | resuming -> ready
//   any --lost--> backing_off --> connecting;  ready --quit--> quitting -> gave_up
// The user interface is told everything through `observer` (app.js).

import { fullJitter, hinted } from "./backoff.js";
import { refusedVerb, retryWait } from "./unavailable.js";
import { byeHints, parseHello, words } from "./wire.js";

export const SUBPROTOCOL = "hbchat.v1";
const HELLO_TIMEOUT = 10; // seconds to wait for HELLO before the server is taken for dead
const QUIT_WAIT = 5;
// The PING sent right after a TELL: its PONG says the TELL was handled (the server answers a
// connection's lines in order), as hbchat-client's (hbchat/client/outbox.py); no faster
// than BARRIER_RATE a second, BARRIER_BURST at once (the server's PING budget is one a second).
export const TELL_BARRIER = "PING told";
const BARRIER_RATE = 0.8;
const BARRIER_BURST = 5;

export class ChatLink {
  constructor(url, session, observer, clock = { now: () => performance.now() / 1000 }) {
    this.url = url;
    this.session = session;
    this.observer = observer;
    this.clock = clock;
    this.state = "idle";
    this.ws = null;
    this.hello = null;
    this.password = null;
    this.attempt = 0; // reconnect attempts since the last WELCOME
    this.hint = null; // a BYE's retry=/at=, for the next delay only
    this.lastHeard = 0;
    this.rtt = null;
    this.pingToken = null;
    this.pingSentAt = 0;
    this.pings = 0;
    this.timers = {};
    this.missed = 0; // new MSGs seen during a replay
    this.retryAt = null;
    this.stopped = false;
    // Pacing (hbchat/client/outbox.py): 80 % of the advertised rate, a smaller burst.
    this.paceFullAt = 0;
    this.oneAtATime = false;
    // ERR 503 cluster unavailable (unavailable.js): refusals in a row (0 once a line got
    // through), until when the outbox holds, refused lines put back since one was sent.
    this.unavailable = 0;
    this.heldUntil = -Infinity;
    this.requeued = 0;
    this.barriersFullAt = 0;
  }

  // --- the user's side ---

  start() {
    this.connect();
  }

  login(nick, password) {
    this.session.nick = nick;
    this.password = password || null;
    this.session.save();
    if (this.state === "greeted" || this.state === "registering") {
      this.register();
    } else if (this.state === "idle" || this.state === "gave_up") {
      this.stopped = false;
      this.connect();
    }
  }

  submit(line) {
    this.session.queue(line);
    this.flush();
    return this.state === "ready";
  }

  who() {
    if (this.state !== "ready") return false;
    this.send("WHO");
    return true;
  }

  quit(text) {
    this.stopped = true;
    this.clearTimer("retry");
    if (this.state === "ready") {
      this.setState("quitting");
      this.send(text ? "QUIT " + text : "QUIT");
      this.timer("quit", QUIT_WAIT, () => this.closeSocket());
    } else {
      this.closeSocket();
      this.setState("gave_up");
    }
    this.session.quit();
  }

  // --- connections ---

  connect() {
    this.clearTimer("retry");
    this.retryAt = null;
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (error) {
      this.lost(`cannot connect: ${error.message}`);
      return;
    }
    this.ws = ws;
    this.hello = null;
    this.lastHeard = this.clock.now();
    this.timer("hello", HELLO_TIMEOUT, () => this.abandon(`no HELLO within ${HELLO_TIMEOUT} s`));
    ws.onmessage = (event) => {
      if (ws === this.ws) this.received(String(event.data));
    };
    ws.onclose = (event) => {
      if (ws === this.ws) this.lost(closeWords(event.code, event.reason));
    };
    ws.onerror = () => {};
  }

  send(line) {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(line);
      return true;
    }
    return false;
  }

  closeSocket() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch (error) {
        // already closing
      }
    }
    this.stopHeartbeat();
  }

  // A connection given up by us (silent server): as if it were lost, without waiting for the close handshake.
  abandon(why) {
    this.closeSocket();
    this.lost(why);
  }

  lost(why) {
    this.closeSocket();
    this.clearTimer("hello");
    this.clearTimer("quit");
    this.clearTimer("pace");
    this.clearTimer("login");
    this.clearTimer("barrier");
    this.oneAtATime = false;
    this.heldUntil = -Infinity; // the next connection (perhaps another node) starts unheld
    this.requeued = 0;
    if (this.stopped || this.state === "quitting" || this.state === "gave_up") {
      this.setState("gave_up");
      this.observer.gaveUp(why);
      return;
    }
    let delay;
    if (this.hint) {
      delay = hinted(this.hint.retry, this.hint.at);
      this.hint = null;
    } else {
      delay = fullJitter(this.attempt);
    }
    this.attempt += 1;
    this.setState("backing_off");
    this.retryAt = this.clock.now() + delay;
    this.observer.disconnected(why, delay, this.attempt);
    this.timer("retry", delay, () => this.connect());
  }

  // --- lines from the server ---

  received(line) {
    this.lastHeard = this.clock.now();
    const verb = line.split(" ", 1)[0];
    const handler = HANDLERS[verb];
    if (handler) {
      handler.call(this, line);
    } else {
      this.observer.notice(`unexpected line from the server: ${line}`);
    }
  }

  onHELLO(line) {
    const hello = parseHello(line);
    if (hello === null || this.state !== "connecting") {
      this.abandon("not an hbchat/1 server");
      return;
    }
    this.clearTimer("hello");
    this.hello = hello;
    // A TELL in flight when the last connection ended may or may not have arrived (it has
    // no echo): it is not sent again, as hbchat-client does.
    this.session.tellHandled();
    this.paceFullAt = 0;
    this.startHeartbeat();
    this.setState("greeted");
    const session = this.session;
    if (session.token) {
      this.setState("resuming");
      this.missed = 0;
      this.send(`RESUME ${session.token} ${session.lastSeq}`);
    } else if (session.nick && (!hello.auth || this.password)) {
      this.register();
    } else {
      this.observer.needLogin(hello.auth, "");
    }
  }

  register() {
    const nick = this.session.nick;
    this.setState("registering");
    this.send(this.password ? `NICK ${nick} ${this.password}` : `NICK ${nick}`);
  }

  onWELCOME(line) {
    const [, nick, token, seqText] = words(line, 3);
    const seq = Number(seqText);
    this.attempt = 0;
    this.unavailable = 0;
    if (this.state === "resuming") {
      this.session.nick = nick;
      this.session.token = token;
      this.session.save();
      if (seq < this.session.lastSeq) {
        this.session.lastSeq = seq; // one ahead of the chat: take WELCOME's as the last seen
      }
      return; // the replay follows, then RESUMED
    }
    this.session.registered(nick, token, seq);
    this.observer.welcomed(nick, false);
    this.ready();
  }

  onRESUMED(line) {
    const [, , how] = words(line, 2);
    const complete = how === "complete";
    this.unavailable = 0;
    this.observer.resumed(this.missed, complete);
    this.ready();
  }

  ready() {
    this.setState("ready");
    this.send("WHO");
    // Unechoed SAYs never reached the server (or nothing can be known of them): first
    // those, then what was typed while away (session.js).
    this.session.outbox = this.session.toResend();
    this.session.save();
    this.flush();
  }

  onMSG(line) {
    const [, seqText, nick, text] = words(line, 3);
    const seq = Number(seqText);
    if (!this.session.isNew(seq)) return;
    const own = nick === this.session.nick;
    if (own && this.session.echoed(nick, text)) {
      this.unavailable = 0;
      if (this.oneAtATime) this.flush();
    }
    if (this.state === "resuming" && !own) this.missed += 1;
    this.observer.message(seq, nick, text ?? "", own, this.state === "resuming");
  }

  onJOIN(line) {
    const [, seqText, nick] = words(line, 2);
    const seq = Number(seqText);
    if (this.session.isNew(seq)) this.observer.joined(seq, nick);
  }

  onLEFT(line) {
    const [, seqText, nick, reason] = words(line, 3);
    const seq = Number(seqText);
    if (this.session.isNew(seq)) this.observer.left(seq, nick, reason ?? "");
  }

  onUSERS(line) {
    this.observer.users(line.split(" ").slice(1).filter((nick) => nick));
  }

  onPRIV(line) {
    const [, sender, text] = words(line, 2);
    this.observer.privateMessage(sender, text ?? "");
  }

  onPING(line) {
    this.send("PONG" + line.slice(4));
  }

  onPONG(line) {
    const token = line.slice(5);
    if (token === "told") {
      this.told();
      return;
    }
    if (this.pingToken !== null && token === this.pingToken) {
      this.rtt = this.clock.now() - this.pingSentAt;
      this.pingToken = null;
      this.observer.roundTrip(this.rtt);
    }
  }

  onERR(line) {
    const [, codeText, text] = words(line, 2);
    const code = Number(codeText);
    const unavailable = code === 503 ? refusedVerb(text || "") : null;
    if (unavailable !== null) {
      this.clusterUnavailable(unavailable, `ERR ${code} ${text}`);
      return;
    }
    if (code === 404 && this.state === "resuming") {
      // The server no longer knows our session (a restart, or --grace ran out): what
      // happened meanwhile is lost; register afresh with the same nick.
      this.session.forget();
      this.observer.historyGap("the server no longer knew this session");
      if (this.session.nick && (!this.hello.auth || this.password)) {
        this.register();
      } else {
        this.observer.needLogin(this.hello.auth, "");
      }
      return;
    }
    if (this.state === "registering" && (code === 401 || code === 432 || code === 433 || code === 400)) {
      this.setState("greeted");
      this.observer.needLogin(this.hello && this.hello.auth, text || `ERR ${code}`);
      return;
    }
    if (code === 413) {
      const refused = this.session.refuseOldest();
      this.observer.notice(`not sent, too long for the server: ${refused ?? "a line"}`);
      return;
    }
    if (code === 429) {
      this.rateLimited(text || "");
      return;
    }
    this.observer.notice(`server: ERR ${code} ${text ?? ""}`);
    if (code === 406) this.told(); // no such nick: the TELL in flight was handled, for good
  }

  onBYE(line) {
    const [, reason] = words(line, 2);
    const word = (reason || "").split(" ")[0];
    if (word === "shutdown") {
      const { retry, at } = byeHints(line);
      if (retry !== null) this.hint = { retry, at };
      this.observer.notice("the server is restarting");
    } else if (word === "replaced") {
      // Another page (a duplicated tab) resumed this session: two would take it from each other for ever.
      this.stopped = true;
      this.session.forget();
      this.observer.notice("this session was taken over by another page; reload to join again");
    } else if (word === "kicked") {
      this.stopped = true;
      this.observer.notice("kicked by the server for sending too fast");
    } else if (this.state === "quitting") {
      this.stopped = true;
    }
  }

  // --- pacing and the outbox ---

  flush() {
    if (this.state !== "ready" || this.timers.pace) return;
    const session = this.session;
    const hello = this.hello;
    const rate = hello && hello.rate > 0 ? hello.rate * 0.8 : 0;
    const burst = hello ? Math.max(1, (hello.burst * 0.8) / 2) : 1;
    while (session.outbox.length) {
      // A line is taken out of the outbox only when it can go: a socket already closing
      // (its close not reported yet) would drop it, and a TELL has no echo to bring it back.
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      if (this.oneAtATime && session.unechoed.length) return;
      const tell = session.outbox[0].startsWith("TELL ");
      if (tell) {
        // One TELL in flight, its fate learnt from the PING told after it (hbchat/client/outbox.py).
        if (session.tellInFlight !== null) return;
        const wait = this.barrierWait();
        if (wait > 0) {
          this.timer("pace", wait, () => this.flush());
          return;
        }
      }
      if (rate > 0) {
        const now = this.clock.now();
        const interval = 1 / rate;
        const debt = this.paceFullAt - now;
        if (debt > (burst - 0.5) * interval) {
          this.timer("pace", Math.max(0.001, debt - (burst - 1) * interval), () => this.flush());
          return;
        }
        this.paceFullAt = Math.max(this.paceFullAt, now) + interval;
      }
      this.requeued = 0;
      const line = session.outbox.shift();
      session.sending(line);
      this.send(line);
      if (tell) {
        this.barriersFullAt = Math.max(this.barriersFullAt, this.clock.now()) + 1 / BARRIER_RATE;
        this.send(TELL_BARRIER);
      }
    }
    session.save();
  }

  // Seconds until a PING told may go (at most BARRIER_RATE a second, BARRIER_BURST at once: under the PING budget).
  barrierWait() {
    const interval = 1 / BARRIER_RATE;
    const debt = this.barriersFullAt - this.clock.now();
    return debt > (BARRIER_BURST - 0.5) * interval ? Math.max(0.001, debt - (BARRIER_BURST - 1) * interval) : 0;
  }

  // PONG told: the TELL in flight was handled; the next may go.
  told() {
    if (this.session.tellHandled() !== null) this.unavailable = 0;
    this.flush();
  }


  rateLimited(text) {
    const verb = text.split(": ").pop().split(" ")[0];
    if (verb === "SAY") {
      const refused = this.session.refuseOldest();
      if (refused !== null) this.requeue("SAY " + refused);
    } else if (verb === "TELL") {
      const refused = this.session.tellHandled();
      if (refused !== null) this.requeue(refused);
    } else if (verb === "PING" && this.session.tellInFlight !== null) {
      // Perhaps the PING after our TELL: ask again, later, whether the TELL was handled.
      this.timer("barrier", 1, () => {
        if (this.state === "ready" && this.session.tellInFlight !== null) this.send(TELL_BARRIER);
      });
    } else if (verb === "NICK" || verb === "RESUME") {
      // Not handled: without it the page would wait for a WELCOME or RESUMED for ever.
      // Sent again once the server's budget has room (a second: its PING budget's pace).
      this.timer("login", 1, () => this.loginAgain(verb));
    }
    this.oneAtATime = true;
    if (this.hello) this.hello.rate = Math.max(1, this.hello.rate / 2);
    this.observer.notice("the server asked us to slow down");
    this.flush(); // the refused line, at the slower pace (nothing else may come to send it)
  }

  // A refused line goes back to the front of the outbox, after those refused before it (in the order sent).
  requeue(line) {
    this.session.outbox.splice(this.requeued, 0, line);
    this.requeued += 1;
    this.session.save();
  }

  // ERR 503 cluster unavailable: <VERB> not handled (docs/protocol.md section 8): the refused
  // line is kept and sent again after a jittered wait, on this connection; the user is told
  // once per outage. A refused SAY is our oldest unechoed one (lines are answered in order).
  clusterUnavailable(verb, text) {
    if (verb === "SAY") {
      const refused = this.session.refuseOldest();
      if (refused !== null) this.requeue("SAY " + refused);
    } else if (verb === "TELL") {
      const refused = this.session.tellHandled();
      if (refused !== null) this.requeue(refused);
    }
    const first = this.unavailable === 0;
    const wait = this.holdFor();
    if (verb === "NICK" || verb === "RESUME") this.timer("login", wait, () => this.loginAgain(verb));
    if (first) this.observer.notice(`server says: ${text}: kept, sent again in ${wait.toFixed(1)} s`);
  }

  // Send nothing for a jittered wait that doubles with each refusal in a row, then go on one
  // SAY at a time; refusals of lines already in flight meanwhile do not lengthen it. The wait
  // (what is left of it, if one is under way).
  holdFor() {
    const now = this.clock.now();
    if (this.heldUntil > now) return this.heldUntil - now;
    this.unavailable += 1;
    const wait = retryWait(this.unavailable);
    this.heldUntil = now + wait;
    this.oneAtATime = true;
    this.timer("pace", wait, () => this.flush());
    return wait;
  }

  // A NICK or RESUME that was not handled, sent again as it was (if still waited for).
  loginAgain(verb) {
    const session = this.session;
    if (verb === "NICK" && this.state === "registering") {
      this.register();
    } else if (verb === "RESUME" && this.state === "resuming" && session.token) {
      this.missed = 0;
      this.send(`RESUME ${session.token} ${session.lastSeq}`);
    }
  }

  // --- the heartbeat ---

  startHeartbeat() {
    const { ping, timeout } = this.hello;
    this.stopHeartbeat();
    this.timers.heartbeat = setInterval(() => this.beat(ping, timeout), 250);
    this.pingTimer = setInterval(() => this.sendPing(), ping * 1000);
    this.sendPing();
  }

  stopHeartbeat() {
    clearInterval(this.timers.heartbeat);
    clearInterval(this.pingTimer);
    delete this.timers.heartbeat;
    this.pingTimer = null;
    this.pingToken = null;
  }

  sendPing() {
    this.pings += 1;
    this.pingToken = `p${this.pings}`;
    this.pingSentAt = this.clock.now();
    this.send(`PING ${this.pingToken}`);
  }

  beat(ping, timeout) {
    const silent = this.clock.now() - this.lastHeard;
    if (silent >= timeout) {
      this.abandon(`the server was silent for ${Math.round(silent)} s`);
      return;
    }
    // Both sides PING every `ping` seconds: a longer silence means something is wrong.
    this.observer.silence(silent >= Math.min(ping + 1, (ping + timeout) / 2) ? silent : 0);
  }

  // --- bookkeeping ---

  setState(state) {
    this.state = state;
    this.observer.state(state);
  }

  timer(name, seconds, action) {
    this.clearTimer(name);
    this.timers[name] = setTimeout(() => {
      delete this.timers[name];
      action();
    }, seconds * 1000);
  }

  clearTimer(name) {
    if (this.timers[name] !== undefined) {
      clearTimeout(this.timers[name]);
      delete this.timers[name];
    }
  }
}

// Why a WebSocket closed, in words.
function closeWords(code, reason) {
  if (code === 1006) return "the connection was lost";
  const why = reason ? ` ${reason}` : "";
  return `closed by the server (${code}${why})`;
}

const HANDLERS = {
  HELLO: ChatLink.prototype.onHELLO,
  WELCOME: ChatLink.prototype.onWELCOME,
  RESUMED: ChatLink.prototype.onRESUMED,
  MSG: ChatLink.prototype.onMSG,
  JOIN: ChatLink.prototype.onJOIN,
  LEFT: ChatLink.prototype.onLEFT,
  USERS: ChatLink.prototype.onUSERS,
  PRIV: ChatLink.prototype.onPRIV,
  PING: ChatLink.prototype.onPING,
  PONG: ChatLink.prototype.onPONG,
  ERR: ChatLink.prototype.onERR,
  BYE: ChatLink.prototype.onBYE,
};

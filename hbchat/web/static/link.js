// One chat session across WebSocket connections: connect, greet, register or resume,
// the heartbeat both ways, reconnect with backoff, and the outbox sent at the server's
// pace. The same life as hbchat-client's (docs/architecture.md), states named alike:
//   idle -> connecting -> greeted -> registering | resuming -> ready
//   any --lost--> backing_off --> connecting;  ready --quit--> quitting -> gave_up
// The user interface is told everything through `observer` (app.js). The heartbeat is
// heartbeat.js's, what a server's ERR means errors.js's.

import { fullJitter, hinted } from "./backoff.js";
import { ServerErrors } from "./errors.js";
import { Heartbeat } from "./heartbeat.js";
import { PacedOutbox } from "./outbox.js";
import { byeHints, parseHello, words } from "./wire.js";

export const SUBPROTOCOL = "hbchat.v1";
const HELLO_TIMEOUT = 10; // seconds to wait for HELLO before the server is taken for dead
const QUIT_WAIT = 5;

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
    this.timers = {};
    this.missed = 0; // new MSGs seen during a replay
    this.retryAt = null;
    this.stopped = false;
    this.awaitingLogin = false; // the server closed while the person chose a nick (ERR 408)
    this.outbox = new PacedOutbox(session, clock);
    this.heartbeat = new Heartbeat(this);
    this.errors = new ServerErrors(this);
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
    this.outbox.flush();
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
    this.outbox.stop();
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
    this.heartbeat.stop();
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
    this.clearTimer("login");
    this.outbox.stop();
    if (this.awaitingLogin) {
      this.awaitingLogin = false;
      this.setState("idle");
      return;
    }
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
    this.outbox.greeted(hello.rate, hello.burst);
    this.heartbeat.start(hello.ping, hello.timeout);
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
    this.outbox.unavailable = 0;
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
    this.outbox.unavailable = 0;
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
    this.outbox.ready(
      (line) => this.send(line),
      () => this.ws !== null && this.ws.readyState === WebSocket.OPEN,
    );
  }

  onMSG(line) {
    const [, seqText, nick, text] = words(line, 3);
    const seq = Number(seqText);
    if (!this.session.isNew(seq)) return;
    const own = nick === this.session.nick;
    if (own && this.session.echoed(nick, text)) this.outbox.echoed();
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
      this.outbox.told(); // the TELL in flight was handled (outbox.js)
      return;
    }
    this.heartbeat.pong(token);
  }

  onERR(line) {
    this.errors.handle(line);
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

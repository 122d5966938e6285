// What the page remembers across reconnects and reloads so that nothing is lost and
// nothing doubled: the same rules as hbchat-client's ClientSession (hbchat/client/session.py,
// docs/protocol.md section 14). Kept in sessionStorage: a reload resumes.
//
// The server handles a connection's lines in order and echoes every SAY as a MSG, and a
// RESUME replays every event after the last one seen, our own MSGs included. So after a
// complete replay, the SAY lines still waiting for their echo never reached the server:
// those, then what was typed while away, are sent again. After a partial replay or a lost
// session an echo may be gone with the history: a later echo proves the earlier lines
// arrived; a line about which nothing can be known is sent again (a possible duplicate is
// preferred to a possible loss, and the user is told of the gap).

const KEY = "hbchat.session";
export const OUTBOX_LIMIT = 1000;

export class Session {
  constructor(storage) {
    this.storage = storage;
    this.nick = null;
    this.token = null;
    this.lastSeq = 0;
    this.outbox = []; // lines ("SAY ...", "TELL ...") not sent yet
    this.unechoed = []; // texts of SAYs sent whose MSG has not come back
    this.load();
  }

  load() {
    let saved = null;
    try {
      saved = JSON.parse(this.storage.getItem(KEY) || "null");
    } catch (error) {
      saved = null;
    }
    if (saved && typeof saved === "object") {
      this.nick = typeof saved.nick === "string" ? saved.nick : null;
      this.token = typeof saved.token === "string" ? saved.token : null;
      this.lastSeq = Number.isSafeInteger(saved.lastSeq) ? saved.lastSeq : 0;
      this.outbox = Array.isArray(saved.outbox) ? saved.outbox.filter((x) => typeof x === "string") : [];
      this.unechoed = Array.isArray(saved.unechoed) ? saved.unechoed.filter((x) => typeof x === "string") : [];
    }
  }

  save() {
    const state = {
      nick: this.nick,
      token: this.token,
      lastSeq: this.lastSeq,
      outbox: this.outbox,
      unechoed: this.unechoed,
    };
    try {
      this.storage.setItem(KEY, JSON.stringify(state));
    } catch (error) {
      // Storage full or refused: the session still works until the page is closed.
    }
  }

  get idle() {
    return this.outbox.length === 0 && this.unechoed.length === 0;
  }

  queue(line) {
    if (this.outbox.length >= OUTBOX_LIMIT) {
      throw new Error(`${this.outbox.length} lines are already waiting to be sent`);
    }
    this.outbox.push(line);
    this.save();
  }

  sending(line) {
    if (line.startsWith("SAY ")) {
      this.unechoed.push(line.slice(4));
    }
    this.save();
  }

  registered(nick, token, seq) {
    this.nick = nick;
    this.token = token;
    this.lastSeq = seq;
    this.save();
  }

  forget() {
    this.token = null;
    this.save();
  }

  isNew(seq) {
    if (seq <= this.lastSeq) {
      return false;
    }
    this.lastSeq = seq;
    this.save();
    return true;
  }

  echoed(nick, text) {
    if (nick !== this.nick || this.unechoed.length === 0) {
      return false;
    }
    const index = this.unechoed.indexOf(text);
    if (index < 0) {
      return false;
    }
    this.unechoed.splice(0, index + 1);
    this.save();
    return true;
  }

  refuseOldest() {
    const text = this.unechoed.length ? this.unechoed.shift() : null;
    this.save();
    return text;
  }

  toResend() {
    const lines = this.unechoed.map((text) => "SAY " + text).concat(this.outbox);
    this.unechoed = [];
    this.outbox = [];
    this.save();
    return lines;
  }

  quit() {
    this.token = null;
    this.outbox = [];
    this.unechoed = [];
    this.save();
  }
}

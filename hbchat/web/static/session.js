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

// Each part under its own key: the small ones (nick, token, last seq) are written with every
// event; the lists (up to OUTBOX_LIMIT lines of 4 KB) only when they change. A write that
// fails (the 5 MB quota) is reported through `trouble`: a reload could lose lines.
export const KEYS = {
  nick: "hbchat.nick",
  token: "hbchat.token",
  lastSeq: "hbchat.lastSeq",
  outbox: "hbchat.outbox",
  unechoed: "hbchat.unechoed",
};
export const OUTBOX_LIMIT = 1000;

export class Session {
  // trouble(why): a write failed (why), or null: the writes succeed again.
  constructor(storage, trouble = () => {}) {
    this.storage = storage;
    this.trouble = trouble;
    this.failing = new Set(); // the keys whose last write failed
    this.nick = null;
    this.token = null;
    this.lastSeq = 0;
    this.outbox = []; // lines ("SAY ...", "TELL ...") not sent yet
    this.unechoed = []; // texts of SAYs sent whose MSG has not come back
    this.tellInFlight = null; // the TELL sent whose PONG told has not come back (not kept across reloads)
    this.load();
  }

  load() {
    const read = (key) => {
      try {
        return JSON.parse(this.storage.getItem(key) || "null");
      } catch (error) {
        return null;
      }
    };
    const strings = (value) => (Array.isArray(value) ? value.filter((x) => typeof x === "string") : []);
    const nick = read(KEYS.nick);
    const token = read(KEYS.token);
    const lastSeq = read(KEYS.lastSeq);
    this.nick = typeof nick === "string" ? nick : null;
    this.token = typeof token === "string" ? token : null;
    this.lastSeq = Number.isSafeInteger(lastSeq) ? lastSeq : 0;
    this.outbox = strings(read(KEYS.outbox));
    this.unechoed = strings(read(KEYS.unechoed));
  }

  // Everything: after the lists changed.
  save() {
    this.saveProgress();
    this.write(KEYS.outbox, this.outbox);
    this.write(KEYS.unechoed, this.unechoed);
  }

  // The small parts only: after each event.
  saveProgress() {
    this.write(KEYS.nick, this.nick);
    this.write(KEYS.token, this.token);
    this.write(KEYS.lastSeq, this.lastSeq);
  }

  write(key, value) {
    const wasFailing = this.failing.size > 0;
    try {
      this.storage.setItem(key, JSON.stringify(value));
      this.failing.delete(key);
      if (wasFailing && this.failing.size === 0) this.trouble(null);
    } catch (error) {
      // Storage full or refused: the session still works until the page is closed, but a
      // reload would not find what could not be written; the person is told.
      this.failing.add(key);
      if (!wasFailing) this.trouble(error && error.name === "QuotaExceededError" ? "storage full" : String(error));
    }
  }

  get idle() {
    return this.outbox.length === 0 && this.unechoed.length === 0 && this.tellInFlight === null;
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
    } else if (line.startsWith("TELL ")) {
      this.tellInFlight = line;
    }
    this.save();
  }

  // The TELL in flight was handled (or refused for good, or its fate cannot be known): forget it; return it.
  tellHandled() {
    const line = this.tellInFlight;
    this.tellInFlight = null;
    return line;
  }

  registered(nick, token, seq) {
    this.nick = nick;
    this.token = token;
    this.lastSeq = seq;
    this.saveProgress();
  }

  forget() {
    this.token = null;
    this.saveProgress();
  }

  isNew(seq) {
    if (seq <= this.lastSeq) {
      return false;
    }
    this.lastSeq = seq;
    this.write(KEYS.lastSeq, this.lastSeq);
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
    this.tellInFlight = null;
    this.save();
  }
}

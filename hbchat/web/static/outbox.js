// The outbox sent at the server's pace, as hbchat-client's PacedOutbox
// (hbchat/client/outbox.py): 80 % of the rate HELLO advertises, a burst of 40 % of its
// burst; an ERR 429 puts a refused SAY back at the front, halves the pace, and keeps one
// SAY in flight from then on (on that connection), so the order holds.
//
// A TELL has no echo: right after it goes "PING told" (TELL_BARRIER), whose PONG says it
// was handled (the server answers a connection's lines in order); an ERR for it comes
// before. So one TELL is in flight at a time, and those PINGs go no faster than
// BARRIER_RATE a second (the server's PING budget is one a second). A line refused with
// ERR 503 cluster unavailable (unavailable.js) goes back to the front of the outbox, which
// then holds everything for a jittered wait (hold) before it tries again, one SAY at a time.
// A line leaves the outbox only when the connection is open: a socket already closing
// would drop it (and a TELL has no echo to bring it back).

import { retryWait } from "./unavailable.js";

export const PACE_SHARE = 0.8;
export const TELL_BARRIER = "PING told";
const BARRIER_RATE = 0.8;
const BARRIER_BURST = 5;

export class PacedOutbox {
  constructor(session, clock) {
    this.session = session;
    this.clock = clock;
    this.rate = 0; // lines/s; 0: no limit
    this.burst = 1;
    this.fullAt = 0;
    this.oneAtATime = false;
    this.sink = null; // where lines go while a connection is ready
    this.open = () => false; // whether that connection can take a line now
    this.call = null;
    this.barriersFullAt = 0;
    this.barrierCall = null;
    this.requeued = 0; // refused lines put back at the front since one was sent
    this.unavailable = 0; // ERR 503 cluster unavailable refusals in a row; 0 once a line got through
    this.heldUntil = -Infinity;
  }

  greeted(rate, burst) {
    this.rate = rate > 0 ? rate * PACE_SHARE : 0;
    this.burst = Math.max(1, (burst * PACE_SHARE) / 2);
    this.fullAt = 0;
    this.oneAtATime = false;
    // A TELL in flight when the last connection ended may or may not have arrived (it has
    // no echo): it is not sent again, as hbchat-client does.
    this.session.tellHandled();
  }

  ready(sink, open = () => true) {
    this.sink = sink;
    this.open = open;
    this.flush();
  }

  stop() {
    this.sink = null;
    this.open = () => false;
    for (const call of [this.call, this.barrierCall]) if (call !== null) clearTimeout(call);
    this.call = this.barrierCall = null;
    this.heldUntil = -Infinity; // the next connection (perhaps another node) starts unheld
    this.requeued = 0;
  }

  echoed() {
    this.unavailable = 0;
    if (this.oneAtATime) this.flush();
  }

  // PONG told: the TELL in flight was handled; the next may go.
  told() {
    if (this.session.tellHandled() !== null) this.unavailable = 0;
    this.flush();
  }

  // ERR 406 (no such nick): the TELL in flight was handled, for good.
  tellRefused() {
    this.session.tellHandled();
    this.flush();
  }

  // A refused line goes back to the front of the outbox, after those refused before it (in the order sent).
  requeue(line) {
    this.session.outbox.splice(this.requeued, 0, line);
    this.requeued += 1;
    this.session.save();
  }

  later(seconds) {
    if (this.call !== null) clearTimeout(this.call);
    this.call = setTimeout(() => {
      this.call = null;
      this.flush();
    }, seconds * 1000);
  }

  flush() {
    const session = this.session;
    if (this.sink === null || this.call !== null) return;
    while (session.outbox.length) {
      if (!this.open()) return; // taken out only when it can go
      if (this.oneAtATime && session.unechoed.length) return; // the next goes with the echo
      const tell = session.outbox[0].startsWith("TELL ");
      if (tell) {
        if (session.tellInFlight !== null) return; // the next goes with PONG told
        const interval = 1 / BARRIER_RATE;
        const debt = this.barriersFullAt - this.clock.now();
        if (debt > (BARRIER_BURST - 0.5) * interval) {
          this.later(Math.max(0.001, debt - (BARRIER_BURST - 1) * interval));
          return;
        }
      }
      if (this.rate > 0) {
        const now = this.clock.now();
        const interval = 1 / this.rate;
        const debt = this.fullAt - now;
        if (debt > (this.burst - 0.5) * interval) {
          this.later(Math.max(0.001, debt - (this.burst - 1) * interval));
          return;
        }
        this.fullAt = Math.max(this.fullAt, now) + interval;
      }
      this.requeued = 0;
      const line = session.outbox.shift();
      session.sending(line);
      this.sink(line);
      if (tell) {
        this.barriersFullAt = Math.max(this.barriersFullAt, this.clock.now()) + 1 / BARRIER_RATE;
        this.sink(TELL_BARRIER);
      }
    }
    session.save();
  }

  // ERR 429: a refused SAY or TELL goes back to the front, the pace halves, one SAY in
  // flight from now on; the refused line goes again at the slower pace. The refused verb.
  rateLimited(text) {
    const verb = text.split(": ").pop().split(" ")[0];
    if (verb === "SAY") {
      const refused = this.session.refuseOldest();
      if (refused !== null) this.requeue("SAY " + refused);
    } else if (verb === "TELL") {
      const refused = this.session.tellHandled();
      if (refused !== null) this.requeue(refused);
    } else if (verb === "PING" && this.session.tellInFlight !== null && this.barrierCall === null) {
      // Perhaps the PING after our TELL: ask again, later, whether the TELL was handled.
      this.barrierCall = setTimeout(() => {
        this.barrierCall = null;
        if (this.sink !== null && this.session.tellInFlight !== null) this.sink(TELL_BARRIER);
      }, 1000);
    }
    this.oneAtATime = true;
    this.rate = Math.max(1, (this.rate || 100 * PACE_SHARE) / 2);
    this.flush();
    return verb;
  }

  // ERR 503 cluster unavailable: <VERB> not handled. A refused SAY is our oldest unechoed
  // one, a TELL the one in flight: back to the front. Then hold (hold). Returns
  // { first: whether this begins an outage, wait: the seconds until lines go again }.
  clusterUnavailable(verb) {
    if (verb === "SAY") {
      const refused = this.session.refuseOldest();
      if (refused !== null) this.requeue("SAY " + refused);
    } else if (verb === "TELL") {
      const refused = this.session.tellHandled();
      if (refused !== null) this.requeue(refused);
    }
    const first = this.unavailable === 0;
    return { first, wait: this.hold() };
  }

  // Send nothing for a jittered wait that doubles with each refusal in a row, then go on one
  // SAY at a time; refusals of lines already in flight meanwhile do not lengthen it. The wait
  // (what is left of it, if one is under way).
  hold() {
    const now = this.clock.now();
    if (this.heldUntil > now) return this.heldUntil - now;
    this.unavailable += 1;
    const wait = retryWait(this.unavailable);
    this.heldUntil = now + wait;
    this.oneAtATime = true;
    this.later(wait);
    return wait;
  }
}

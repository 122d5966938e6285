// The outbox sent at the server's pace, as hbchat-client's PacedOutbox
// (hbchat/client/outbox.py): 80 % of the rate HELLO advertises, a burst of 40 % of its
// burst; an ERR 429 puts a refused SAY back at the front, halves the pace, and keeps one
// SAY in flight from then on (on that connection), so the order holds.

export const PACE_SHARE = 0.8;

export class PacedOutbox {
  constructor(session, clock) {
    this.session = session;
    this.clock = clock;
    this.rate = 0; // lines/s; 0: no limit
    this.burst = 1;
    this.fullAt = 0;
    this.oneAtATime = false;
    this.sink = null; // where lines go while a connection is ready
    this.call = null;
  }

  greeted(rate, burst) {
    this.rate = rate > 0 ? rate * PACE_SHARE : 0;
    this.burst = Math.max(1, (burst * PACE_SHARE) / 2);
    this.fullAt = 0;
    this.oneAtATime = false;
  }

  ready(sink) {
    this.sink = sink;
    this.flush();
  }

  stop() {
    this.sink = null;
    if (this.call !== null) clearTimeout(this.call);
    this.call = null;
  }

  echoed() {
    if (this.oneAtATime) this.flush();
  }

  flush() {
    const session = this.session;
    if (this.sink === null || this.call !== null) return;
    while (session.outbox.length) {
      if (this.oneAtATime && session.unechoed.length) return; // the next goes with the echo
      if (this.rate > 0) {
        const now = this.clock.now();
        const interval = 1 / this.rate;
        const debt = this.fullAt - now;
        if (debt > (this.burst - 0.5) * interval) {
          const wait = Math.max(0.001, debt - (this.burst - 1) * interval);
          this.call = setTimeout(() => {
            this.call = null;
            this.flush();
          }, wait * 1000);
          return;
        }
        this.fullAt = Math.max(this.fullAt, now) + interval;
      }
      const line = session.outbox.shift();
      session.sending(line);
      // Lost meanwhile: the line is unechoed now, and sent again after the replay.
      if (!this.sink(line)) return;
    }
    session.save();
  }

  rateLimited(text) {
    const verb = text.split(": ").pop().split(" ")[0];
    if (verb === "SAY") {
      const refused = this.session.refuseOldest();
      if (refused !== null) {
        this.session.outbox.unshift("SAY " + refused);
        this.session.save();
      }
    }
    this.oneAtATime = true;
    this.rate = Math.max(1, (this.rate || 100 * PACE_SHARE) / 2);
  }
}

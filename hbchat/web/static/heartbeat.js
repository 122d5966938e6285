// The page's side of the heartbeat (docs/protocol.md): a PING every `ping` seconds from
// HELLO, each PONG's round trip, and the watch on the server's silence: told to the person
// (observer.silence) past a beat missed, and the connection given up (link.abandon) after
// `timeout` seconds without a line. As hbchat-client's heartbeat, on a ChatLink (link.js).

export class Heartbeat {
  constructor(link) {
    this.link = link;
    this.rtt = null;
    this.pingToken = null;
    this.pingSentAt = 0;
    this.pings = 0;
    this.watch = null; // the interval that checks the silence
    this.pinger = null; // the interval that sends PINGs
  }

  start(ping, timeout) {
    this.stop();
    this.watch = setInterval(() => this.beat(ping, timeout), 250);
    this.pinger = setInterval(() => this.sendPing(), ping * 1000);
    this.sendPing();
  }

  stop() {
    clearInterval(this.watch);
    clearInterval(this.pinger);
    this.watch = null;
    this.pinger = null;
    this.pingToken = null;
  }

  sendPing() {
    const link = this.link;
    this.pings += 1;
    this.pingToken = `p${this.pings}`;
    this.pingSentAt = link.clock.now();
    link.send(`PING ${this.pingToken}`);
  }

  // A PONG's token: the round trip of our PING in flight, if it is its answer.
  pong(token) {
    if (this.pingToken !== null && token === this.pingToken) {
      this.rtt = this.link.clock.now() - this.pingSentAt;
      this.pingToken = null;
      this.link.observer.roundTrip(this.rtt);
    }
  }

  beat(ping, timeout) {
    const link = this.link;
    const silent = link.clock.now() - link.lastHeard;
    if (silent >= timeout) {
      link.abandon(`the server was silent for ${Math.round(silent)} s`);
      return;
    }
    // Both sides PING every `ping` seconds: a longer silence means something is wrong.
    link.observer.silence(silent >= Math.min(ping + 1, (ping + timeout) / 2) ? silent : 0);
  }
}

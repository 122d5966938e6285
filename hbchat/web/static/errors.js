// What the page does about a server's ERR, as hbchat-client's errors.py and policy.py:
// the session gone on RESUME (register afresh), the person still choosing a nick, a nick
// or password refused, a line too long, the server's rate, ERR 503 cluster unavailable
// (unavailable.js, outbox.js), anything else told to the person. Carried out on a
// ChatLink (link.js): its session, outbox, observer, state and timers.

import { refusedVerb } from "./unavailable.js";
import { words } from "./wire.js";

// ERRs while registering after which the person is asked for another nick or password.
const LOGIN_REFUSED = new Set([400, 401, 432, 433]);

export class ServerErrors {
  constructor(link) {
    this.link = link;
  }

  handle(line) {
    const link = this.link;
    const [, codeText, text] = words(line, 2);
    const code = Number(codeText);
    const unavailable = code === 503 ? refusedVerb(text || "") : null;
    if (unavailable !== null) {
      this.clusterUnavailable(unavailable, `ERR ${code} ${text}`);
      return;
    }
    if (code === 404 && link.state === "resuming") {
      // The server no longer knows our session (a restart, or --grace ran out): what
      // happened meanwhile is lost; register afresh with the same nick.
      link.session.forget();
      link.observer.historyGap("the server no longer knew this session");
      if (link.session.nick && (!link.hello.auth || link.password)) {
        link.register();
      } else {
        link.observer.needLogin(link.hello.auth, "");
      }
      return;
    }
    if (code === 408 && link.state === "greeted") {
      // The person is still choosing a nick: no reconnecting meanwhile; Join connects again.
      link.awaitingLogin = true;
      return;
    }
    if (link.state === "registering" && LOGIN_REFUSED.has(code)) {
      link.setState("greeted");
      link.observer.needLogin(link.hello && link.hello.auth, text || `ERR ${code}`);
      return;
    }
    if (code === 413) {
      const refused = link.session.refuseOldest();
      link.observer.notice(`not sent, too long for the server: ${refused ?? "a line"}`);
      return;
    }
    if (code === 429) {
      const verb = link.outbox.rateLimited(text || "");
      if (verb === "NICK" || verb === "RESUME") {
        // Not handled: without it the page would wait for a WELCOME or RESUMED for ever.
        // Sent again once the server's budget has room (a second).
        link.timer("login", 1, () => this.loginAgain(verb));
      }
      link.observer.notice("the server asked us to slow down");
      return;
    }
    link.observer.notice(`server: ERR ${code} ${text ?? ""}`);
    if (code === 406) link.outbox.tellRefused(); // no such nick: the TELL in flight was handled, for good
  }

  // ERR 503 cluster unavailable: <VERB> not handled (docs/protocol.md section 8): the refused
  // line is kept and sent again after a jittered wait, on this connection (outbox.js); the
  // user is told once per outage.
  clusterUnavailable(verb, text) {
    const link = this.link;
    const { first, wait } = link.outbox.clusterUnavailable(verb);
    if (verb === "NICK" || verb === "RESUME") link.timer("login", wait, () => this.loginAgain(verb));
    if (first) link.observer.notice(`server says: ${text}: kept, sent again in ${wait.toFixed(1)} s`);
  }

  // A NICK or RESUME that was not handled, sent again as it was (if still waited for).
  loginAgain(verb) {
    const link = this.link;
    const session = link.session;
    if (verb === "NICK" && link.state === "registering") {
      link.register();
    } else if (verb === "RESUME" && link.state === "resuming" && session.token) {
      link.missed = 0;
      link.send(`RESUME ${session.token} ${session.lastSeq}`);
    }
  }
}

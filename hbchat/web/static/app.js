// The chat page: what the person sees and types (index.html), on top of ChatLink (link.js).

import { ChatLink } from "./link.js";
import { Session } from "./session.js";
import { chatLine } from "./wire.js";

const $ = (id) => document.getElementById(id);

const HELP = [
  "<text>  say it to everyone",
  "/who  list who is here",
  "/tell NICK TEXT  say TEXT to NICK only",
  "/quit [TEXT]  leave",
  "/help  this list",
];

class Page {
  constructor() {
    this.status = $("status");
    this.log = $("log");
    this.userList = $("userlist");
    this.userCount = $("usercount");
    this.people = new Set();
    this.connectedState = "connecting";
    this.rtt = null;
    this.silentFor = 0;
    this.lastEvent = "";
    this.countdown = null;
    this.storageProblem = "";
    this.session = new Session(window.sessionStorage, (why) => this.storageTrouble(why));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.link = new ChatLink(`${scheme}//${location.host}/ws`, this.session, this);
    $("login").addEventListener("submit", (event) => this.onLogin(event));
    $("say").addEventListener("submit", (event) => this.onSay(event));
    if (this.session.nick) $("nick").value = this.session.nick;
    window.hbchat = { link: this.link, session: this.session, page: this };
    this.link.start();
  }

  // --- the person's side ---

  onLogin(event) {
    event.preventDefault();
    const nick = $("nick").value.trim();
    if (!nick) {
      this.loginError("a nick, please");
      return;
    }
    this.link.login(nick, $("password").value);
  }

  onSay(event) {
    event.preventDefault();
    const input = $("line");
    const text = input.value;
    if (!text.trim()) return;
    try {
      this.typed(text);
      input.value = "";
    } catch (error) {
      this.system(`not sent: ${error.message}`);
    }
  }

  typed(text) {
    if (text.startsWith("/")) {
      const [command, ...rest] = text.slice(1).split(" ");
      const args = rest.join(" ");
      switch (command.toLowerCase()) {
        case "who":
          if (!this.link.who()) this.system("not connected");
          return;
        case "tell": {
          const at = args.indexOf(" ");
          if (at <= 0 || !args.slice(at + 1)) {
            this.system("usage: /tell NICK TEXT");
            return;
          }
          const nick = args.slice(0, at);
          const line = chatLine(`TELL ${nick} `, args.slice(at + 1));
          const now = this.link.submit(line);
          this.entry("priv own", null, `→ ${nick}`, args.slice(at + 1));
          if (!now) this.system("not connected: will send when reconnected");
          return;
        }
        case "quit":
          this.link.quit(args);
          return;
        case "help":
          HELP.forEach((line) => this.system(line));
          return;
        default:
          this.system(`unknown command /${command}; /help lists them`);
          return;
      }
    }
    const now = this.link.submit(chatLine("SAY ", text));
    if (!now) this.system("not connected: will send when reconnected");
  }

  // --- what ChatLink tells ---

  state(state) {
    this.connectedState = state;
    document.body.dataset.state = state;
    if (state !== "backing_off") this.stopCountdown();
    this.render();
  }

  needLogin(auth, error) {
    $("password-row").hidden = !auth;
    $("login").hidden = false;
    $("chat").hidden = true;
    this.loginError(error);
    (auth && $("nick").value ? $("password") : $("nick")).focus();
  }

  loginError(text) {
    $("login-error").textContent = text || "";
  }

  welcomed(nick) {
    this.showChat();
    this.system(`connected as ${nick}; /help lists commands`);
  }

  resumed(missed, complete) {
    this.showChat();
    this.lastEvent = `resumed: ${missed} missed message${missed === 1 ? "" : "s"}`;
    this.system(this.lastEvent);
    if (!complete) this.historyGap("some messages were older than the server's history");
    this.render();
  }

  historyGap(why) {
    this.lastEvent = "history gap";
    const item = this.entry("gap", null, "", `history gap: ${why}; messages may be missing here`);
    item.setAttribute("role", "separator");
    this.render();
  }

  message(seq, nick, text, own, replayed) {
    const item = this.entry(own ? "msg own" : "msg", seq, nick, text);
    item.dataset.nick = nick;
    if (replayed) item.classList.add("replayed");
  }

  joined(seq, nick) {
    this.people.add(nick);
    this.renderUsers();
    this.entry("join", seq, "", `${nick} joined`).dataset.nick = nick;
  }

  left(seq, nick, reason) {
    this.people.delete(nick);
    this.renderUsers();
    this.entry("left", seq, "", `${nick} left (${reason})`).dataset.nick = nick;
  }

  users(nicks) {
    this.people = new Set(nicks);
    this.renderUsers();
  }

  privateMessage(sender, text) {
    this.entry("priv", null, `${sender} → you`, text);
  }

  roundTrip(rtt) {
    this.rtt = rtt;
    this.render();
  }

  silence(seconds) {
    const rounded = Math.floor(seconds);
    if (rounded !== this.silentFor) {
      this.silentFor = rounded;
      this.render();
    }
  }

  notice(text) {
    this.system(text);
  }

  disconnected(why, delay, attempt) {
    this.system(`disconnected: ${why}`);
    this.silentFor = 0;
    this.rtt = null;
    this.startCountdown(delay, attempt);
  }

  gaveUp(why) {
    this.stopCountdown();
    this.system(`disconnected: ${why}`);
    this.render();
  }

  // The session could not be written to sessionStorage (why), or can again (null).
  storageTrouble(why) {
    this.storageProblem = why ? `not saved for a reload: ${why}` : "";
    if (why) this.system(`this tab could not save its session (${why}): a reload may lose what is not sent yet`);
    this.render();
  }

  // --- the page ---

  showChat() {
    $("login").hidden = true;
    $("chat").hidden = false;
    $("line").focus();
  }

  startCountdown(delay, attempt) {
    this.stopCountdown();
    const until = performance.now() + delay * 1000;
    const show = () => {
      const left = Math.max(0, Math.ceil((until - performance.now()) / 1000));
      this.retryText = `reconnecting in ${left} s (attempt ${attempt})`;
      this.render();
    };
    show();
    this.countdown = setInterval(show, 250);
  }

  stopCountdown() {
    if (this.countdown !== null) clearInterval(this.countdown);
    this.countdown = null;
    this.retryText = "";
  }

  render() {
    const state = this.connectedState;
    let text;
    if (state === "ready") {
      text = this.silentFor > 0 ? `server silent for ${this.silentFor} s` : "connected";
      if (this.silentFor === 0 && this.rtt !== null) text += ` (round trip ${Math.max(1, Math.round(this.rtt * 1000))} ms)`;
    } else if (state === "backing_off") {
      text = this.retryText || "reconnecting";
    } else if (state === "gave_up") {
      text = "disconnected";
    } else if (state === "quitting") {
      text = "leaving";
    } else if (state === "resuming") {
      text = "resuming";
    } else if (state === "greeted" || state === "registering" || state === "idle") {
      text = "connected: choose a nick";
    } else {
      text = "connecting";
    }
    if (this.lastEvent && (state === "ready" || state === "backing_off")) text += ` · ${this.lastEvent}`;
    if (this.storageProblem) text += ` · ${this.storageProblem}`;
    if (this.status.textContent !== text) this.status.textContent = text;
    this.status.dataset.state = state;
  }

  renderUsers() {
    const sorted = [...this.people].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()) || a.localeCompare(b));
    this.userList.replaceChildren(
      ...sorted.map((nick) => {
        const item = document.createElement("li");
        item.textContent = nick;
        if (nick === this.session.nick) item.className = "me";
        return item;
      }),
    );
    this.userCount.textContent = String(sorted.length);
  }

  system(text) {
    return this.entry("system", null, "", text);
  }

  entry(kind, seq, who, text) {
    const item = document.createElement("li");
    item.className = kind;
    if (seq !== null) item.dataset.seq = String(seq);
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    item.append(time);
    if (who) {
      const name = document.createElement("span");
      name.className = "nick";
      name.textContent = who;
      item.append(name);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text; // never HTML: what others type is shown, not obeyed
    item.append(body);
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(item);
    while (this.log.childElementCount > 5000) this.log.firstElementChild.remove();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
    return item;
  }
}

new Page();

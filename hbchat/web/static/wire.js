// The lines of hbchat/1 (docs/protocol.md) as the page reads and writes them.

export const MAX_LINE = 4096;

export function parseHello(line) {
  const parts = line.split(" ");
  if (parts[0] !== "HELLO" || parts[1] !== "hbchat/1") {
    return null;
  }
  const settings = {};
  for (const part of parts.slice(2)) {
    const at = part.indexOf("=");
    if (at > 0) {
      settings[part.slice(0, at)] = part.slice(at + 1);
    }
  }
  const ping = Number(settings.ping);
  const timeout = Number(settings.timeout);
  if (!(ping > 0 && timeout > ping)) {
    return null;
  }
  return {
    ping,
    timeout,
    auth: settings.auth === "required",
    rate: settings.rate === undefined ? 100 : Number(settings.rate),
    burst: settings.burst === undefined ? 200 : Number(settings.burst),
  };
}

// "VERB a b rest of line" -> ["VERB", "a", "b", "rest of line"] with at most `count` words before the rest.
export function words(line, count) {
  const out = [];
  let rest = line;
  for (let i = 0; i < count; i += 1) {
    const at = rest.indexOf(" ");
    if (at < 0) {
      out.push(rest);
      return out;
    }
    out.push(rest.slice(0, at));
    rest = rest.slice(at + 1);
  }
  out.push(rest);
  return out;
}

export function byeHints(line) {
  let retry = null;
  let at = null;
  for (const part of line.split(" ").slice(2)) {
    if (part.startsWith("retry=")) retry = Number(part.slice(6));
    if (part.startsWith("at=")) at = Number(part.slice(3));
  }
  return { retry: Number.isFinite(retry) && retry >= 0 ? retry : null, at: Number.isFinite(at) ? at : null };
}

export function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

// A user's text as a SAY or TELL: an Error for one the server would refuse.
export function chatLine(prefix, text) {
  if (!text) throw new Error("empty message");
  if (/[\r\n]/.test(text)) throw new Error("a message is one line: no line breaks");
  const line = prefix + text;
  const size = utf8Length(line);
  if (size > MAX_LINE) throw new Error(`message too long (${size} bytes; at most ${MAX_LINE})`);
  return line;
}

// "ERR 503 cluster unavailable: <VERB> not handled" (docs/protocol.md section 8): a node of a
// cluster that cannot reach the shared chat refuses NICK, RESUME, SAY and TELL and keeps the
// connection. The page keeps each refused line and sends it again later, as hbchat-client
// does (hbchat/client/unavailable.py): which verb was refused, and how long to wait.
//
// The wait doubles with each refusal in a row, from FIRST_WAIT up to MAX_WAIT, drawn from
// its upper half (never at once, never in step with the other clients of a node), and
// starts over once a line goes through.

export const PREFIX = "cluster unavailable: ";
export const VERBS = new Set(["NICK", "RESUME", "SAY", "TELL"]);
export const FIRST_WAIT = 0.25;
export const MAX_WAIT = 5.0;

// The verb of "cluster unavailable: <VERB> not handled" (an ERR 503's text); null for any other text.
export function refusedVerb(text) {
  const suffix = " not handled";
  if (!text.startsWith(PREFIX) || !text.endsWith(suffix)) return null;
  const verb = text.slice(PREFIX.length, text.length - suffix.length);
  return VERBS.has(verb) ? verb : null;
}

// Seconds to wait after the refusals-th refusal in a row (1 for the first).
export function retryWait(refusals, random = Math.random) {
  const ceiling = Math.min(MAX_WAIT, FIRST_WAIT * 2 ** Math.max(0, Math.min(refusals - 1, 16)));
  return ceiling / 2 + random() * (ceiling / 2);
}

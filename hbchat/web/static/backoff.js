// When the page tries again (docs/protocol.md section 14): full jitter, uniform(0,
// min(30, 2^attempt)) seconds for the attempt-th retry of an outage (attempt 0 first),
// reset by a WELCOME; a server that said "BYE shutdown retry=S" is come back to after
// uniform(0, S) (or at=A: after A seconds), once.

export const CAP = 30;
export const MAX_HINT = 300;

export function fullJitter(attempt, random = Math.random) {
  return random() * Math.min(CAP, 2 ** attempt);
}

export function hinted(retry, at, random = Math.random) {
  if (at !== null && Number.isFinite(at) && at >= 0) {
    return Math.min(at, MAX_HINT);
  }
  return random() * Math.min(retry, MAX_HINT);
}

#!/usr/bin/env bash
# Measures hbchat against the performance targets (docs/performance.md) with the independent Go
# load driver in ../shared/bench (beside the project checkout), and the naive Twisted server for
# comparison. Loopback only; every run is bounded (the driver caps each at 15 min).
#
#   benchmarks/targets.sh [TARGET...]     TARGET: fanout3m flat fanout1k idle10k idle19900 sweep (default: all)
#   REPS=3 (default) runs per measurement; results: $RESULTS (default /tmp/hbbench/targets), then
#   a medians (min-max) table per target on stdout.
#
# The hbchat server is the installed `twistd` (pip install .), started as the driver's README says:
# pinned to CPU 0 with the driver on CPU 1, --ping 1 --timeout 3. The fan-out scenarios turn the
# per-connection rate limit off (--rate 0): their 4 senders send 7,500 lines/s each by design, far
# over the default 100/s. The idle ones run with the default limits (their 1 PING/s is within them).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH="${BENCH:-$HERE/../../shared/bench}"
[[ -x $BENCH/run.sh ]] || { echo "targets.sh: no shared load driver at $BENCH (set BENCH=...)" >&2; exit 2; }
TWISTD="${TWISTD:-$(command -v twistd)}"
export REPS="${REPS:-3}" RESULTS="${RESULTS:-/tmp/hbbench/targets}"
mkdir -p "$RESULTS"
HB="$TWISTD -n --pidfile= hbchat --listen tcp:\$PORT:interface=127.0.0.1 --ping 1 --timeout 3 --max-clients 20000"
HB_FANOUT="$HB --rate 0"
targets=("$@")
((${#targets[@]})) || targets=(fanout3m flat fanout1k idle10k idle19900 sweep)

run() {  # run PEER SCENARIO [ARG] with the environment given before it
  echo "== $*" >&2
  local command=$HB
  [[ $2 == idle ]] || command=$HB_FANOUT
  HBCHAT_CMD="$command" "$BENCH/run.sh" "$@" | tail -n 4
}

for target in "${targets[@]}"; do
  case $target in
    fanout3m)  DUR=20 run hbchat fanout 30000; DUR=20 run twisted_naive fanout 30000 ;;     # target 1 at 3 M deliveries/s
    flat)      DUR=30 run hbchat fanout flat; DUR=30 run twisted_naive fanout flat ;;       # target 2
    fanout1k)  DUR=20 run hbchat fanout1k 100; DUR=20 run twisted_naive fanout1k 100 ;;     # target 3
    idle10k)   DUR=10 run hbchat idle 10000; DUR=10 run twisted_naive idle 10000 ;;         # targets 4, 5, 6
    idle19900) DUR=10 run hbchat idle 19900 ;;                                              # target 4 (RTT)
    sweep)     run hbchat sweep; run twisted_naive sweep ;;                                 # target 1 (ceiling)
    *) echo "targets.sh: unknown target $target" >&2; exit 2 ;;
  esac
done
"$BENCH/run.sh" summary "$RESULTS/*.json"

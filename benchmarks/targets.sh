#!/usr/bin/env bash
# Measures hbchat against the performance targets (docs/performance.md) with the independent Go
# load driver in ../shared/bench (beside the project checkout), and the naive Twisted server for
# comparison. Loopback only; every run is bounded (the driver caps each at 15 min).
#
#   benchmarks/targets.sh [TARGET...]     TARGET: fanout3m flat fanout1k idle10k idle19900 sweep profile10k
#                                         (default: all but profile10k)
#   REPS=3 (default) runs per measurement; results: $RESULTS (default /tmp/hbbench/targets), then
#   a medians (min-max) table per target on stdout.
#
# The hbchat server is the installed `twistd` (pip install .), started as the driver's README says:
# pinned to CPU 0 with the driver on CPU 1, --ping 1 --timeout 3. The fan-out scenarios turn the
# per-connection rate limit off (--rate 0): their 4 senders send 7,500 lines/s each by design, far
# over the default 100/s. The idle ones run with the default limits (their 1 PING/s is within them).
# The heartbeat's targets (idle10k, idle19900: issue #13) measure hbchat, NATS and the naive Twisted
# server in the same session, one after the other. profile10k records py-spy's view of hbchat's CPU
# during an idle 10,000 window (py-spy is installed into TWISTD's Python for it; not a dependency).
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

profile() {  # profile N: py-spy attached to hbchat for 12 s of an idle N window; stacks to $RESULTS
  local python; python="$(dirname "$TWISTD")/python"
  "$python" -m pip install -q py-spy >&2
  local spy="$(dirname "$TWISTD")/py-spy" out="$RESULTS/hbchat-idle-$1.pyspy.txt"
  HBCHAT_CMD="$HB" REPS=1 DUR=20 "$BENCH/run.sh" hbchat idle "$1" >&2 &
  local driver=$! pid=""
  for _ in $(seq 1 120); do  # until the driver's window: the ramp (N/2000 s) and the settling
    pid=$(pgrep -f -- "--pidfile= hbchat --listen" | head -n 1) && [[ -n $pid ]] && sleep $((1 + $1 / 2000 + 6)) && break
    sleep 1
  done
  [[ -n $pid ]] && "$spy" record --nonblocking --rate 200 --format raw --duration 12 --pid "$pid" -o "$out" >&2
  wait "$driver"
  echo "profile10k: collapsed stacks in $out (flamegraph.pl or speedscope.app read them)" >&2
}

for target in "${targets[@]}"; do
  case $target in
    fanout3m)  DUR=20 run hbchat fanout 30000; DUR=20 run twisted_naive fanout 30000 ;;     # target 1 at 3 M deliveries/s
    flat)      DUR=30 run hbchat fanout flat; DUR=30 run twisted_naive fanout flat ;;       # target 2
    fanout1k)  DUR=20 run hbchat fanout1k 100; DUR=20 run twisted_naive fanout1k 100 ;;     # target 3
    idle10k)   for peer in hbchat nats twisted_naive; do DUR=10 run $peer idle 10000; done ;;  # targets 4, 5, 6
    idle19900) for peer in hbchat nats twisted_naive; do DUR=10 run $peer idle 19900; done ;;  # target 4 (RTT)
    profile10k) profile 10000 ;;
    sweep)     run hbchat sweep; run twisted_naive sweep ;;                                 # target 1 (ceiling)
    *) echo "targets.sh: unknown target $target" >&2; exit 2 ;;
  esac
done
"$BENCH/run.sh" summary "$RESULTS/*.json"

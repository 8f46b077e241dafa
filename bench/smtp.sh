#!/usr/bin/env bash
# SMTP benchmark: messages per second through Bastion's smtp listener against straight to the same sink.
#   bench/smtp.sh            (BENCH_NO_BUILD=1 to use the existing Release build; BENCH_ROUNDS=3 rounds a row)
# Knobs: BENCH_WARMUP (seconds, default 20: warm-up through Bastion, then a short pass direct, before measuring),
# BENCH_SMALL_MSGS / BENCH_LARGE_MSGS (messages per 10 KiB / 1 MiB run, default 10000 / 600: runs of several
# seconds, so JIT and connection ramp-up are a small part), BENCH_RUN_LIMIT (seconds a run may take, default 60;
# a run cut short is reported as such, never as a rate), BENCH_SPECS (rows as SIZE:SESSIONS:MESSAGES, e.g.
# "10240:10:5000" to iterate on one row).
# Load generator: postfix's smtp-source; sink: postfix's smtp-sink (the postfix package, its daemon never
# started). Two layouts (BENCH_LAYOUTS, default "pinned unpinned"), a table each: sink and Bastion pinned to core
# 0, smtp-source to core 1; then no affinity at all (the same processes, re-pinned with taskset -a -p); 10 KiB and 1 MiB messages, 10 and 100
# sessions, one message per connection (as an MX sees it). CPU per message is the server side's user+system
# time (Bastion's own for the gateway rows, smtp-sink's for the direct rows) divided by messages. Each round runs
# direct then Bastion back to back; the table gives the best rate of each and the median of the rounds' own
# ratios, which holds up better than the best rates when other work shares the machine. Bastion runs as shipped
# (its runtimeconfig: no dynamic PGO, call counting from the first call); the sink's CPU is also given for the
# Bastion rows: core 0 carries both, so the gateway's share decides the rate once smtp-source is not the bound.
# HAProxy in `mode tcp` (no parsing at all) runs each round too, pinned like Bastion: the bound of this layout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DLL="${BENCH_BASTION_DLL:-$ROOT/src/Bastion/bin/Release/net10.0/bastion.dll}"
log() { printf '[smtp-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if ! command -v smtp-source >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "smtp.sh: needs postfix (smtp-source, smtp-sink); run as root to install it" >&2; exit 1; }
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
[ "${BENCH_NO_BUILD:-0}" = 1 ] || (cd "$ROOT" && dotnet build -c Release src/Bastion -nologo -v q >/tmp/bastion-smtp-bench-build.log 2>&1)

SCRATCH=$(mktemp -d /tmp/bastion-smtp-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }
waitport() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

SINK_PORT=$(freeport)
taskset -c 0 smtp-sink -u nobody -c 127.0.0.1:"$SINK_PORT" 1024 >/dev/null 2>&1 &
SINK=$!; PIDS+=("$SINK")
waitport "$SINK_PORT"

GW_PORT=$(freeport)
ADMIN_PORT=$(freeport)
cat >"$SCRATCH/bastion.yaml" <<YAML
admin: { listen: 127.0.0.1:$ADMIN_PORT }
logging: { access: $SCRATCH/access.log }
listeners:
  - name: mail
    type: smtp
    listen: 127.0.0.1:$GW_PORT
    upstream: 127.0.0.1:$SINK_PORT
    policy: mail
    limits: { max_connections: 10000 }
    smtp: { banner: gw.bench ESMTP, max_message: 10MiB, upstream_tls: off }
policies:
  mail:
    default: deny
    rules:
      - deny: { mail_from: "*@blocked.example" }
      - allow: { rcpt_to: "*@bench.example" }
      - allow: { command: [MAIL, DATA] }
YAML
taskset -c 0 dotnet "$DLL" run -c "$SCRATCH/bastion.yaml" --no-watch >"$SCRATCH/bastion.out" 2>&1 &
GW=$!; PIDS+=("$GW")
waitport "$GW_PORT"

# The physical bound of this layout: HAProxy in `mode tcp`, a relay that parses nothing, pinned like Bastion (core 0
# with the sink). It still doubles the sink's socket work (two connections a message, every byte received and sent).
HA_PORT=$(freeport)
cat >"$SCRATCH/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$HA_PORT
  default_backend b
backend b
  server s1 127.0.0.1:$SINK_PORT
CFG
taskset -c 0 haproxy -db -f "$SCRATCH/haproxy.cfg" >"$SCRATCH/haproxy.out" 2>&1 &
HA=$!; PIDS+=("$HA")
waitport "$HA_PORT"

# run PORT SERVERPID SESSIONS SIZE MESSAGES -> "msgs/s server_cpu_us_per_msg sink_cpu_us_per_msg", or "cut" when
# smtp-source did not finish within BENCH_RUN_LIMIT seconds (or failed).
SOURCE_PIN=(taskset -c 1)
run() {
  local port=$1 pid=$2 sess=$3 size=$4 msgs=$5 t0 t1 c0 c1 s0 s1
  c0=$(cputicks "$pid"); s0=$(cputicks "$SINK"); t0=$(date +%s.%N)
  if ! "${SOURCE_PIN[@]}" timeout "${BENCH_RUN_LIMIT:-60}" smtp-source -s "$sess" -l "$size" -m "$msgs" \
      -f a@sender.example -t b@bench.example 127.0.0.1:"$port" >/dev/null 2>&1; then
    echo "cut 0 0"; return
  fi
  t1=$(date +%s.%N); c1=$(cputicks "$pid"); s1=$(cputicks "$SINK")
  awk -v m="$msgs" -v t="$(echo "$t1 - $t0" | bc -l)" -v c="$((c1 - c0))" -v s="$((s1 - s0))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.0f %.0f %.0f\n", m / t, c / hz * 1e6 / m, s / hz * 1e6 / m }'
}

# Warm-up, bounded in time and count: Bastion first (JIT tiering of the whole path, 10 KiB and 1 MiB), then the
# sink alone briefly, so that neither side's first measured run pays for starting up.
WARM=${BENCH_WARMUP:-20}
log "warm-up through Bastion (${WARM}s at most)"
warm() { taskset -c 1 timeout "$1" smtp-source -s "$2" -l "$3" -m "$4" -f a@sender.example -t b@bench.example 127.0.0.1:"$5" >/dev/null 2>&1 || true; }
warm $((WARM * 6 / 10 + 1)) 10 10240 100000 "$GW_PORT"
warm $((WARM * 2 / 10 + 1)) 100 1048576 2000 "$GW_PORT"
warm $((WARM * 2 / 10 + 1)) 100 10240 100000 "$GW_PORT"
log "warm-up direct"
warm 3 10 10240 100000 "$SINK_PORT"
warm 2 10 10240 100000 "$HA_PORT"
SMALL=${BENCH_SMALL_MSGS:-10000}; LARGE=${BENCH_LARGE_MSGS:-600}
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
SPECS=${BENCH_SPECS:-"10240:10:$SMALL 10240:100:$SMALL 1048576:10:$LARGE 1048576:100:$LARGE"}
# Layouts: "pinned" (sink and relay on core 0, smtp-source on core 1: the relay competes with the server for one
# core) and "unpinned" (no affinity, the scheduler places all three: a gateway that does not share the server's core).
for layout in ${BENCH_LAYOUTS:-pinned unpinned}; do
if [ "$layout" = unpinned ]; then
  SOURCE_PIN=()
  for p in "$SINK" "$GW" "$HA"; do taskset -a -p -c 0-1 "$p" >/dev/null; done
else
  SOURCE_PIN=(taskset -c 1)
  for p in "$SINK" "$GW" "$HA"; do taskset -a -p -c 0 "$p" >/dev/null; done
fi
echo
echo "Layout: $layout"
echo
echo "| message | sessions | direct msg/s | Bastion msg/s | ratio of best | median round ratio | sink CPU µs/msg | Bastion CPU µs/msg | sink CPU behind Bastion | HAProxy-tcp msg/s | HAProxy/direct | Bastion/HAProxy | HAProxy CPU µs/msg |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for spec in $SPECS; do
  IFS=: read -r size sess msgs <<<"$spec"
  best_d=0; best_b=0; best_h=0; cd_=0; cb=0; cs=0; ch=0; ratios=()
  for round in $(seq "${BENCH_ROUNDS:-3}"); do
    read -r d dc _ < <(run "$SINK_PORT" "$SINK" "$sess" "$size" "$msgs")
    read -r b bc bs < <(run "$GW_PORT" "$GW" "$sess" "$size" "$msgs")
    read -r h hc _ < <(run "$HA_PORT" "$HA" "$sess" "$size" "$msgs")
    log "$layout size=$size sessions=$sess round $round: direct $d msg/s ($dc µs/msg), bastion $b msg/s ($bc µs/msg, sink $bs), haproxy-tcp $h msg/s ($hc µs/msg)"
    if [ "$d" = cut ] || [ "$b" = cut ]; then log "run cut short (BENCH_RUN_LIMIT) or failed: round not counted"; continue; fi
    ratios+=("$(awk -v a="$b" -v b="$d" 'BEGIN { printf "%.2f", a / b }')")
    [ "$d" -gt "$best_d" ] && { best_d=$d; cd_=$dc; }
    [ "$b" -gt "$best_b" ] && { best_b=$b; cb=$bc; cs=$bs; }
    [ "$h" != cut ] && [ "$h" -gt "$best_h" ] && { best_h=$h; ch=$hc; }
  done
  label=$([ "$size" = 10240 ] && echo "10 KiB" || echo "1 MiB")
  ratio=$(awk -v a="$best_b" -v b="$best_d" 'BEGIN { printf "%.2fx", a / b }')
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.2fx", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
  [ "${#ratios[@]}" -gt 0 ] || { echo "| $label | $sess | cut | cut | | | | | | | | | |"; continue; }
  hd=$(awk -v a="$best_h" -v b="$best_d" 'BEGIN { printf "%.2fx", a / b }')
  bh=$(awk -v a="$best_b" -v b="$best_h" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')
  echo "| $label | $sess | $best_d | $best_b | $ratio | $median | $cd_ | $cb | $cs | $best_h | $hd | $bh | $ch |"
done
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep -c '"event":"request"' "$SCRATCH/access.log" | xargs -I{} echo "(access log: {} decision lines written during the run)"

#!/usr/bin/env bash
# SMTP benchmark: messages per second through Bastion's smtp listener against straight to the same sink.
#   bench/smtp.sh            (BENCH_NO_BUILD=1 to use the existing Release build)
# Load generator: postfix's smtp-source; sink: postfix's smtp-sink (the postfix package, its daemon never
# started). Sink and Bastion pinned to core 0, smtp-source to core 1; 10 KiB and 1 MiB messages, 10 and 100
# sessions, one message per connection (as an MX sees it). CPU per message is the server side's user+system
# time (Bastion's own for the gateway rows, smtp-sink's for the direct rows) divided by messages.
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
cat >"$SCRATCH/bastion.yaml" <<YAML
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
DOTNET_TieredPGO=1 taskset -c 0 dotnet "$DLL" run -c "$SCRATCH/bastion.yaml" --no-watch >"$SCRATCH/bastion.out" 2>&1 &
GW=$!; PIDS+=("$GW")
waitport "$GW_PORT"

# run PORT SERVERPID SESSIONS SIZE MESSAGES -> "msgs/s cpu_us_per_msg"
run() {
  local port=$1 pid=$2 sess=$3 size=$4 msgs=$5 t0 t1 c0 c1
  c0=$(cputicks "$pid"); t0=$(date +%s.%N)
  taskset -c 1 smtp-source -s "$sess" -l "$size" -m "$msgs" -f a@sender.example -t b@bench.example 127.0.0.1:"$port" >/dev/null 2>&1
  t1=$(date +%s.%N); c1=$(cputicks "$pid")
  awk -v m="$msgs" -v t="$(echo "$t1 - $t0" | bc -l)" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.0f %.0f\n", m / t, c / hz * 1e6 / m }'
}

log "warm-up through Bastion"
run "$GW_PORT" "$GW" 10 10240 3000 >/dev/null
echo "| message | sessions | direct msg/s | Bastion msg/s | ratio | sink CPU µs/msg | Bastion CPU µs/msg |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for spec in "10240 10 4000" "10240 100 4000" "1048576 10 300" "1048576 100 300"; do
  read -r size sess msgs <<<"$spec"
  best_d=0; best_b=0; cd_=0; cb=0
  for round in 1 2 3; do
    read -r d dc < <(run "$SINK_PORT" "$SINK" "$sess" "$size" "$msgs")
    read -r b bc < <(run "$GW_PORT" "$GW" "$sess" "$size" "$msgs")
    log "size=$size sessions=$sess round $round: direct $d msg/s, bastion $b msg/s"
    [ "$d" -gt "$best_d" ] && { best_d=$d; cd_=$dc; }
    [ "$b" -gt "$best_b" ] && { best_b=$b; cb=$bc; }
  done
  label=$([ "$size" = 10240 ] && echo "10 KiB" || echo "1 MiB")
  ratio=$(awk -v a="$best_b" -v b="$best_d" 'BEGIN { printf "%.2fx", a / b }')
  echo "| $label | $sess | $best_d | $best_b | $ratio | $cd_ | $cb |"
done
grep -c '"event":"request"' "$SCRATCH/access.log" | xargs -I{} echo "(access log: {} decision lines written during the run)"

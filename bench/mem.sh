#!/usr/bin/env bash
# Memory of Bastion's http-reverse under the reverse suite's load, and the CPU per request it costs (issue 14).
#   bench/mem.sh [LABEL=DLL[,VAR=VALUE...]]...
# Each variant (default: this worktree's Release build, as shipped) on a fresh process, BENCH_ROUNDS (2) rounds with
# the variants interleaved: configs/reverse.yaml in front of an nginx origin, Bastion on core 0, wrk -t1 GET /100b on
# core 1, as bench/run.sh reverse does:
#   idle     RSS 3 s after the listener is up;
#   c50      5 s warm-up, then BENCH_DURATION (7) s measured: req/s, CPU µs/req, peak RSS (VmHWM) so far;
#   c500     2 s, then BENCH_DURATION s: the same;
#   idle500  500 keep-alive connections that made one request each and wait: KiB of RSS per connection.
# VAR=VALUE pairs go to that variant's environment (DOTNET_GCgen0size=0x100000 ...). With BENCH_KEEP=1 the scratch
# folder stays (each process's smaps breakdown at its peak, and its BASTION_MEMORY_REPORT lines).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PY=/usr/bin/python3
DUR=${BENCH_DURATION:-7}
ROUNDS=${BENCH_ROUNDS:-2}
VARIANTS=("$@")
[ ${#VARIANTS[@]} -eq 0 ] && VARIANTS=("as-built=$ROOT/src/Bastion/bin/Release/net10.0/bastion.dll")

log() { printf '[mem %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
ulimit -n 20000 2>/dev/null || true

DIR=$(mktemp -d /tmp/bastion-mem.XXXXXX)
chmod 755 "$DIR"
declare -A PID=()
stop() {
  local pid=${PID[$1]:-} i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$1]"
}
cleanup() {
  local n
  for n in "${!PID[@]}"; do stop "$n"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  local i
  for ((i = 0; i < 300; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "${PID[$2]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# The origin, as bench/run.sh starts it.
mkdir -p "$DIR/www" "$DIR/t"/{b,p,f,u,s}
head -c 99 /dev/zero | tr '\0' 'x' >"$DIR/www/100b" && echo >>"$DIR/www/100b"
chmod -R a+rX "$DIR/www" "$DIR/t"
ORIGIN=$(free_port)
cat >"$DIR/origin.conf" <<EOF
worker_processes 1; daemon off; pid $DIR/origin.pid; error_log $DIR/origin.err warn;
events { worker_connections 8192; }
http {
  client_body_temp_path $DIR/t/b; proxy_temp_path $DIR/t/p; fastcgi_temp_path $DIR/t/f;
  uwsgi_temp_path $DIR/t/u; scgi_temp_path $DIR/t/s;
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN backlog=4096; root $DIR/www; }
}
EOF
setsid taskset -c 0 nginx -e "$DIR/origin.err" -p "$DIR" -c "$DIR/origin.conf" >"$DIR/origin.out" 2>&1 </dev/null &
PID[origin]=$!
wait_port "$ORIGIN" origin || { echo "origin did not start" >&2; exit 1; }

# wrk on core 1; sets REQS (2xx/3xx responses) and RPS.
wrk_run() { # PORT CONNS SECONDS
  local line
  line=$(BENCH_PATH=/100b BENCH_HOST="127.0.0.1:$1" timeout $(($3 + 30)) taskset -c 1 wrk -t1 -c"$2" -d"$3s" --timeout 5s \
    -s "$HERE/lua/bench.lua" "http://127.0.0.1:$1/" 2>&1 | grep '^BENCH_RESULT' || true)
  eval "local $(sed 's/^BENCH_RESULT //; s/\([a-z0-9_]\+\)=/w_\1=/g' <<<"$line")"
  REQS=$((w_requests - w_status))
  RPS=$(awk -v r="$REQS" -v d="$w_duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
}

HZ=$(getconf CLK_TCK)
printf '| variant | round | idle RSS MiB | c50 req/s | c50 CPU µs/req | c50 peak MiB | c500 req/s | c500 CPU µs/req | c500 peak MiB | idle conn KiB | threads |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for ((r = 1; r <= ROUNDS; r++)); do
  for ((v = 0; v < ${#VARIANTS[@]}; v++)); do
    # Interleaved: every other round runs the variants in reverse order.
    i=$v; [ $((r % 2)) = 0 ] && i=$((${#VARIANTS[@]} - 1 - v))
    spec=${VARIANTS[$i]}; label=${spec%%=*}; rest=${spec#*=}; dll=${rest%%,*}; envs=()
    [ "$rest" != "$dll" ] && IFS=, read -r -a envs <<<"${rest#*,}"
    port=$(free_port); tag="$label-$r"
    BENCH_DIR=$DIR BASTION_PORT=$port ORIGIN_PORT=$ORIGIN \
      envsubst '${BENCH_DIR} ${BASTION_PORT} ${ORIGIN_PORT}' <"$HERE/configs/reverse.yaml" >"$DIR/$tag.yaml"
    env BASTION_MEMORY_REPORT="$DIR/$tag.gc" "${envs[@]}" setsid taskset -c 0 dotnet "$dll" run -c "$DIR/$tag.yaml" >"$DIR/$tag.out" 2>&1 </dev/null &
    PID[b]=$!
    wait_port "$port" b || { log "$tag did not start: $(tail -c 300 "$DIR/$tag.out")"; stop b; continue; }
    pid=${PID[b]}
    sleep 3
    idle=$(status_kib "$pid" VmRSS)
    $PY "$HERE/tools/smaps.py" "$pid" --files >"$DIR/$tag.idle.smaps"; tail -n1 "$DIR/$tag.gc" >>"$DIR/$tag.idle.smaps" 2>/dev/null || true
    log "$tag: idle $((idle / 1024)) MiB; c50"
    wrk_run "$port" 50 5
    t0=$(ticks "$pid"); wrk_run "$port" 50 "$DUR"; t1=$(ticks "$pid")
    rps50=$RPS; cpu50=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v u="$REQS" 'BEGIN { printf "%.1f", d * 1e6 / hz / u }')
    peak50=$(status_kib "$pid" VmHWM)
    $PY "$HERE/tools/smaps.py" "$pid" --files >"$DIR/$tag.c50.smaps"; tail -n1 "$DIR/$tag.gc" >>"$DIR/$tag.c50.smaps" 2>/dev/null || true
    log "$tag: c500"
    wrk_run "$port" 500 2
    t0=$(ticks "$pid"); wrk_run "$port" 500 "$DUR"; t1=$(ticks "$pid")
    rps500=$RPS; cpu500=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v u="$REQS" 'BEGIN { printf "%.1f", d * 1e6 / hz / u }')
    peak500=$(status_kib "$pid" VmHWM)
    $PY "$HERE/tools/smaps.py" "$pid" --files >"$DIR/$tag.c500.smaps"; tail -n1 "$DIR/$tag.gc" >>"$DIR/$tag.c500.smaps" 2>/dev/null || true
    # Idle keep-alive connections: RSS before and with 500 of them open.
    log "$tag: idle connections"
    before=$(status_kib "$pid" VmRSS)
    coproc IDLE { $PY "$HERE/tools/idleconns.py" "$port" 500 /100b "127.0.0.1:$port"; }
    read -r _ n <&"${IDLE[0]}" || n=0
    sleep 2
    with=$(status_kib "$pid" VmRSS)
    $PY "$HERE/tools/smaps.py" "$pid" >"$DIR/$tag.idle500.smaps"; tail -n1 "$DIR/$tag.gc" >>"$DIR/$tag.idle500.smaps" 2>/dev/null || true
    threads=$(ls "/proc/$pid/task" | wc -l)
    kill "$IDLE_PID" 2>/dev/null || true; wait "$IDLE_PID" 2>/dev/null || true
    perconn=$(awk -v a="$before" -v b="$with" -v n="$n" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }')
    stop b
    mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    printf '| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$r" "$(mib "$idle")" "$rps50" "$cpu50" \
      "$(mib "$peak50")" "$rps500" "$cpu500" "$(mib "$peak500")" "$perconn" "$threads"
  done
done
log "load: $(cut -d' ' -f1-3 /proc/loadavg)"

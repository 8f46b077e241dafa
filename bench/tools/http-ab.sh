#!/usr/bin/env bash
# A/B of two Bastion builds (or settings) on the plain HTTP/1.1 path, for a loaded machine: the figures that load
# moves least. Both gateways run side by side (core 0, with one nginx origin) with the benchmark's configuration
# (configs/forward.yaml or reverse.yaml, access log on), wrk -t1 -c50 GET /100b (core 1) alternates between them
# (A B, B A, ...), and each run reports req/s and the gateway's CPU µs per request from /proc/PID/stat; then perf stat
# counts system calls and context switches per request of each.
#   bench/tools/http-ab.sh forward|reverse DIR_A DIR_B [PAIRS=6] [SECONDS=5]
# DIR_x: a folder with bastion.dll (copy src/Bastion/bin/Release/net10.0 away before rebuilding).
# AB_ENV_A / AB_ENV_B: runtime variables for one side only. AB_WARMUP (s, 10). AB_CONNS (50). AB_PERF=0 skips perf stat.
# AB_ALLOC=1: each side also reports managed bytes allocated per request (BASTION_MEMORY_REPORT; load does not move it).
#   Where they come from: bench/tools/alloctrace (an EventPipe allocation trace of one side, grouped by stack).
# AB_RECORD=FILE: then `perf record -g` of side A over one more run into FILE (give A DOTNET_PerfMapEnabled=1 for symbols).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SUITE=$1 A=$2 B=$3 PAIRS=${4:-6} SECS=${5:-5} WARM=${AB_WARMUP:-10} CONNS=${AB_CONNS:-50}
case $SUITE in forward | reverse) ;; *) echo "suite: forward or reverse" >&2; exit 2 ;; esac
DIR=$(mktemp -d /tmp/bastion-http-ab.XXXXXX)
chmod 755 "$DIR"
declare -A PID=() PORT=()
cleanup() {
  local n i
  for n in "${!PID[@]}"; do kill -TERM -- "-${PID[$n]}" 2>/dev/null || true; done
  # Gone before their folder is: wait for each (5 s at most), not a fixed pause.
  for n in "${!PID[@]}"; do for ((i = 0; i < 100; i++)); do kill -0 "${PID[$n]}" 2>/dev/null || break; sleep 0.05; done; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13, $12 }'; }

cd "$DIR"
mkdir -p www t/{b,p,f,u,s}
head -c 99 /dev/zero | tr '\0' 'x' >www/100b && echo >>www/100b
chmod -R a+rX "$DIR"
ORIGIN=$(freeport)
cat >origin.conf <<EOF
worker_processes 1; daemon off; pid $DIR/origin.pid; error_log $DIR/origin.err warn;
events { worker_connections 8192; }
http { client_body_temp_path $DIR/t/b; proxy_temp_path $DIR/t/p; fastcgi_temp_path $DIR/t/f; uwsgi_temp_path $DIR/t/u; scgi_temp_path $DIR/t/s;
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN backlog=4096; root $DIR/www; } }
EOF
setsid taskset -c 0 nginx -e "$DIR/origin.err" -p "$DIR" -c "$DIR/origin.conf" >origin.out 2>&1 </dev/null & PID[origin]=$!
waitport "$ORIGIN"
cp "$HERE/../configs/blocked-domains.txt" "$DIR/" 2>/dev/null || true

for side in A B; do
  envvar=AB_ENV_$side
  PORT[$side]=$(freeport)
  mkdir -p "$DIR/$side"
  cp blocked-domains.txt "$DIR/$side/" 2>/dev/null || true
  BENCH_DIR=$DIR/$side BASTION_PORT=${PORT[$side]} ORIGIN_PORT=$ORIGIN \
    envsubst '${BENCH_DIR} ${BASTION_PORT} ${ORIGIN_PORT}' <"$HERE/../configs/$SUITE.yaml" >"$side.yaml"
  # shellcheck disable=SC2086
  alloc=; [ "${AB_ALLOC:-0}" = 1 ] && alloc=BASTION_MEMORY_REPORT=$DIR/mem-$side.txt
  setsid taskset -c 0 env $alloc ${!envvar:-} dotnet "${!side}/bastion.dll" run -c "$DIR/$side.yaml" >"$side.out" 2>&1 </dev/null & PID[$side]=$!
  waitport "${PORT[$side]}" || { cat "$side.out" >&2; exit 1; }
done

run() { # SIDE SECONDS -> "req_per_s cpu_us_per_req p99_ms user_us_per_req"
  local t0 t1 u0 u1 line path host
  if [ "$SUITE" = forward ]; then path=http://127.0.0.1:$ORIGIN/100b host=127.0.0.1:$ORIGIN
  else path=/100b host=127.0.0.1:${PORT[$1]}; fi
  read -r t0 u0 < <(ticks "${PID[$1]}")
  line=$(BENCH_PATH=$path BENCH_HOST=$host taskset -c 1 wrk -t1 -c"$CONNS" -d"$2s" --timeout 5s -s "$HERE/../lua/bench.lua" \
    "http://127.0.0.1:${PORT[$1]}/" 2>&1 | grep '^BENCH_RESULT')
  read -r t1 u1 < <(ticks "${PID[$1]}")
  eval "local $(sed 's/^BENCH_RESULT //; s/\([a-z0-9_]\+\)=/w_\1=/g' <<<"$line")"
  awk -v r="$w_requests" -v s="$w_status" -v us="$w_duration_us" -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v p99="$w_p99_us" -v u=$((u1 - u0)) \
    'BEGIN { ok = r - s; printf "%.0f %.2f %.2f %.2f\n", ok / (us / 1e6), (ok > 0 ? d * 1e6 / hz / ok : 0), p99 / 1000, (ok > 0 ? u * 1e6 / hz / ok : 0) }'
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run A "$WARM" >/dev/null; run B "$WARM" >/dev/null
for ((i = 0; i < PAIRS; i++)); do
  order=(A B); [ $((i % 2)) = 1 ] && order=(B A)
  for s in "${order[@]}"; do read -r rps cpu p99 usr < <(run "$s" "$SECS"); echo "$s $rps $cpu $p99 $usr" | tee -a runs; done
done
for s in A B; do
  cpu=$(awk -v s=$s '$1 == s { print $3 }' runs | sort -n | tr '\n' ' ')
  rps=$(awk -v s=$s '$1 == s { print $2 }' runs | sort -n | tr '\n' ' ')
  usr=$(awk -v s=$s '$1 == s { print $5 }' runs | sort -n | tr '\n' ' ')
  echo "$cpu|$rps|$usr" | awk -F'|' -v s=$s '{ n = split($1, c, " "); split($2, r, " "); split($3, u, " ")
    printf "%s: CPU µs/req median %.2f (%.2f-%.2f), user %.2f, req/s median %d, %d runs\n", s, c[int((n + 1) / 2)], c[1], c[n], u[int((n + 1) / 2)], r[int((n + 1) / 2)], n }'
done
# System calls and context switches per request (load does not move these).
if [ "${AB_PERF:-1}" = 1 ]; then
  for s in A B; do
    perf stat -x, -e 'raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,context-switches' \
      -p "${PID[$s]}" -o "perf-$s.txt" -- sleep "$SECS" & perf=$!
    read -r rps _ < <(run "$s" "$SECS"); wait "$perf"
    echo "$s per request: $(awk -F, -v o=$((rps * SECS)) '/^[0-9]/ { sub(/^(raw_)?syscalls:sys_enter_?/, "", $3); printf "%s %.2f  ", ($3 == "" ? "syscalls" : $3), $1 / o }' "perf-$s.txt")"
  done
fi
# Managed allocation per request: the report's allocated_kib (one line a second) before and after a run.
if [ "${AB_ALLOC:-0}" = 1 ]; then
  # The allocated total from the report's next line (written once a second), waited for with a 5 s deadline.
  nextalloc() {
    local f="$DIR/mem-$1.txt" n i
    n=$(wc -l <"$f")
    for ((i = 0; i < 100; i++)); do [ "$(wc -l <"$f")" -gt "$n" ] && break; sleep 0.05; done
    tail -n1 "$f" | sed 's/.*allocated_kib=\([0-9]*\).*/\1/'
  }
  for s in A B; do
    a0=$(nextalloc "$s")
    read -r rps _ < <(run "$s" "$SECS")
    a1=$(nextalloc "$s")
    echo "$s allocated per request: $(awk -v a="$a0" -v b="$a1" -v n=$((rps * SECS)) 'BEGIN { printf "%.0f bytes", (b - a) * 1024 / n }')"
  done
fi
if [ -n "${AB_RECORD:-}" ]; then
  perf record -F 1999 -g -p "${PID[A]}" -o "$AB_RECORD" -- sleep "$SECS" 2>/dev/null & perf=$!
  read -r rps cpu _ < <(run A "$SECS"); wait "$perf"
  echo "recorded A: $rps req/s, $cpu µs/req into $AB_RECORD"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

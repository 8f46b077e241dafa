#!/usr/bin/env bash
# Where one plain HTTP/1.1 request's CPU goes, per thread and user/kernel, in the benchmark's layout (one nginx
# origin and the proxy on core 0, wrk -t1 -c50 GET /100b on core 1): each Bastion thread's user and system µs per
# request with its voluntary/involuntary context switches, and the origin's µs per request; or the same for nginx as
# the reverse proxy (the peer of the reverse suite). It bounds what any proxy can reach on a machine: with the origin
# on the proxy's core, req/s = 1 / (origin + proxy) per request, so a proxy's kernel time alone sets a ceiling.
#   bench/tools/http-split.sh reverse|forward DLL_DIR [SECONDS=10]
#   bench/tools/http-split.sh nginx [SECONDS=10]
# SPLIT_ENV="VAR=x ...": runtime variables for the gateway. SPLIT_RECORD=FILE: perf record -g of the gateway over the
# measured run (add DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 for managed symbols). SPLIT_STAT=FILE:
# perf stat of system calls and context switches over it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=$1
case $MODE in
  reverse | forward) DLL=$2 SECS=${3:-10} ;;
  nginx) DLL="" SECS=${2:-10} ;;
  *) echo "mode: reverse, forward or nginx" >&2; exit 2 ;;
esac
W=$(mktemp -d /tmp/bastion-split.XXXXXX)
chmod 755 "$W"
cd "$W"
mkdir -p www t/{b,p,f,u,s}
head -c 99 /dev/zero | tr '\0' 'x' >www/100b && echo >>www/100b
chmod -R a+rX www
declare -a PIDS=()
cleanup() {
  local p i
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
nginx_conf() { # NAME BODY
  printf '%s\n' "worker_processes 1; daemon off; pid $W/$1.pid; error_log $W/$1.err warn; events { worker_connections 8192; }" \
    "http { client_body_temp_path $W/t/b; proxy_temp_path $W/t/p; fastcgi_temp_path $W/t/f; uwsgi_temp_path $W/t/u; scgi_temp_path $W/t/s;" \
    "access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000; $2 }" >"$1.conf"
}
ORIGIN=$(freeport) PORT=$(freeport)
nginx_conf origin "server { listen 127.0.0.1:$ORIGIN backlog=4096; root $W/www; }"
setsid taskset -c 0 nginx -e "$W/origin.err" -p "$W" -c "$W/origin.conf" >/dev/null 2>&1 </dev/null & PIDS+=($!)
ORIGIN_MASTER=$!
waitport "$ORIGIN"
if [ "$MODE" = nginx ]; then
  nginx_conf proxy "upstream o { server 127.0.0.1:$ORIGIN; keepalive 128; }
    server { listen 127.0.0.1:$PORT backlog=4096; location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
  setsid taskset -c 0 nginx -e "$W/proxy.err" -p "$W" -c "$W/proxy.conf" >/dev/null 2>&1 </dev/null & PIDS+=($!)
  PROXY_MASTER=$!
  waitport "$PORT"
  PROXY=$(pgrep -P "$PROXY_MASTER" | head -1)
  SUITE=reverse
else
  cp "$HERE/../configs/blocked-domains.txt" . 2>/dev/null || true
  BENCH_DIR=$W BASTION_PORT=$PORT ORIGIN_PORT=$ORIGIN \
    envsubst '${BENCH_DIR} ${BASTION_PORT} ${ORIGIN_PORT}' <"$HERE/../configs/$MODE.yaml" >bastion.yaml
  # shellcheck disable=SC2086
  setsid taskset -c 0 env ${SPLIT_ENV:-} dotnet "$DLL/bastion.dll" run -c "$W/bastion.yaml" >bastion.out 2>&1 </dev/null & PIDS+=($!)
  PROXY=$!
  waitport "$PORT" || { cat bastion.out >&2; exit 1; }
  SUITE=$MODE
fi
ORIGIN_WORKER=$(pgrep -P "$ORIGIN_MASTER" | head -1)
if [ "$SUITE" = forward ]; then path=http://127.0.0.1:$ORIGIN/100b host=127.0.0.1:$ORIGIN
else path=/100b host=127.0.0.1:$PORT; fi
load() { BENCH_PATH=$path BENCH_HOST=$host taskset -c 1 wrk -t1 -c50 -d"$1s" --timeout 5s -s "$HERE/../lua/bench.lua" "http://127.0.0.1:$PORT/"; }
load 5 >/dev/null # warm-up
snap() { # one line per thread: "TID NAME|user sys voluntary involuntary"
  local t
  for t in /proc/"$PROXY"/task/*; do
    printf '%s %s|%s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t/comm")" "$(sed 's/^.*) //' "$t/stat" | awk '{ print $12, $13 }')" \
      "$(awk '/^voluntary_ctxt/ { print $2 }' "$t/status")" "$(awk '/^nonvoluntary_ctxt/ { print $2 }' "$t/status")"
  done | sort
}
PERFS=()
[ -n "${SPLIT_RECORD:-}" ] && { perf record -F 2999 -g -p "$PROXY" -o "$SPLIT_RECORD" -- sleep "$SECS" 2>/dev/null & PERFS+=($!); }
[ -n "${SPLIT_STAT:-}" ] && { perf stat -x, -o "$SPLIT_STAT" -e raw_syscalls:sys_enter,context-switches,syscalls:sys_enter_epoll_wait \
  -p "$PROXY" -- sleep "$SECS" 2>/dev/null & PERFS+=($!); }
snap >s0; o0=$(ticks "$ORIGIN_WORKER")
line=$(load "$SECS" | grep '^BENCH_RESULT')
snap >s1; o1=$(ticks "$ORIGIN_WORKER")
[ ${#PERFS[@]} = 0 ] || wait "${PERFS[@]}"
eval "$(sed 's/^BENCH_RESULT //; s/\([a-z0-9_]\+\)=/w_\1=/g' <<<"$line")"
# shellcheck disable=SC2154
ok=$((w_requests - w_status))
hz=$(getconf CLK_TCK)
echo "$MODE: $ok requests in ${SECS}s ($((ok / SECS)) req/s, p50 $((w_p50_us / 1000)).$(((w_p50_us % 1000) / 100)) ms, p99 $((w_p99_us / 1000)).$(((w_p99_us % 1000) / 100)) ms), load $(cut -d' ' -f1 /proc/loadavg)"
awk -v r="$ok" -v d=$((o1 - o0)) -v hz="$hz" 'BEGIN { printf "  origin nginx worker             total %6.2f µs/req\n", d * 1e6 / hz / r }'
join -t'|' s0 s1 | awk -F'|' -v r="$ok" -v hz="$hz" '
  { split($2, a, " "); split($3, b, " "); u = (b[1] - a[1]) * 1e6 / hz / r; s = (b[2] - a[2]) * 1e6 / hz / r
    vc = (b[3] - a[3]) / r; nv = (b[4] - a[4]) / r; U += u; S += s
    if (u + s > 0.05) printf "  %-30s user %6.2f sys %6.2f µs/req, context switches %.3f voluntary %.3f involuntary\n", $1, u, s, vc, nv }
  END { printf "  proxy, all threads              user %6.2f sys %6.2f total %6.2f µs/req\n", U, S, U + S }'

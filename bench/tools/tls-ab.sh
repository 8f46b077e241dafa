#!/usr/bin/env bash
# A/B of two Bastion builds (or settings) on the inspected keep-alive path, for a loaded machine: the figures that
# load moves least. Both gateways run side by side (core 0, with one nginx HTTPS origin), tlsbench (16 threads,
# core 1) alternates between them (A B, B A, ...), and each run reports the gateway's CPU µs per request from
# /proc/PID/stat; then perf stat counts system calls and context switches per request of each.
#   bench/tools/tls-ab.sh DIR_A DIR_B [PAIRS=8] [SECONDS=4]
# DIR_x: a folder with bastion.dll (copy src/Bastion/bin/Release/net10.0 away before rebuilding).
# AB_ENV_A / AB_ENV_B: runtime variables for one side only ("DOTNET_TieredPGO=1"); AB_ACCESS_A / AB_ACCESS_B: its
# access log (a file in the scratch folder by default; "off" to measure the log's share). AB_WARMUP (s, 30).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
A=$1 B=$2 PAIRS=${3:-8} SECS=${4:-4} WARM=${AB_WARMUP:-30}
DIR=$(mktemp -d /tmp/bastion-tls-ab.XXXXXX)
chmod 755 "$DIR"
declare -A PID=() PORT=()
cleanup() { for n in "${!PID[@]}"; do kill -TERM -- "-${PID[$n]}" 2>/dev/null || true; done; sleep 0.5; rm -rf "$DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

cd "$DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=AB Origin CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -keyout origin-ca.key -out origin-ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout origin.key -out origin.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >origin.ext
openssl x509 -req -in origin.csr -CA origin-ca.pem -CAkey origin-ca.key -CAcreateserial -days 30 -extfile origin.ext -out origin.crt 2>/dev/null
mkdir -p www t/{b,p,f,u,s}
head -c 99 /dev/zero | tr '\0' 'x' >www/100b && echo >>www/100b
chmod -R a+rX "$DIR"
ORIGIN=$(freeport)
cat >origin.conf <<EOF
worker_processes 1; daemon off; pid $DIR/origin.pid; error_log $DIR/origin.err warn;
events { worker_connections 8192; }
http { client_body_temp_path $DIR/t/b; proxy_temp_path $DIR/t/p; fastcgi_temp_path $DIR/t/f; uwsgi_temp_path $DIR/t/u; scgi_temp_path $DIR/t/s;
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN ssl backlog=4096; ssl_certificate $DIR/origin.crt; ssl_certificate_key $DIR/origin.key; root $DIR/www; } }
EOF
setsid taskset -c 0 nginx -e "$DIR/origin.err" -p "$DIR" -c "$DIR/origin.conf" >origin.out 2>&1 </dev/null & PID[origin]=$!
waitport "$ORIGIN"
gcc -O2 -pthread -o tlsbench "$HERE/tlsbench.c" -lssl -lcrypto
dotnet "$A/bastion.dll" ca init "$DIR/ca" >/dev/null

# The configuration of bench/tls.sh.
. "$HERE/tls-bastion.sh"
for side in A B; do
  dll=${!side}/bastion.dll envvar=AB_ENV_$side accvar=AB_ACCESS_$side
  PORT[$side]=$(freeport)
  bastion_tls_yaml "${PORT[$side]}" "$DIR/ca" "$DIR/origin-ca.pem" "${!accvar:-$DIR/$side-access.log}" >"$side.yaml"
  # shellcheck disable=SC2086
  setsid taskset -c 0 env ${!envvar:-} dotnet "$dll" run -c "$DIR/$side.yaml" --no-watch >"$side.out" 2>&1 </dev/null & PID[$side]=$!
  waitport "${PORT[$side]}" || { cat "$side.out" >&2; exit 1; }
done

run() { # SIDE SECONDS -> "ok cpu_us_per_req"
  local t0 t1 line ok
  t0=$(ticks "${PID[$1]}")
  line=$(taskset -c 1 ./tlsbench "${PORT[$1]}" localhost "$ORIGIN" /100b ca/ca.crt 16 "$2" keepalive | grep '^TLSBENCH')
  t1=$(ticks "${PID[$1]}")
  ok=$(echo "$line" | tr ' ' '\n' | awk -F= '$1 == "ok" { print $2 }')
  awk -v o="$ok" -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$2" 'BEGIN { printf "%.0f %.1f\n", o / s, (o > 0 ? d * 1e6 / hz / o : 0) }'
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run A "$WARM" >/dev/null; run B "$WARM" >/dev/null
for ((i = 0; i < PAIRS; i++)); do
  order=(A B); [ $((i % 2)) = 1 ] && order=(B A)
  for s in "${order[@]}"; do read -r rps cpu < <(run "$s" "$SECS"); echo "$s $rps $cpu" | tee -a runs; done
done
for s in A B; do
  cpu=$(awk -v s=$s '$1 == s { print $3 }' runs | sort -n | tr '\n' ' ')
  rps=$(awk -v s=$s '$1 == s { print $2 }' runs | sort -n | tr '\n' ' ')
  echo "$cpu|$rps" | awk -F'|' -v s=$s '{ n = split($1, c, " "); split($2, r, " ")
    printf "%s: CPU µs/req median %.1f (%.1f-%.1f), req/s median %d, %d runs\n", s, c[int((n + 1) / 2)], c[1], c[n], r[int((n + 1) / 2)], n }'
done
# System calls and context switches per request (load does not move these).
for s in A B; do
  perf stat -x, -e 'raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,context-switches' \
    -p "${PID[$s]}" -o "perf-$s.txt" -- sleep "$SECS" & perf=$!
  read -r rps _ < <(run "$s" "$SECS"); wait "$perf"
  echo "$s per request: $(awk -F, -v o=$((rps * SECS)) '/^[0-9]/ { sub(/^(raw_)?syscalls:sys_enter_?/, "", $3); printf "%s %.2f  ", ($3 == "" ? "syscalls" : $3), $1 / o }' "perf-$s.txt")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Bastion benchmark harness. See bench/README.md.
#   bench/run.sh [--quick] [forward|reverse|tcp|ftp|warmup|all]...
# Installs (Debian, when missing) only: nginx haproxy squid tinyproxy dante-server wrk socat curl gcc python3
# vsftpd ftp-proxy.
# Everything listens on 127.0.0.1, servers pinned to core 0, load generators to core 1; all
# processes it starts are stopped on exit (trap), and its scratch folder removed.
# Environment: BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS (override the suite's defaults),
# BENCH_NO_BUILD=1 (use the existing Release build), BENCH_BASTION_DLL (run that bastion.dll instead),
# BENCH_KEEP=1 (keep the scratch folder).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DLL="${BENCH_BASTION_DLL:-$ROOT/src/Bastion/bin/Release/net10.0/bastion.dll}"
PY=/usr/bin/python3
QUICK=0
SUITES=()

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    forward | reverse | tcp | ftp | warmup) SUITES+=("$a") ;;
    all) SUITES+=(forward reverse tcp ftp) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$a'" >&2; usage >&2; exit 2 ;;
  esac
done
[ ${#SUITES[@]} -eq 0 ] && SUITES=(forward reverse tcp ftp)

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------- packages, limits, build
PKGS=(nginx haproxy squid tinyproxy dante-server wrk socat curl gcc python3 vsftpd ftp-proxy)
ensure_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    # squid-openssl (bench/tls.sh's ssl-bump) is the same Squid built with OpenSSL: it stands in for squid.
    [ "$p" = squid ] && dpkg-query -W -f='${Status}' squid-openssl 2>/dev/null | grep -q 'install ok installed' && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "run.sh: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}
ensure_packages

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

BASTION_OK=1
BASTION_WHY="not built"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "building Bastion (Release)"
  if ! (cd "$ROOT" && dotnet build -c Release src/Bastion -nologo -v q >/tmp/bastion-bench-build.log 2>&1); then
    log "Bastion build failed (see /tmp/bastion-bench-build.log); its rows will say so"
    BASTION_OK=0
    BASTION_WHY="build failed"
  fi
fi
[ -f "$DLL" ] || { BASTION_OK=0; BASTION_WHY="not built"; }

# ---------------------------------------------------------------- scratch folder, processes
DIR=$(mktemp -d /tmp/bastion-bench.XXXXXX)
chmod 755 "$DIR"
declare -A PID=()

stop_server() { # NAME: TERM the process group, KILL it after 5 s
  local name=$1 pid=${PID[$1]:-} i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}

cleanup() {
  local n
  for n in "${!PID[@]}"; do stop_server "$n"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a server on core 0 in its own process group (setsid does not fork here: a background
# child of a script is no group leader), so that stop_server and peak_rss see all its children.
start_server() { # NAME CMD...
  local name=$1; shift
  setsid taskset -c 0 "$@" >"$DIR/$name.out" 2>&1 </dev/null &
  PID[$name]=$!
  disown "$!" # no job notices ("Aborted") from a server that dies; stop_server polls instead

}

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # PORT NAME [SECONDS]: 0 when listening, 1 when the server died or took too long
  local port=$1 name=$2 secs=${3:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "${PID[$name]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

peak_rss_kib() { # NAME: sum of VmHWM over the server's process group
  local pid=${PID[$1]:-} total=0 p v
  [ -n "$pid" ] || { echo 0; return; }
  for p in $(ps -e -o pid=,pgid= | awk -v g="$pid" '$2 == g { print $1 }'); do
    v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

CLK_TCK=$(getconf CLK_TCK)
set_affinity() { # NAME CPUS: every thread of every process in the server's group (new children inherit it)
  local pid=${PID[$1]:-} p
  [ -n "$pid" ] || return 0
  for p in $(ps -e -o pid=,pgid= | awk -v g="$pid" '$2 == g { print $1 }'); do taskset -a -p -c "$2" "$p" >/dev/null 2>&1 || true; done
}

cpu_ticks() { # NAME: utime+stime (+ reaped children's) summed over the server's process group
  local pid=${PID[$1]:-}
  [ -n "$pid" ] || { echo 0; return; }
  ps -e -o pid=,pgid= | awk -v g="$pid" '$2 == g { print $1 }' | while read -r p; do
    # fields after the ")" of comm: state is $1, utime $12, stime $13, cutime $14, cstime $15
    sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || true
  done | awk '{ t += $1 } END { print t + 0 }'
}

# Runs a load generator against server NAME and sets R_CPU: the server's CPU time per unit of
# work (µs per request or connection; ms per GiB for MiB/s). Unlike req/s, this barely moves
# when other work on the machine steals the server's core.
measure() { # NAME MS_PER_GIB(0/1) CMD...
  local name=$1 gib=$2 t0 t1; shift 2
  R_CPU=""
  t0=$(cpu_ticks "$name")
  "$@" || true
  t1=$(cpu_ticks "$name")
  [ -n "${R_UNITS:-}" ] && [ -n "$R_VALUE" ] && [ -n "${PID[$name]:-}" ] || return 0
  R_CPU=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v u="$R_UNITS" -v g="$gib" \
    'BEGIN { us = d * 1e6 / hz; if (u <= 0) exit; if (g == 1) printf "%.0f", us / 1000 / u; else printf "%.1f", us / u }')
}

# ---------------------------------------------------------------- results
META="$DIR/meta.tsv"
RECORDS="$DIR/records.tsv"
record() { # TABLE CONTENDER IS_REF METRIC VALUE P50_MS P99_MS RSS_KIB ERRORS CPU NOTE
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RECORDS"
}

write_meta() { # SUITE
  local cpu kernel
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  kernel=$(uname -r)
  {
    printf 'title\tBastion benchmark: %s suite%s\n' "$1" "$([ $QUICK = 1 ] && echo ' (quick smoke run)' || true)"
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'machine\t%s cores, %s, kernel %s\n' "$(nproc)" "$cpu" "$kernel"
    printf 'bastion\t%s (.NET %s)\n' "${BENCH_BASTION_DLL:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')}" "$(dotnet --version 2>/dev/null || echo '?')"
    printf 'peers\t%s\n' "$(peer_versions)"
    printf 'method\tservers (and the nginx origin) pinned to core 0, load generator to core 1; %s\n' "$2"
    printf 'load average before the suite\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$META"
}

peer_versions() {
  local v=()
  v+=("nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')")
  v+=("haproxy $(haproxy -v 2>/dev/null | awk 'NR==1 { print $3 }')")
  v+=("squid $(squid -v 2>/dev/null | awk 'NR==1 { print $4 }')")
  v+=("tinyproxy $(tinyproxy -v 2>&1 | awk '{ print $2 }')")
  v+=("dante $(dpkg-query -W -f='${Version}' dante-server 2>/dev/null)")
  v+=("socat $(socat -V 2>/dev/null | awk '/socat version/ { print $3 }')")
  v+=("wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)")
  v+=("vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null)")
  v+=("ftp-proxy $(dpkg-query -W -f='${Version}' ftp-proxy 2>/dev/null)")
  local IFS=','
  echo "${v[*]}" | sed 's/,/, /g'
}

finish_suite() { # SUITE: write the markdown table, print it
  local name=$1 out
  printf 'load average after the suite\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
  mkdir -p "$HERE/results"
  out="$HERE/results/$(date -u +%Y-%m-%d-%H%M)-$name$([ $QUICK = 1 ] && echo -quick || true).md"
  $PY "$HERE/tools/report.py" "$META" "$RECORDS" >"$out"
  cat "$out"
  log "wrote ${out#"$ROOT"/}"
  rm -f "$RECORDS" "$META"
}

# ---------------------------------------------------------------- origin and peers
ORIGIN=""
start_origin() { # [BIG_FILE_MIB]
  mkdir -p "$DIR/www" "$DIR/t"/{b,p,f,u,s}
  head -c 99 /dev/zero | tr '\0' 'x' >"$DIR/www/100b" && echo >>"$DIR/www/100b"
  head -c 1048576 /dev/urandom >"$DIR/www/1m"
  [ -n "${1:-}" ] && truncate -s "$((${1} * 1048576))" "$DIR/www/big"
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
  start_server origin nginx -e "$DIR/origin.err" -p "$DIR" -c "$DIR/origin.conf"
  wait_port "$ORIGIN" origin || { cat "$DIR/origin.err" "$DIR/origin.out" >&2; echo "origin nginx did not start" >&2; exit 1; }
}

# Each start_* sets PORT_<name> (and returns 1 when the server did not come up).
declare -A PORT=()

start_squid() {
  local p; p=$(free_port); PORT[squid]=$p
  cat >"$DIR/squid.conf" <<EOF
http_port 127.0.0.1:$p
http_access allow localhost
http_access deny all
cache deny all
access_log none
cache_store_log none
cache_log /dev/null
pid_filename $DIR/squid.pid
coredump_dir $DIR
netdb_filename none
pinger_enable off
workers 1
shutdown_lifetime 1 seconds
EOF
  start_server squid squid -N -f "$DIR/squid.conf"
  wait_port "$p" squid
}

start_tinyproxy() {
  local p; p=$(free_port); PORT[tinyproxy]=$p
  cat >"$DIR/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $p
Listen 127.0.0.1
LogLevel Critical
PidFile "$DIR/tinyproxy.pid"
MaxClients 2000
Allow 127.0.0.1
EOF
  start_server tinyproxy tinyproxy -d -c "$DIR/tinyproxy.conf"
  wait_port "$p" tinyproxy
}

http_preamble() {
  cat <<EOF
worker_processes 1; daemon off; pid $DIR/$1.pid; error_log $DIR/$1.err warn;
events { worker_connections 8192; }
http {
  client_body_temp_path $DIR/t/b; proxy_temp_path $DIR/t/p; fastcgi_temp_path $DIR/t/f;
  uwsgi_temp_path $DIR/t/u; scgi_temp_path $DIR/t/s;
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
EOF
}

start_nginx_proxy() {
  local p; p=$(free_port); PORT[nginx]=$p
  {
    http_preamble nginx-proxy
    cat <<EOF
  upstream o { server 127.0.0.1:$ORIGIN; keepalive 128; }
  server { listen 127.0.0.1:$p backlog=4096; location / {
    proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOF
  } >"$DIR/nginx-proxy.conf"
  start_server nginx nginx -e "$DIR/nginx-proxy.err" -p "$DIR" -c "$DIR/nginx-proxy.conf"
  wait_port "$p" nginx
}

start_haproxy() { # NAME MODE(http|tcp)
  local name=$1 mode=$2 p; p=$(free_port); PORT[$name]=$p
  cat >"$DIR/$name.cfg" <<EOF
global
  nbthread 1
  maxconn 5000
defaults
  mode $mode
$([ "$mode" = http ] && printf '  option http-keep-alive\n  http-reuse always\n')
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$p
  default_backend b
backend b
  server o 127.0.0.1:$ORIGIN
EOF
  start_server "$name" haproxy -db -f "$DIR/$name.cfg"
  wait_port "$p" "$name"
}

start_socat() {
  local p; p=$(free_port); PORT[socat]=$p
  start_server socat socat "TCP-LISTEN:$p,bind=127.0.0.1,fork,reuseaddr,backlog=4096" "TCP:127.0.0.1:$ORIGIN"
  wait_port "$p" socat
}

start_dante() {
  local p; p=$(free_port); PORT[dante]=$p
  cat >"$DIR/danted.conf" <<EOF
logoutput: $DIR/danted.log
internal: 127.0.0.1 port = $p
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 command: connect }
EOF
  start_server dante danted -f "$DIR/danted.conf" -p "$DIR/danted.pid"
  wait_port "$p" dante
}

# vsftpd as the FTP server: anonymous, a 1 KiB file, a sparse big file, a writable up/ (as vsftpd wants
# it: the chroot itself not writable). Sets PORT[direct].
start_vsftpd() { # BIG_FILE_MIB
  local p; p=$(free_port); PORT[direct]=$p
  mkdir -p "$DIR/ftproot/up"
  head -c 1024 /dev/urandom >"$DIR/ftproot/1k"
  truncate -s "$((${1} * 1048576))" "$DIR/ftproot/big"
  chmod 644 "$DIR/ftproot/1k" "$DIR/ftproot/big"; chmod 555 "$DIR/ftproot"; chown ftp "$DIR/ftproot/up"
  mkdir -p /var/run/vsftpd/empty
  cat >"$DIR/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$p
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$DIR/ftproot
write_enable=YES
anon_upload_enable=YES
anon_other_write_enable=YES
local_enable=NO
seccomp_sandbox=NO
xferlog_enable=NO
use_sendfile=YES
max_clients=5000
max_per_ip=0
pasv_address=127.0.0.1
connect_from_port_20=NO
secure_chroot_dir=/var/run/vsftpd/empty
pam_service_name=vsftpd
EOF
  start_server vsftpd vsftpd "$DIR/vsftpd.conf"
  wait_port "$p" vsftpd
}

# SuSE's ftp-proxy (Debian proxy-suite), forking per session, relaying in the client's own data mode.
# ForkLimit lifts its default of 40 sessions a minute; no LogDestination (a log file makes it crash
# here); it has no EPSV, so clients fall back to PASV.
start_ftp_proxy() {
  local p; p=$(free_port); PORT[ftp-proxy]=$p
  mkdir -p "$DIR/ftp-proxy"; chmod 777 "$DIR/ftp-proxy"
  cat >"$DIR/ftp-proxy.conf" <<EOF
[-Global-]
ServerType standalone
Listen 127.0.0.1
Port $p
DestinationAddress 127.0.0.1
DestinationPort ${PORT[direct]}
DestinationTransferMode client
User nobody
Group nogroup
PidFile $DIR/ftp-proxy/ftp-proxy.pid
MaxClients 512
ForkLimit 100000000
TimeOut 120
EOF
  start_server ftp-proxy ftp-proxy -d -n -f "$DIR/ftp-proxy.conf"
  wait_port "$p" ftp-proxy
}

# Bastion with one listener type per process, so a type that is not built yet fails alone.
# Sets BASTION_NOTE to the reason when it cannot be measured.
BASTION_NOTE=""
start_bastion() { # NAME CONFIG_TEMPLATE
  local name=$1 tpl=$2 p; p=$(free_port); PORT[$name]=$p
  BASTION_NOTE=""
  if [ $BASTION_OK != 1 ]; then BASTION_NOTE="n/a ($BASTION_WHY)"; return 1; fi
  cp "$HERE/configs/blocked-domains.txt" "$DIR/" 2>/dev/null || true
  BENCH_DIR=$DIR BASTION_PORT=$p ORIGIN_PORT=$ORIGIN \
    envsubst '${BENCH_DIR} ${BASTION_PORT} ${ORIGIN_PORT}' <"$HERE/configs/$tpl" >"$DIR/$name.yaml"
  start_server "$name" dotnet "$DLL" run -c "$DIR/$name.yaml"
  if ! wait_port "$p" "$name" 60; then
    BASTION_NOTE="n/a (not built)"
    grep -q 'not built yet' "$DIR/$name.out" 2>/dev/null || BASTION_NOTE="n/a (did not start: $(tail -c 200 "$DIR/$name.out" | tr '\n\t|' '   '))"
    stop_server "$name"
    return 1
  fi
}

# Probe: one request through the contender must succeed, or its row says why not.
probe_http() { # URL [CURL ARGS...] -> prints the HTTP status
  local url=$1; shift
  curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@" "$url" 2>/dev/null || true
}

probe_or_note() { # NAME URL [CURL ARGS...]: 0 when 200; else sets NOTE and stops a Bastion that answers wrongly
  local name=$1 code; shift
  code=$(probe_http "$@")
  [ "$code" = 200 ] && return 0
  if [[ $name == bastion* ]]; then
    if [ "$code" = 000 ]; then NOTE[$name]="n/a (not built)"; else NOTE[$name]="n/a (probe answered HTTP $code)"; fi
    stop_server "$name"
  else
    NOTE[$name]="n/a (probe answered HTTP $code)"
  fi
  return 1
}

# ---------------------------------------------------------------- load generators
# wrk on core 1; sets R_VALUE (good responses/s), R_P50, R_P99 (ms), R_ERR.
run_wrk() { # PORT CONNS SECONDS PATH HOST [CLOSE]
  local port=$1 conns=$2 secs=$3 path=$4 host=$5 close=${6:-0} out line
  out=$(BENCH_PATH=$path BENCH_HOST=$host BENCH_CLOSE=$close timeout $((secs + 30)) \
    taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s -s "$HERE/lua/bench.lua" "http://127.0.0.1:$port/" 2>&1 || true)
  line=$(grep '^BENCH_RESULT' <<<"$out" || true)
  if [ -z "$line" ]; then
    R_VALUE=""; R_P50=""; R_P99=""; R_ERR=0; R_UNITS=""
    log "wrk gave no result: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
    return 1
  fi
  eval "local $(sed 's/^BENCH_RESULT //; s/\([a-z0-9_]\+\)=/w_\1=/g' <<<"$line")"
  R_UNITS=$((w_requests - w_status))
  R_VALUE=$(awk -v r="$w_requests" -v s="$w_status" -v d="$w_duration_us" 'BEGIN { printf "%.1f", (r - s) / (d / 1e6) }')
  R_P50=$(awk -v v="$w_p50_us" 'BEGIN { printf "%.3f", v / 1000 }')
  R_P99=$(awk -v v="$w_p99_us" 'BEGIN { printf "%.3f", v / 1000 }')
  R_ERR=$((w_connect + w_read + w_write + w_status + w_timeout))
}

run_connbench() { # MODE PORT SECONDS: sets R_VALUE (conn/s), R_P50, R_P99, R_ERR
  local mode=$1 port=$2 secs=$3 line
  line=$(timeout $((secs + 30)) taskset -c 1 "$DIR/connbench" "$mode" "$port" "$ORIGIN" /100b 32 "$secs" 2>&1 | grep '^CONNBENCH' || true)
  if [ -z "$line" ]; then R_VALUE=""; R_P50=""; R_P99=""; R_ERR=0; R_UNITS=""; return 1; fi
  eval "local $(sed 's/^CONNBENCH //; s/\([a-z0-9_]\+\)=/c_\1=/g' <<<"$line")"
  R_UNITS=$c_ok
  R_VALUE=$(awk -v o="$c_ok" -v s="$c_seconds" 'BEGIN { printf "%.1f", o / s }')
  R_P50=$(awk -v v="$c_p50_us" 'BEGIN { printf "%.3f", v / 1000 }')
  R_P99=$(awk -v v="$c_p99_us" 'BEGIN { printf "%.3f", v / 1000 }')
  R_ERR=$c_err
}

run_curl_speed() { # URL BYTES [CURL ARGS...]: sets R_VALUE (MiB/s), R_ERR
  local url=$1 bytes=$2 out code size speed; shift 2
  out=$(taskset -c 1 curl -s -o /dev/null --max-time 120 -w '%{http_code} %{size_download} %{speed_download}' "$@" "$url" 2>/dev/null || true)
  read -r code size speed <<<"$out"
  R_P50=""; R_P99=""
  if [ "${code:-}" = 200 ] && [ "${size:-0}" = "$bytes" ]; then
    R_VALUE=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1048576 }'); R_ERR=0
    R_UNITS=$(awk -v b="$bytes" 'BEGIN { printf "%.6f", b / 1073741824 }')
  else
    R_VALUE=""; R_ERR=1; R_UNITS=""
    log "transfer via $url failed: $out"
  fi
}

# An FTP transfer with curl on core 1; sets R_VALUE (MiB/s), R_ERR. UPLOAD_FROM: a file to send instead.
# FTP_CLIENT_PIN: the client's taskset prefix (core 1 in the pinned layout, nothing in the unpinned one).
FTP_CLIENT_PIN=(taskset -c 1)
run_ftp_speed() { # URL BYTES [UPLOAD_FROM]
  local url=$1 bytes=$2 from=${3:-} out code size speed
  if [ -n "$from" ]; then
    out=$("${FTP_CLIENT_PIN[@]}" curl -s --max-time 300 -T "$from" -w '%{response_code} %{size_upload} %{speed_upload}' "$url" 2>/dev/null || true)
  else
    out=$("${FTP_CLIENT_PIN[@]}" curl -s -o /dev/null --max-time 300 -w '%{response_code} %{size_download} %{speed_download}' "$url" 2>/dev/null || true)
  fi
  read -r code size speed <<<"$out"
  R_P50=""; R_P99=""
  if [ "${code:-}" = 226 ] && [ "${size:-0}" = "$bytes" ]; then
    R_VALUE=$(awk -v s="$speed" 'BEGIN { printf "%.1f", s / 1048576 }'); R_ERR=0
    R_UNITS=$(awk -v b="$bytes" 'BEGIN { printf "%.6f", b / 1073741824 }')
  else
    R_VALUE=""; R_ERR=1; R_UNITS=""
    log "ftp transfer via $url failed: $out"
  fi
}

run_ftpbench() { # PORT SECONDS: sets R_VALUE (sessions/s), R_P50, R_P99, R_ERR
  local port=$1 secs=$2 line
  line=$(timeout $((secs + 30)) taskset -c 1 "$DIR/ftpbench" "$port" /1k 32 "$secs" 2>&1 | grep '^FTPBENCH' || true)
  if [ -z "$line" ]; then R_VALUE=""; R_P50=""; R_P99=""; R_ERR=0; R_UNITS=""; return 1; fi
  eval "local $(sed 's/^FTPBENCH //; s/\([a-z0-9_]\+\)=/f_\1=/g' <<<"$line")"
  R_UNITS=$f_ok
  R_VALUE=$(awk -v o="$f_ok" -v s="$f_seconds" 'BEGIN { printf "%.1f", o / s }')
  R_P50=$(awk -v v="$f_p50_us" 'BEGIN { printf "%.3f", v / 1000 }')
  R_P99=$(awk -v v="$f_p99_us" 'BEGIN { printf "%.3f", v / 1000 }')
  R_ERR=$f_err
}

# Rotates the contender order each round so that none always runs first (after a quiet spell).
rotate() { # ROUND NAMES...
  local r=$1; shift
  local n=$# i
  local a=("$@")
  for ((i = 0; i < n; i++)); do echo "${a[(i + r) % n]}"; done
}

declare -A NOTE=()
setting() { # NAME DEFAULT QUICK_DEFAULT
  local v=${!1:-}
  if [ -n "$v" ]; then echo "$v"; elif [ $QUICK = 1 ]; then echo "$3"; else echo "$2"; fi
}

# ---------------------------------------------------------------- suites
suite_forward() {
  local dur warm rounds r who conns=50
  dur=$(setting BENCH_DURATION 10 3); warm=$(setting BENCH_WARMUP 40 2); rounds=$(setting BENCH_ROUNDS 2 1)
  write_meta forward "wrk -t1 -c$conns, absolute-form GET of a 100-byte file, ${warm}s warm-up then $rounds x ${dur}s per contender, interleaved; req/s counts 2xx/3xx responses only"
  start_origin
  NOTE=()
  start_squid || NOTE[squid]="n/a (did not start)"
  start_tinyproxy || NOTE[tinyproxy]="n/a (did not start)"
  start_bastion bastion-forward forward.yaml || NOTE[bastion-forward]=$BASTION_NOTE
  local target="http://127.0.0.1:$ORIGIN/100b" all=(squid tinyproxy bastion-forward) live=()
  for who in "${all[@]}"; do
    [ -z "${NOTE[$who]:-}" ] && probe_or_note "$who" "$target" -x "http://127.0.0.1:${PORT[$who]}" && live+=("$who")
  done
  local table="forward proxy: 100-byte responses, $conns connections, 10-rule policy (Bastion)"
  for who in "${all[@]}"; do [ -n "${NOTE[$who]:-}" ] && record "$table" "$who" "$([ $who = squid ] && echo 1 || echo 0)" "req/s" "" "" "" "" "" "" "${NOTE[$who]}"; done
  for ((r = 0; r < rounds; r++)); do
    for who in $(rotate $r "${live[@]}"); do
      if [ $r = 0 ]; then log "warm-up $who"; run_wrk "${PORT[$who]}" $conns "$warm" "$target" "127.0.0.1:$ORIGIN" || true; fi
      log "forward round $((r + 1))/$rounds: $who"
      measure "$who" 0 run_wrk "${PORT[$who]}" $conns "$dur" "$target" "127.0.0.1:$ORIGIN"
      local note=""
      [ $who = tinyproxy ] && note="closes the connection after every response: wrk reconnects and counts read errors; req/s is completed requests"
      record "$table" "$who" "$([ $who = squid ] && echo 1 || echo 0)" "req/s" "$R_VALUE" "$R_P50" "$R_P99" "$(peak_rss_kib "$who")" "$R_ERR" "$R_CPU" "$note"
    done
  done
  for who in "${all[@]}" origin; do stop_server "$who"; done
  finish_suite forward
}

suite_reverse() {
  local dur warm rounds r who
  dur=$(setting BENCH_DURATION 7 2); warm=$(setting BENCH_WARMUP 40 2); rounds=$(setting BENCH_ROUNDS 2 1)
  write_meta reverse "wrk -t1, GET /100b and /1m, ${warm}s warm-up before the first scenario and 2s before the others, then $rounds x ${dur}s per contender, interleaved; req/s counts 2xx/3xx responses only"
  start_origin
  NOTE=()
  start_nginx_proxy || NOTE[nginx]="n/a (did not start)"
  start_haproxy haproxy http || NOTE[haproxy]="n/a (did not start)"
  start_bastion bastion-reverse reverse.yaml || NOTE[bastion-reverse]=$BASTION_NOTE
  local all=(nginx haproxy bastion-reverse) live=()
  for who in "${all[@]}"; do
    [ -z "${NOTE[$who]:-}" ] && probe_or_note "$who" "http://127.0.0.1:${PORT[$who]}/100b" && live+=("$who")
  done
  local file conns table
  for file in 100b 1m; do
    for conns in 50 500; do
      table="reverse proxy: $([ $file = 100b ] && echo 100-byte || echo 1-MiB) responses, $conns connections"
      for who in "${all[@]}"; do [ -n "${NOTE[$who]:-}" ] && record "$table" "$who" "$([ $who = nginx ] && echo 1 || echo 0)" "req/s" "" "" "" "" "" "" "${NOTE[$who]}"; done
      for ((r = 0; r < rounds; r++)); do
        for who in $(rotate $r "${live[@]}"); do
          if [ $r = 0 ]; then run_wrk "${PORT[$who]}" "$conns" "$([ "$file$conns" = 100b50 ] && echo "$warm" || echo 2)" /$file "127.0.0.1:${PORT[$who]}" || true; fi
          log "reverse $file c$conns round $((r + 1))/$rounds: $who"
          measure "$who" 0 run_wrk "${PORT[$who]}" "$conns" "$dur" /$file "127.0.0.1:${PORT[$who]}"
          record "$table" "$who" "$([ $who = nginx ] && echo 1 || echo 0)" "req/s" "$R_VALUE" "$R_P50" "$R_P99" "$(peak_rss_kib "$who")" "$R_ERR" "$R_CPU" ""
        done
      done
    done
  done
  for who in "${all[@]}" origin; do stop_server "$who"; done
  finish_suite reverse
}

suite_tcp() {
  local dur warm rounds trounds r who mib
  dur=$(setting BENCH_DURATION 8 2); warm=$(setting BENCH_WARMUP 10 1); rounds=$(setting BENCH_ROUNDS 2 1)
  trounds=$(setting BENCH_FTP_ROUNDS 5 1)
  mib=$(setting BENCH_TRANSFER_MIB 1024 128)
  gcc -O2 -pthread -o "$DIR/connbench" "$HERE/tools/connbench.c"
  write_meta tcp "throughput: curl -o /dev/null of a ${mib} MiB file from the nginx origin, after an untimed 256 MiB warm-up transfer, $trounds rounds; connections/s: bench/tools/connbench (32 threads, one HTTP/1.1 GET /100b with Connection: close per connection), ${warm}s warm-up then $rounds x ${dur}s; interleaved"
  start_origin "$mib"
  NOTE=()
  start_haproxy haproxy-tcp tcp || NOTE[haproxy-tcp]="n/a (did not start)"
  start_socat || NOTE[socat]="n/a (did not start)"
  start_dante || NOTE[dante]="n/a (did not start)"
  start_bastion bastion-tcp tcp.yaml || NOTE[bastion-tcp]=$BASTION_NOTE
  start_bastion bastion-socks5 socks5.yaml || NOTE[bastion-socks5]=$BASTION_NOTE
  PORT[direct]=$ORIGIN
  local relays=(direct haproxy-tcp socat bastion-tcp) socks=(dante bastion-socks5) live=()
  for who in "${relays[@]}"; do
    [ -z "${NOTE[$who]:-}" ] && probe_or_note "$who" "http://127.0.0.1:${PORT[$who]}/100b" && live+=("$who")
  done
  for who in "${socks[@]}"; do
    [ -z "${NOTE[$who]:-}" ] && probe_or_note "$who" "http://127.0.0.1:$ORIGIN/100b" --socks5 "127.0.0.1:${PORT[$who]}" && live+=("$who")
  done
  is_socks() { [ "$1" = dante ] || [ "$1" = bastion-socks5 ]; }
  table_of() { # KIND WHO
    if is_socks "$2"; then echo "socks5: $1"; else echo "tcp relay: $1"; fi
  }
  is_ref() { [ "$1" = haproxy-tcp ] || [ "$1" = dante ] && echo 1 || echo 0; }
  local tput="${mib} MiB transfer throughput" conn="short connections per second (connect, GET 100 bytes, close)"
  local bytes=$((mib * 1048576))
  for who in "${relays[@]}" "${socks[@]}"; do
    [ -n "${NOTE[$who]:-}" ] && record "$(table_of "$tput" "$who")" "$who" "$(is_ref "$who")" "MiB/s" "" "" "" "" "" "" "${NOTE[$who]}"
  done
  for who in "${live[@]}"; do
    if is_socks "$who"; then
      taskset -c 1 curl -s -o /dev/null --max-time 60 -r 0-268435455 --socks5 "127.0.0.1:${PORT[$who]}" "http://127.0.0.1:$ORIGIN/big" || true
    else
      taskset -c 1 curl -s -o /dev/null --max-time 60 -r 0-268435455 "http://127.0.0.1:${PORT[$who]}/big" || true
    fi
  done
  for ((r = 0; r < trounds; r++)); do
    for who in $(rotate $r "${live[@]}"); do
      log "throughput round $((r + 1))/$trounds: $who"
      if is_socks "$who"; then
        measure "$who" 1 run_curl_speed "http://127.0.0.1:$ORIGIN/big" "$bytes" --socks5 "127.0.0.1:${PORT[$who]}"
      else
        measure "$who" 1 run_curl_speed "http://127.0.0.1:${PORT[$who]}/big" "$bytes"
      fi
      local note=""; [ $who = direct ] && note="no relay: curl straight to the origin, for scale"
      record "$(table_of "$tput" "$who")" "$who" "$(is_ref "$who")" "MiB/s" "$R_VALUE" "" "" "$([ $who = direct ] && echo "" || peak_rss_kib "$who")" "$R_ERR" "$R_CPU" "$note"
    done
  done
  for who in "${relays[@]}" "${socks[@]}"; do
    [ -n "${NOTE[$who]:-}" ] && record "$(table_of "$conn" "$who")" "$who" "$(is_ref "$who")" "conn/s" "" "" "" "" "" "" "${NOTE[$who]}"
  done
  for ((r = 0; r < rounds; r++)); do
    for who in $(rotate $r "${live[@]}"); do
      local mode=tcp; is_socks "$who" && mode=socks5
      if [ $r = 0 ]; then run_connbench $mode "${PORT[$who]}" "$warm" || true; fi
      log "connections round $((r + 1))/$rounds: $who"
      measure "$who" 0 run_connbench $mode "${PORT[$who]}" "$dur"
      [ -n "$R_VALUE" ] || log "connbench gave no result for $who"
      local note=""; [ $who = direct ] && note="no relay: straight to the origin, for scale"
      [ $who = socat ] && note="forks a process per connection"
      record "$(table_of "$conn" "$who")" "$who" "$(is_ref "$who")" "conn/s" "$R_VALUE" "$R_P50" "$R_P99" "$([ $who = direct ] && echo "" || peak_rss_kib "$who")" "$R_ERR" "$R_CPU" "$note"
    done
  done
  for who in haproxy-tcp socat dante bastion-tcp bastion-socks5 origin; do stop_server "$who"; done
  finish_suite tcp
}

suite_ftp() {
  local dur warm trounds rounds r who mib
  dur=$(setting BENCH_DURATION 8 2); warm=$(setting BENCH_WARMUP 10 1); rounds=$(setting BENCH_ROUNDS 2 1)
  trounds=$(setting BENCH_FTP_ROUNDS 5 1)
  mib=$(setting BENCH_TRANSFER_MIB 1024 128)
  gcc -O2 -pthread -o "$DIR/ftpbench" "$HERE/tools/ftpbench.c"
  write_meta ftp "vsftpd (sendfile) as the server; throughput: curl (EPSV where offered, else PASV) downloading and uploading a ${mib} MiB file (sparse source read into the page cache before every download; uploads written to a tmpfs), after an untimed 256 MiB download, $trounds interleaved rounds in each layout (pinned: servers core 0, curl core 1; unpinned: no affinity), medians under each table; sessions/s: bench/tools/ftpbench (32 threads; each session: login, TYPE I, SIZE, PASV, RETR of 1 KiB, QUIT), ${warm}s warm-up then $rounds x ${dur}s; interleaved"
  NOTE=()
  start_vsftpd "$mib" || { cat "$DIR/vsftpd.out" >&2; echo "vsftpd did not start" >&2; exit 1; }
  start_ftp_proxy || NOTE[ftp-proxy]="n/a (did not start)"
  ORIGIN=${PORT[direct]}
  start_bastion bastion-ftp ftp.yaml || NOTE[bastion-ftp]=$BASTION_NOTE
  local all=(direct ftp-proxy bastion-ftp) live=()
  truncate -s "$((mib * 1048576))" "$DIR/upload.bin"
  for who in "${all[@]}"; do
    [ -n "${NOTE[$who]:-}" ] && continue
    if [ "$(curl -s -o /dev/null --max-time 10 -w '%{size_download}' "ftp://127.0.0.1:${PORT[$who]}/1k" 2>/dev/null || true)" = 1024 ]; then
      live+=("$who")
    else
      NOTE[$who]="n/a (probe failed)"; [[ $who == bastion* ]] && stop_server "$who"
    fi
  done
  is_ref() { [ "$1" = direct ] && echo 1 || echo 0; }
  local down="${mib} MiB download throughput" up="${mib} MiB upload throughput"
  local sess="short sessions per second (login, SIZE, PASV, RETR 1 KiB, QUIT)"
  local bytes=$((mib * 1048576))
  for who in "${all[@]}"; do
    if [ -n "${NOTE[$who]:-}" ]; then
      record "$down" "$who" "$(is_ref "$who")" "MiB/s" "" "" "" "" "" "" "${NOTE[$who]}"
      record "$up" "$who" "$(is_ref "$who")" "MiB/s" "" "" "" "" "" "" "${NOTE[$who]}"
    fi
  done
  for who in "${live[@]}"; do
    taskset -c 1 curl -s -o /dev/null --max-time 60 -r 0-268435455 "ftp://127.0.0.1:${PORT[$who]}/big" || true
  done
  # Uploads land on a tmpfs: on the disk, each 1 GiB upload's writeback (and the discard when it is deleted) fell on
  # whichever transfer came next (direct's upload rounds ran 253-1,705 MiB/s). The relays are what is measured.
  mountpoint -q "$DIR/ftproot/up" || mount -t tmpfs -o size=$((mib + 64))m,mode=0755 tmpfs "$DIR/ftproot/up" 2>/dev/null \
    && chown ftp "$DIR/ftproot/up" || log "ftp: uploads go to the disk (no tmpfs)"
  # One untimed upload of the full size, and the big file read once: memory this VM touches for the first time
  # costs the host's page faults, and made round 1 of direct's upload run at a fifth of its speed even on tmpfs.
  taskset -c 1 curl -s --max-time 300 -T "$DIR/upload.bin" "ftp://127.0.0.1:${PORT[direct]}/up/warm.bin" >/dev/null 2>&1 || true
  rm -f "$DIR/ftproot/up/warm.bin"
  # Layouts: "pinned" (servers and relay on core 0, curl on core 1: the relay shares its core with vsftpd) and
  # "unpinned" (the scheduler places everything: a gateway that does not compete with the server for one core).
  local layout tag
  for layout in $(setting BENCH_FTP_LAYOUTS "pinned unpinned" "pinned"); do
    tag=""; FTP_CLIENT_PIN=(taskset -c 1)
    if [ "$layout" = unpinned ]; then
      tag=" (unpinned)"; FTP_CLIENT_PIN=()
      for who in vsftpd ftp-proxy bastion-ftp; do set_affinity "$who" 0-1; done
    fi
    for who in "${all[@]}"; do
      if [ -n "${NOTE[$who]:-}" ]; then
        record "$down$tag" "$who" "$(is_ref "$who")" "MiB/s" "" "" "" "" "" "" "${NOTE[$who]}"
        record "$up$tag" "$who" "$(is_ref "$who")" "MiB/s" "" "" "" "" "" "" "${NOTE[$who]}"
      fi
    done
    for ((r = 0; r < trounds; r++)); do
      for who in $(rotate $r "${live[@]}"); do
        local note=""; [ $who = direct ] && note="no gateway: curl straight to vsftpd, for scale (no CPU figure: vsftpd is the server, not a relay)"
        # Every download starts with the whole file in the page cache: the sparse file's first read fills 1 GiB of
        # cache pages, which made whoever came first in round 1 run at a quarter of the speed.
        cat "$DIR/ftproot/big" >/dev/null
        log "ftp $layout download round $((r + 1))/$trounds: $who"
        measure "$who" 1 run_ftp_speed "ftp://127.0.0.1:${PORT[$who]}/big" "$bytes"
        record "$down$tag" "$who" "$(is_ref "$who")" "MiB/s" "$R_VALUE" "" "" "$([ $who = direct ] && echo "" || peak_rss_kib "$who")" "$R_ERR" "$R_CPU" "$note"
        log "ftp $layout upload round $((r + 1))/$trounds: $who"
        measure "$who" 1 run_ftp_speed "ftp://127.0.0.1:${PORT[$who]}/up/$who-$r.bin" "$bytes" "$DIR/upload.bin"
        rm -f "$DIR/ftproot/up/$who-$r.bin"
        record "$up$tag" "$who" "$(is_ref "$who")" "MiB/s" "$R_VALUE" "" "" "$([ $who = direct ] && echo "" || peak_rss_kib "$who")" "$R_ERR" "$R_CPU" "$note"
      done
    done
  done
  FTP_CLIENT_PIN=(taskset -c 1)
  for who in vsftpd ftp-proxy bastion-ftp; do set_affinity "$who" 0; done
  is_ref() { [ "$1" = ftp-proxy ] && echo 1 || echo 0; }
  for who in "${all[@]}"; do
    [ -n "${NOTE[$who]:-}" ] && record "$sess" "$who" "$(is_ref "$who")" "sessions/s" "" "" "" "" "" "" "${NOTE[$who]}"
  done
  for ((r = 0; r < rounds; r++)); do
    for who in $(rotate $r "${live[@]}"); do
      if [ $r = 0 ]; then run_ftpbench "${PORT[$who]}" "$warm" || true; fi
      log "ftp sessions round $((r + 1))/$rounds: $who"
      measure "$who" 0 run_ftpbench "${PORT[$who]}" "$dur"
      [ -n "$R_VALUE" ] || log "ftpbench gave no result for $who"
      local note=""; [ $who = direct ] && note="no gateway: straight to vsftpd, for scale"
      [ $who = ftp-proxy ] && note="forks a process per session"
      record "$sess" "$who" "$(is_ref "$who")" "sessions/s" "$R_VALUE" "$R_P50" "$R_P99" "$([ $who = direct ] && echo "" || peak_rss_kib "$who")" "$R_ERR" "$R_CPU" "$note"
    done
  done
  for who in ftp-proxy bastion-ftp vsftpd; do stop_server "$who"; done
  mountpoint -q "$DIR/ftproot/up" && umount "$DIR/ftproot/up"
  finish_suite ftp
}

# Warm-up: how soon after start Bastion's reverse proxy runs at its steady speed. Bastion is started cold and
# loaded at once with the 100 B / 50-connection load, in back-to-back 1 s wrk windows; each window's req/s, CPU per
# request and RSS go in a table, timed from the moment the process was started (so start-up counts).
suite_warmup() {
  local secs conns=50 i t0 t1 now c0 c1 line steady steady_cpu reached=""
  secs=$(setting BENCH_WARMUP_SECONDS 45 12)
  write_meta warmup "Bastion http-reverse (configs/reverse.yaml) started cold, then wrk -t1 -c$conns GET /100b in back-to-back 1 s windows for ${secs}s; time is seconds since the process was started; environment: ${BENCH_BASTION_ENV:-as shipped}"
  start_origin
  NOTE=()
  t0=$(date +%s.%N)
  # BENCH_BASTION_ENV: extra variables for the Bastion process only (DOTNET_TieredPGO=0 ...), to compare settings.
  if [ -n "${BENCH_BASTION_ENV:-}" ]; then
    local -a envs; read -r -a envs <<<"$BENCH_BASTION_ENV"
    export "${envs[@]}"
  fi
  start_bastion bastion-reverse reverse.yaml || { log "bastion did not start: $BASTION_NOTE"; exit 1; }
  if [ -n "${BENCH_BASTION_ENV:-}" ]; then for line in "${envs[@]}"; do unset "${line%%=*}"; done; fi
  local started; started=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  local rows="$DIR/warmup.tsv"; : >"$rows"
  for ((i = 0; i < secs; i++)); do
    c0=$(cpu_ticks bastion-reverse)
    run_wrk "${PORT[bastion-reverse]}" $conns 1 /100b "127.0.0.1:${PORT[bastion-reverse]}" || true
    c1=$(cpu_ticks bastion-reverse)
    now=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    local rss; rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/${PID[bastion-reverse]}/status" 2>/dev/null || echo "")
    local cpu; cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v u="${R_UNITS:-0}" 'BEGIN { if (u > 0) printf "%.1f", d * 1e6 / hz / u }')
    printf '%s\t%s\t%s\t%s\t%s\n' "$now" "${R_VALUE:-0}" "$cpu" "${R_P99:-}" "$rss" >>"$rows"
  done
  local peak; peak=$(awk -v k="$(peak_rss_kib bastion-reverse)" 'BEGIN { printf "%.0f", k / 1024 }')
  stop_server bastion-reverse; stop_server origin
  printf 'load average after the suite\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"
  mkdir -p "$HERE/results"
  local out; out="$HERE/results/$(date -u +%Y-%m-%d-%H%M)-warmup$([ $QUICK = 1 ] && echo -quick || true).md"
  $PY - "$META" "$rows" "$started" "$peak" >"$out" <<'PYEOF'
import statistics, sys
meta, rows, started, peak = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
m = [l.rstrip("\n").split("\t", 1) for l in open(meta) if "\t" in l]
r = [l.rstrip("\n").split("\t") for l in open(rows) if l.strip()]
r = [(float(t), float(v or 0), float(c) if c else None, float(p) if p else None, rss) for t, v, c, p, rss in r]
print(f"# {dict(m).get('title', 'warm-up')}\n")
for k, v in m:
    if k != "title":
        print(f"- **{k}:** {v}")
# Steady state: the median of the last third of the windows (the run is long enough for tiering to finish).
tail = r[len(r) - max(3, len(r) // 3):]
steady = statistics.median(v for _, v, _, _, _ in tail)
steady_cpu = statistics.median(c for _, _, c, _, _ in tail if c is not None)
# Reached: the first window from which every later one is within 10% of the steady req/s, or within 10% of its CPU
# per request (req/s alone moves with whatever else the machine runs).
reached = None
for i in range(len(r)):
    if all(v >= 0.9 * steady or (c is not None and c <= 1.1 * steady_cpu) for _, v, c, _, _ in r[i:]):
        reached = r[i][0]
        break
print(f"- **listening after:** {started:.2f} s")
print(f"- **steady state (median of the last {len(tail)} windows):** {steady:,.0f} req/s, {steady_cpu:.1f} µs CPU/req")
print(f"- **steady from:** {'%.1f s after start' % reached if reached is not None else 'not reached'} (every later window within 10% of the steady req/s or CPU per request)")
print(f"- **peak RSS:** {peak} MiB\n")
print("| s since start | req/s | vs steady | CPU µs/req | p99 ms | RSS MiB |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
for t, v, c, p, rss in r:
    print(f"| {t:.1f} | {v:,.0f} | {v / steady:.2f} | {'-' if c is None else f'{c:.1f}'} | {'-' if p is None else f'{p:.2f}'} | {rss} |")
PYEOF
  cat "$out"
  log "wrote ${out#"$ROOT"/}"
  rm -f "$META" "$rows"
}

log "scratch folder $DIR; suites: ${SUITES[*]}$([ $QUICK = 1 ] && echo ' (quick)' || true)"
for s in "${SUITES[@]}"; do "suite_$s"; done

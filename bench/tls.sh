#!/usr/bin/env bash
# TLS-inspection benchmark: HTTPS through Bastion's http-proxy with tls_inspection, Squid 5 with ssl-bump and
# mitmproxy (mitmdump, streaming on), against one nginx HTTPS origin with its own CA.
#   bench/tls.sh [--quick]          (BENCH_NO_BUILD=1 uses the existing Release build; BENCH_KEEP=1 keeps the folder)
# Installs when missing (as root): nginx squid-openssl mitmproxy gcc libssl-dev. Servers and the origin are pinned
# to core 0, the load generator (bench/tools/tlsbench.c, OpenSSL, verifying each proxy's CA) to core 1.
# Measures, interleaved over rounds: requests/s on keep-alive tunnels (GET /100b again and again in one TLS
# session) and with a new connection per request (proxy connection, CONNECT, full handshake, one GET); the
# server's CPU per request; 1 GiB downloaded through each (MiB/s, peak RSS); Bastion's cost of minting a
# certificate (p50 of new connections each to a never-seen name, minus p50 to a known one).
# Access logs (BENCH_TLS_LOG, default "both"): every contender writes one line per request to a file (Bastion its
# JSON access log, Squid `access_log daemon:` with `buffered_logs on`, mitmdump its one line per flow), as a gateway
# is run; "both" also measures keep-alive with the log off on both Bastion and Squid (bastion-nolog, squid-nolog),
# so the ratio of the same work is there either way. "on": only the logging contenders; "off": no log anywhere.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DLL="${BENCH_BASTION_DLL:-$ROOT/src/Bastion/bin/Release/net10.0/bastion.dll}"
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
DUR=${BENCH_DURATION:-$([ $QUICK = 1 ] && echo 3 || echo 10)}
WARM=${BENCH_WARMUP:-$([ $QUICK = 1 ] && echo 3 || echo 30)}
ROUNDS=${BENCH_ROUNDS:-$([ $QUICK = 1 ] && echo 1 || echo 2)}
THREADS=${BENCH_THREADS:-16}
GIB_MIB=${BENCH_TRANSFER_MIB:-$([ $QUICK = 1 ] && echo 128 || echo 1024)}
LOGS=${BENCH_TLS_LOG:-both}
case "$LOGS" in on|off|both) ;; *) echo "tls.sh: BENCH_TLS_LOG is on, off or both" >&2; exit 2 ;; esac
log() { printf '[tls-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PKGS=(nginx squid-openssl mitmproxy gcc libssl-dev curl)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "tls.sh: missing ${missing[*]}; run as root" >&2; exit 1; }
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "${BENCH_NO_BUILD:-0}" = 1 ] || (cd "$ROOT" && dotnet build -c Release src/Bastion -nologo -v q >/tmp/bastion-tls-bench-build.log 2>&1)
ulimit -n 20000 2>/dev/null || true

DIR=$(mktemp -d /tmp/bastion-tls-bench.XXXXXX)
chmod 755 "$DIR"
declare -A PID=() PORT=() CAFILE=()
stop() { local pid=${PID[$1]:-}; [ -n "$pid" ] || return 0; kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; unset "PID[$1]"; }
cleanup() { for n in "${!PID[@]}"; do stop "$n"; done; [ "${BENCH_KEEP:-0}" = 1 ] && log "kept $DIR" || rm -rf "$DIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { local name=$1; shift; setsid taskset -c 0 "$@" >"$DIR/$name.out" 2>&1 </dev/null & PID[$name]=$!; disown "$!"; }
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; kill -0 "${PID[$2]}" 2>/dev/null || return 1; sleep 0.1; done; return 1; }
ticks() { local pid=${PID[$1]:-}; ps -e -o pid=,pgid= | awk -v g="$pid" '$2 == g { print $1 }' | while read -r p; do
  sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || true; done | awk '{ t += $1 } END { print t + 0 }'; }
# Resets the peak RSS (VmHWM) of NAME's processes, so that the next rss_mib is the peak since then.
rss_reset() { local pid=${PID[$1]:-}; for p in $(ps -e -o pid=,pgid= | awk -v g="$pid" '$2 == g { print $1 }'); do
  echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done; }
rss_mib() { local pid=${PID[$1]:-} t=0; for p in $(ps -e -o pid=,pgid= | awk -v g="$pid" '$2 == g { print $1 }'); do
  t=$((t + $(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $((t / 1024)); }

# ------------------------------------------------------------------ certificates and origin
log "origin CA, origin certificate, Bastion's CA"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=Bench Origin CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
  -keyout "$DIR/origin-ca.key" -out "$DIR/origin-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout "$DIR/origin.key" -out "$DIR/origin.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,DNS:*.bench.localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$DIR/origin.ext"
openssl x509 -req -in "$DIR/origin.csr" -CA "$DIR/origin-ca.pem" -CAkey "$DIR/origin-ca.key" -CAcreateserial -days 30 \
  -extfile "$DIR/origin.ext" -out "$DIR/origin.crt" 2>/dev/null
mkdir -p "$DIR/www" "$DIR/t"/{b,p,f,u,s}
head -c 99 /dev/zero | tr '\0' 'x' >"$DIR/www/100b" && echo >>"$DIR/www/100b"
truncate -s "$((GIB_MIB * 1048576))" "$DIR/www/big"
chmod -R a+rX "$DIR"
ORIGIN=$(freeport)
cat >"$DIR/origin.conf" <<EOF
worker_processes 1; daemon off; pid $DIR/origin.pid; error_log $DIR/origin.err warn;
events { worker_connections 8192; }
http {
  client_body_temp_path $DIR/t/b; proxy_temp_path $DIR/t/p; fastcgi_temp_path $DIR/t/f; uwsgi_temp_path $DIR/t/u; scgi_temp_path $DIR/t/s;
  access_log off; sendfile on; tcp_nodelay on; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN ssl backlog=4096; ssl_certificate $DIR/origin.crt; ssl_certificate_key $DIR/origin.key;
           ssl_session_cache shared:S:10m; root $DIR/www; }
}
EOF
start origin nginx -e "$DIR/origin.err" -p "$DIR" -c "$DIR/origin.conf"
waitport "$ORIGIN" origin || { cat "$DIR/origin.err" >&2; exit 1; }

# ------------------------------------------------------------------ the three proxies
log "starting Bastion, Squid (ssl-bump), mitmproxy"
dotnet "$DLL" ca init "$DIR/bastion-ca" >/dev/null
CAFILE[bastion]=$DIR/bastion-ca/ca.crt
PORT[bastion]=$(freeport)
. "$HERE/tools/tls-bastion.sh"
bastion_tls_yaml "${PORT[bastion]}" "$DIR/bastion-ca" "$DIR/origin-ca.pem" "$([ "$LOGS" = off ] && echo off || echo "$DIR/bastion-access.log")" >"$DIR/bastion.yaml"
start bastion dotnet "$DLL" run -c "$DIR/bastion.yaml" --no-watch
waitport "${PORT[bastion]}" bastion || { cat "$DIR/bastion.out" >&2; exit 1; }
if [ "$LOGS" = both ]; then
  CAFILE[bastion-nolog]=$DIR/bastion-ca/ca.crt
  PORT[bastion-nolog]=$(freeport)
  bastion_tls_yaml "${PORT[bastion-nolog]}" "$DIR/bastion-ca" "$DIR/origin-ca.pem" off >"$DIR/bastion-nolog.yaml"
  start bastion-nolog dotnet "$DLL" run -c "$DIR/bastion-nolog.yaml" --no-watch
  waitport "${PORT[bastion-nolog]}" bastion-nolog || { cat "$DIR/bastion-nolog.out" >&2; exit 1; }
fi

# Squid: the same kind of CA (ECDSA P-256), bumping every tunnel after peeking at the ClientHello.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=Bench Squid CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$DIR/squid-ca.key" -out "$DIR/squid-ca.pem" 2>/dev/null
cat "$DIR/squid-ca.pem" "$DIR/squid-ca.key" >"$DIR/squid-ca-bundle.pem"
squid_conf() { # NAME ACCESS_LOG_LINES (PORT[NAME] set first)
  local name=$1
  /usr/lib/squid/security_file_certgen -c -s "$DIR/ssl_db-$name" -M 16MB >/dev/null
  chown -R proxy:proxy "$DIR/ssl_db-$name" 2>/dev/null || true
  mkdir -p "$DIR/$name-run" && chown proxy:proxy "$DIR/$name-run" 2>/dev/null || true
  cat <<EOF
http_port 127.0.0.1:${PORT[$name]} ssl-bump tls-cert=$DIR/squid-ca-bundle.pem generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $DIR/ssl_db-$name -M 16MB
sslcrtd_children 5 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$DIR/origin-ca.pem
http_access allow localhost
http_access deny all
cache deny all
$2
cache_store_log none
cache_log $DIR/$name-cache.log
pid_filename $DIR/$name-run/squid.pid
coredump_dir $DIR
netdb_filename none
pinger_enable off
workers 1
shutdown_lifetime 1 seconds
EOF
}
# Squid's own access log: its default module (a log_file_daemon helper, counted with Squid's CPU as its process
# group is), native format, records buffered as Bastion's writer gathers lines.
SQUID_LOG="access_log daemon:$DIR/squid-run/access.log squid
buffered_logs on"
PORT[squid]=$(freeport)
CAFILE[squid]=$DIR/squid-ca.pem
squid_conf squid "$([ "$LOGS" = off ] && echo 'access_log none' || echo "$SQUID_LOG")" >"$DIR/squid.conf"
start squid squid -N -f "$DIR/squid.conf"
waitport "${PORT[squid]}" squid || { cat "$DIR/squid.out" "$DIR/squid-cache.log" >&2; exit 1; }
if [ "$LOGS" = both ]; then
  PORT[squid-nolog]=$(freeport)
  CAFILE[squid-nolog]=$DIR/squid-ca.pem
  squid_conf squid-nolog 'access_log none' >"$DIR/squid-nolog.conf"
  start squid-nolog squid -N -f "$DIR/squid-nolog.conf"
  waitport "${PORT[squid-nolog]}" squid-nolog || { cat "$DIR/squid-nolog.out" "$DIR/squid-nolog-cache.log" >&2; exit 1; }
fi

PORT[mitmproxy]=$(freeport)
mkdir -p "$DIR/mitm"
# mitmdump's log of a flow is its one line per request on stdout (flow_detail 1), here to a file; -q: none.
start mitmproxy mitmdump $([ "$LOGS" = off ] && echo -q || echo --set flow_detail=1) --listen-host 127.0.0.1 --listen-port "${PORT[mitmproxy]}" --set confdir="$DIR/mitm" \
  --set stream_large_bodies=1 --set ssl_verify_upstream_trusted_ca="$DIR/origin-ca.pem" --set connection_strategy=eager
waitport "${PORT[mitmproxy]}" mitmproxy || { cat "$DIR/mitmproxy.out" >&2; exit 1; }
CAFILE[mitmproxy]=$DIR/mitm/mitmproxy-ca-cert.pem

gcc -O2 -pthread -o "$DIR/tlsbench" "$HERE/tools/tlsbench.c" -lssl -lcrypto

WHO=(bastion squid mitmproxy)
NOLOG=()
[ "$LOGS" = both ] && NOLOG=(bastion-nolog squid-nolog)
for w in "${WHO[@]}" "${NOLOG[@]}"; do
  r=$(curl -q -sS --max-time 20 -x "http://127.0.0.1:${PORT[$w]}" --cacert "${CAFILE[$w]}" -o /dev/null -w '%{http_code}' "https://localhost:$ORIGIN/100b" || true)
  [ "$r" = 200 ] || { log "$w does not answer 200 through inspection (got '$r')"; cat "$DIR/$w.out" >&2; exit 1; }
done

# ------------------------------------------------------------------ measurements
declare -A SUM=() RUNS=() P50=() P99=() CPU=() N=() ERR=()
bench() { # WHO MODE SECONDS [HOST] -> "ok err seconds p50 p99 cpu_us_per_req"
  local w=$1 mode=$2 secs=$3 host=${4:-localhost} t0 t1 line
  t0=$(ticks "$w")
  line=$(timeout $((secs + 60)) taskset -c 1 "$DIR/tlsbench" "${PORT[$w]}" "$host" "$ORIGIN" /100b "${CAFILE[$w]}" "$THREADS" "$secs" "$mode" | grep '^TLSBENCH' || true)
  t1=$(ticks "$w")
  echo "$line" | awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    printf "%d %d %s %s %s %.0f\n", v["ok"], v["err"], v["seconds"], v["p50_us"], v["p99_us"], (v["ok"] > 0 ? d * 1e6 / hz / v["ok"] : 0) }'
}

log "warm-up ${WARM}s each (Bastion's JIT tiers up under load)"
for w in "${WHO[@]}"; do bench "$w" keepalive "$WARM" >/dev/null; bench "$w" new "$((WARM / 3 + 1))" >/dev/null; done
for w in "${NOLOG[@]}"; do bench "$w" keepalive "$WARM" >/dev/null; done

for mode in keepalive new; do
  for ((r = 0; r < ROUNDS; r++)); do
    order=("${WHO[@]:r%3}" "${WHO[@]:0:r%3}")
    # The log-off pair only in keep-alive (where the log weighs most), in the same round.
    [ $mode = keepalive ] && [ ${#NOLOG[@]} -gt 0 ] && order+=("${NOLOG[@]:r%2}" "${NOLOG[@]:0:r%2}")
    for w in "${order[@]}"; do
      read -r ok err secs p50 p99 cpu < <(bench "$w" "$mode" "$DUR")
      rps=$(awk -v o="$ok" -v s="$secs" 'BEGIN { printf "%.0f", o / s }')
      k="$w/$mode"
      RUNS[$k]="${RUNS[$k]:-}${RUNS[$k]:+ / }$rps"
      SUM[$k]=$(( ${SUM[$k]:-0} + rps )); N[$k]=$(( ${N[$k]:-0} + 1 ))
      P50[$k]=$(awk -v a="${P50[$k]:-0}" -v b="$p50" 'BEGIN { print a + b }'); P99[$k]=$(awk -v a="${P99[$k]:-0}" -v b="$p99" 'BEGIN { print a + b }')
      CPU[$k]=$(( ${CPU[$k]:-0} + cpu ))
      ERR[$k]=$(( ${ERR[$k]:-0} + err ))
      log "$mode $w: $rps req/s (p50 ${p50} us, p99 ${p99} us, $cpu us CPU/req, $err errors)"
    done
  done
done

log "transfer: ${GIB_MIB} MiB through each"
declare -A MIBS=() RUNRSS=() XFERRSS=()
for w in "${WHO[@]}"; do
  RUNRSS[$w]=$(rss_mib "$w"); rss_reset "$w"
  speed=$(taskset -c 1 curl -q -sS --max-time 600 -x "http://127.0.0.1:${PORT[$w]}" --cacert "${CAFILE[$w]}" -o /dev/null \
    -w '%{speed_download}' "https://localhost:$ORIGIN/big" || echo 0)
  MIBS[$w]=$(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1048576 }')
  XFERRSS[$w]=$(rss_mib "$w")
  log "transfer $w: ${MIBS[$w]} MiB/s"
done

log "minting: the work itself (bench/tools/mintbench, sequential), then end to end (new connections to never-seen names)"
dotnet build -c Release -v q -nologo "$HERE/tools/mintbench/mintbench.csproj" -p:BastionDll="$DLL" -o "$DIR/mintbench" \
  -p:BaseIntermediateOutputPath="$DIR/mintbench-obj/" >"$DIR/mintbench-build.log" 2>&1 || true
MB=$(taskset -c 0 dotnet "$DIR/mintbench/mintbench.dll" 500 2>/dev/null | grep '^MINTBENCH' || echo "MINTBENCH n=0")
MB_RSA=$(taskset -c 0 dotnet "$DIR/mintbench/mintbench.dll" 100 --rsa 2>/dev/null | grep '^MINTBENCH' || echo "MINTBENCH n=0")
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
read -r _ _ _ known _ _ < <(bench bastion new "$DUR" localhost)
read -r mok _ _ fresh _ _ < <(bench bastion new "$DUR" "n%d.bench.localhost")
MINT=$(awk -v a="$fresh" -v b="$known" 'BEGIN { printf "%.2f", (a - b) / 1000 }')

# ------------------------------------------------------------------ report
OUT="$HERE/results/$(date -u +%Y-%m-%d-%H%M)-tls$([ $QUICK = 1 ] && echo -quick || true).md"
{
  echo "# Bastion benchmark: TLS inspection$([ $QUICK = 1 ] && echo ' (quick smoke run)' || true)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- bastion $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') (.NET $(dotnet --version)); $(squid -v | head -1 | sed 's/Version //'); mitmproxy $(mitmdump --version 2>/dev/null | awk '/Mitmproxy/ { print $2 }') (mitmdump, stream_large_bodies=1); nginx origin (HTTPS, one worker)"
  echo "- load: bench/tools/tlsbench.c, $THREADS threads on core 1, GET /100b (100 B), OpenSSL verifying each proxy's CA, no session resumption; servers and origin on core 0; ${WARM}s warm-up, $ROUNDS x ${DUR}s per mode, interleaved"
  case "$LOGS" in
    off) logtext="no access log on any" ;;
    on) logtext="each logs every request to a file (Bastion its JSON access log; Squid access_log daemon: native format, buffered_logs on; mitmdump flow_detail=1 to a file)" ;;
    both) logtext="bastion, squid, mitmproxy log every request to a file (Bastion its JSON access log; Squid access_log daemon: native format, buffered_logs on; mitmdump flow_detail=1 to a file); bastion-nolog and squid-nolog the same with no access log (keep-alive only, compared with each other)" ;;
  esac
  echo "- Bastion: 9-rule policy; Squid: peek at step 1, bump all, no cache; mitmproxy: defaults, no addons; access logs: $logtext"
  echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| mode | proxy | req/s (mean) | runs | p50 ms | p99 ms | CPU µs/req | errors | vs mitmproxy | vs Squid |"
  echo "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for mode in keepalive new; do
    rows=("${WHO[@]}")
    [ $mode = keepalive ] && rows+=("${NOLOG[@]}")
    for w in "${rows[@]}"; do
      k="$w/$mode"; n=${N[$k]}
      mean=$(( SUM[$k] / n ))
      vm=$(awk -v a="$mean" -v b="$(( SUM[mitmproxy/$mode] / N[mitmproxy/$mode] ))" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')
      [[ $w = *-nolog ]] && { ref=squid-nolog; vm=-; } || ref=squid
      vs=$(awk -v a="$mean" -v b="$(( SUM[$ref/$mode] / N[$ref/$mode] ))" 'BEGIN { printf "%.2fx", b ? a / b : 0 }')
      printf '| %s | %s | %s | %s | %.2f | %.2f | %d | %d | %s | %s |\n' "$([ $mode = new ] && echo 'new connection per request' || echo 'keep-alive')" \
        "$w" "$mean" "${RUNS[$k]}" "$(awk -v s="${P50[$k]}" -v n="$n" 'BEGIN { print s / n / 1000 }')" \
        "$(awk -v s="${P99[$k]}" -v n="$n" 'BEGIN { print s / n / 1000 }')" "$(( CPU[$k] / n ))" "${ERR[$k]}" "$vm" "$vs"
    done
  done
  echo
  echo "| ${GIB_MIB} MiB through the proxy | MiB/s | peak RSS MiB before it (req/s runs) | peak RSS MiB during it |"
  echo "| --- | ---: | ---: | ---: |"
  for w in "${WHO[@]}"; do echo "| $w | ${MIBS[$w]} | ${RUNRSS[$w]} | ${XFERRSS[$w]} |"; done
  echo
  echo "Minting a certificate (Bastion, ECDSA P-256 CA, leaf key reused): median **$(field "$MB" total_p50_ms) ms** (p90 $(field "$MB" total_p90_ms) ms; the signature alone $(field "$MB" mint_p50_ms) ms); under an RSA 3072 CA (RSA 2048 leaf) $(field "$MB_RSA" total_p50_ms) ms. Sequential, on core 0 (bench/tools/mintbench)."
  echo
  echo "End to end, $THREADS clients each opening new connections to never-seen names ($mok names minted): p50 $(awk -v a="$fresh" 'BEGIN { printf "%.2f", a / 1000 }') ms against $(awk -v a="$known" 'BEGIN { printf "%.2f", a / 1000 }') ms to a known name ($MINT ms more, queueing included)."
} >"$OUT"
cat "$OUT"
log "wrote ${OUT#"$ROOT"/}"

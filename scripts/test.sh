#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need (Debian packages, as root) when missing,
# builds, runs every test, and ends with a plain "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
  pkg="${pkg%%#*}"; pkg="${pkg//[[:space:]]/}"
  [ -z "$pkg" ] && continue
  # squid-openssl (bench/tls.sh's ssl-bump) is the same Squid built with OpenSSL: it stands in for squid.
  [ "$pkg" = squid ] && dpkg-query -W -f='${Status}' squid-openssl 2>/dev/null | grep -q "install ok installed" && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/test-deps.txt
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to apt-get install: ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "apt-get install failed" >&2; exit 1; }
fi

ulimit -n 20000 2>/dev/null || true
results="$(pwd)/artifacts/test-results"
rm -rf "$results"; mkdir -p "$results"

dotnet build -c Release -warnaserror 2>&1 | tail -3
build=${PIPESTATUS[0]}
if [ "$build" -ne 0 ]; then echo "build failed"; echo "0 passed, 1 failed"; exit 1; fi

# Formatting is part of the build's standard: report drift, fail on it.
if ! dotnet format --verify-no-changes >/dev/null 2>&1; then
  echo "dotnet format found unformatted files (run: dotnet format)"; echo "0 passed, 1 failed"; exit 1
fi

dotnet test -c Release --no-build --logger "trx;LogFileName=results.trx" --results-directory "$results" \
  --logger "console;verbosity=normal" -- RunConfiguration.TestSessionTimeout=1500000 > "$results/console.log" 2>&1
rc=$?
grep -E "^\s*(Passed!|Failed!|Total tests)" "$results/console.log"
# Each failure with its message and the first lines of its stack, so CI's output says what broke.
grep -E -A12 "^\s+Failed [A-Za-z]" "$results/console.log" | head -300

trx=$(ls "$results"/*.trx 2>/dev/null | head -1)
if [ -n "$trx" ]; then
  passed=$(grep -o 'passed="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*')
  failed=$(grep -o 'failed="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*')
  [ -z "$passed" ] && passed=0; [ -z "$failed" ] && failed=0
else
  passed=0; failed=1
fi
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "${passed} passed, ${failed} failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]

#!/usr/bin/env bash
# The Debian packages the tests run, installed when missing (one apt-get update, one apt-get
# install; nothing happens when all are present). Run by .ci/run, and first in the README's test
# command. Needs root (or sudo) only when something is missing.
set -euo pipefail

# Debian packages the tests need, as COMMAND:PACKAGE pairs; the missing ones are installed in one
# apt-get call (one apt-get update). nginx: the reference hop of the sidecar benchmark; ss
# (iproute2): the sidecar tests count CLOSE-WAIT sockets. softhsm2, opensc (pkcs11-tool) and
# OpenSSL's pkcs11 engine: the PKCS#11 key tests (a SoftHSM2 token in a temporary directory); gcc
# (cc): the fault-injection PKCS#11 module those tests compile.
# systemd-analyze (systemd): the deploy recipes are verified. postgresql: the AS store tests start
# a real PostgreSQL server (initdb/pg_ctl from /usr/lib/postgresql/N/bin) in a temporary directory.
# g++, make: npm ci compiles better-sqlite3 (the AS's embedded store on Node 20) from source.
# python3: node-gyp, when pass 2 rebuilds the native addons for Node 24.
# openssl: one conformance test compares our exporter value with `openssl s_client -keymatexport`.
# chromium: the browser login at the demo identity provider (driven by puppeteer-core).
# haproxy: the L4 balancer of the intermediary tests (nginx is their TLS-terminating L7 proxy).
ensure_packages() {
  local missing=() spec cmd file
  for spec in "$@"; do
    if [ "${spec%%:*}" = path ]; then
      # path:/FILE:PACKAGE, for packages without a command (e.g. an OpenSSL engine).
      file=${spec#path:}
      file=${file%:*}
      [ -e "$file" ] || missing+=("${spec##*:}")
      continue
    fi
    cmd=${spec%%:*}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${spec#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
}
ensure_packages openssl:openssl chromium:chromium nginx:nginx haproxy:haproxy ss:iproute2 systemd-analyze:systemd softhsm2-util:softhsm2 pkcs11-tool:opensc path:/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so:libengine-pkcs11-openssl pg_ctlcluster:postgresql g++:g++ make:make cc:gcc python3:python3

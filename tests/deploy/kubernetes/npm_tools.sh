#!/usr/bin/env bash
# Installs the npm tools of these checks (npm/package.json, exact versions in
# npm/package-lock.json) into DEST with `npm ci`, unless DEST already holds this lock file's
# install. The ctest fixture kubernetes_npm_tools runs it; it needs the npm registry the first
# time (as scripts/install-deps.sh does for the repository's own package.json).
#
#   npm_tools.sh DEST
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$1"
mkdir -p "$dest"
stamp="$dest/node_modules/.copilot-lock.sha256"
want="$(sha256sum "$here/npm/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "npm tools up to date in $dest"
  exit 0
fi
cp "$here/npm/package.json" "$here/npm/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" >"$stamp"
echo "npm tools installed in $dest: $(cd "$dest" && npm ls --depth=0 2>/dev/null | tail -n +2 | tr '\n' ' ')"

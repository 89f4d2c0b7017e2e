#!/usr/bin/env bash
# Checks that the copilot.v1 contract (proto/) has no breaking change against the latest release
# tag (v*, highest version first): `buf breaking` with the rules of buf.yaml (FILE: no field,
# message, enum value, RPC or file removed, renamed, renumbered or retyped). This is how
# client/COMPATIBILITY.md is enforced. Exits 0 when there is no breaking change, and also when
# no release tag exists yet (it says so: there is nothing to compare against), 1 otherwise.
#
#   scripts/check-breaking.sh          # BUF=path/to/buf to use another buf binary
set -euo pipefail
cd "$(dirname "$0")/.."
buf="${BUF:-node_modules/.bin/buf}"

if [ ! -x "$buf" ]; then
  echo "check-breaking: $buf not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [ ! -d .git ]; then
  echo "check-breaking: $(pwd) is not the root of a git clone" >&2
  exit 1
fi

tags="$(git tag --list 'v[0-9]*' --sort=-v:refname)"
tag="${tags%%$'\n'*}"
if [ -z "$tag" ]; then
  echo "check-breaking: no release tag yet: skipped (no v* tag in this clone; the first release tag turns the check on)"
  exit 0
fi

echo "check-breaking: proto/ against release tag $tag"
if "$buf" breaking proto --against ".git#tag=$tag"; then
  echo "check-breaking: no breaking change since $tag"
else
  echo "check-breaking: buf breaking failed against $tag (breaking changes listed above); client/COMPATIBILITY.md says what may change within v1" >&2
  exit 1
fi

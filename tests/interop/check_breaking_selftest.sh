#!/usr/bin/env bash
# Proves scripts/check-breaking.sh catches what client/COMPATIBILITY.md forbids, without
# touching this repository: a throwaway git repository in WORK_DIR gets today's proto/, buf.yaml
# and the script, and release tags; then
#   - without a tag: passes with "no release tag yet: skipped";
#   - unchanged, and with an added field (additive): passes;
#   - a removed, renumbered or retyped field, a renamed enum value: fails, naming the change;
#   - with tags v1.9.0 and v1.10.0 the latest is v1.10.0 (version order, not text order).
#
#   check_breaking_selftest.sh WORK_DIR
set -euo pipefail
if [ "$#" -ne 1 ]; then
  echo "usage: $0 WORK_DIR" >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$1"
base="$(cd "$1" && pwd)"
work="$base/repo"
orig="$base/proto.orig" # the contract as released
export BUF="${BUF:-$repo/node_modules/.bin/buf}"
service=proto/copilot/v1/copilot_service.proto
resources=proto/copilot/v1/resources.proto

rm -rf "$work" "$orig"
mkdir -p "$work/scripts"
cp -R "$repo/proto" "$repo/buf.yaml" "$work/"
cp "$repo/scripts/check-breaking.sh" "$work/scripts/"
cp -R "$repo/proto" "$orig"
cd "$work"
git_() { git -c user.name=selftest -c user.email=selftest@invalid -c commit.gpgsign=false "$@"; }
git_ init -q
git_ add -A
git_ commit -q -m "contract as released"

failures=0
# check NAME WANT_STATUS ERE: runs the check; its exit status must be WANT_STATUS and its output
# must have a line matching ERE.
check() {
  local name="$1" want="$2" pattern="$3" status=0
  echo "-- $name"
  scripts/check-breaking.sh >"$base/$name.out" 2>&1 || status=$?
  sed 's/^/   | /' "$base/$name.out"
  if [ "$status" -ne "$want" ]; then
    echo "FAIL: $name: exit status $status, expected $want"
    failures=$((failures + 1))
  elif ! grep -Eq "$pattern" "$base/$name.out"; then
    echo "FAIL: $name: no line matching /$pattern/"
    failures=$((failures + 1))
  else
    echo "ok: $name"
  fi
}
restore() { rm -rf proto && cp -R "$orig" proto; }
# edit FILE SED_EXPRESSION: applies it to the released contract; the file must change.
edit() {
  restore
  sed -i "$2" "$1"
  if cmp -s "$1" "$orig/${1#proto/}"; then
    echo "FAIL: the contract no longer has what this test edits ($2 on $1)"
    exit 1
  fi
}

check no_tag 0 '^check-breaking: no release tag yet: skipped'

git_ tag v1.0.0
check unchanged 0 'no breaking change since v1\.0\.0'

edit "$service" 's|^  string title = 3;$|  string title = 3;\n  // Optional. A field added later.\n  string note = 5;|'
check field_added 0 'no breaking change since v1\.0\.0'

edit "$service" '/^  string title = 3;$/d'
check field_removed 1 'field "3" with name "title" on message "CreateThreadRequest" was deleted'

edit "$service" 's|^  string title = 3;$|  string title = 9;|'
check field_renumbered 1 'field "3" with name "title" on message "CreateThreadRequest" was deleted'

edit "$service" 's|^  string title = 3;$|  int32 title = 3;|'
check field_retyped 1 'Field "3" with name "title" on message "CreateThreadRequest" changed type from "string" to "int32"'

edit "$resources" 's|^  ROLE_TOOL = 4;$|  ROLE_TOOL_RESULT = 4;|'
check enum_value_renamed 1 'Enum value "4" on enum "Role" changed name from "ROLE_TOOL" to "ROLE_TOOL_RESULT"'

# v1.9.0 is the released contract, v1.10.0 adds a field: dropping that field again is breaking
# only against v1.10.0, so the check fails only if it picked v1.10.0.
restore
git_ tag v1.9.0
edit "$service" 's|^  string title = 3;$|  string title = 3;\n  // Optional. A field added later.\n  string note = 5;|'
git_ commit -q -a -m "additive change"
git_ tag v1.10.0
restore
check latest_tag_by_version 1 'against release tag v1\.10\.0'

if [ "$failures" -ne 0 ]; then
  echo "proto_breaking_selftest: $failures check(s) failed"
  exit 1
fi
echo "proto_breaking_selftest: all checks passed"

#!/usr/bin/env bash
# clang-tidy (.clang-tidy) over the gateway's C++ sources, with build/default's compile commands.
#   scripts/tidy.sh                # the .cc files of server/ and client/ changed since TIDY_BASE
#                                  # (default HEAD~1: the last commit) or not yet committed
#   scripts/tidy.sh --all          # every .cc file of server/ and client/ (about 30 s a file)
#   scripts/tidy.sh FILE...        # those files
# Any finding fails (exit 1), in the file or in one of our headers it includes. scripts/test.sh
# runs the default (changed files): the whole tree takes longer than CI's budget allows.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build/default}"
tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
[[ -n "$tidy" ]] || { echo "tidy: clang-tidy-14 is not installed (scripts/install-deps.sh)" >&2; exit 1; }
[[ -f "$build_dir/compile_commands.json" ]] || {
  echo "tidy: no $build_dir/compile_commands.json: run scripts/build.sh first" >&2
  exit 1
}

files=()
if [[ "${1:-}" == --all ]]; then
  mapfile -t files < <(git ls-files 'server/*.cc' 'client/*.cc')
elif [[ $# -gt 0 ]]; then
  files=("$@")
else
  base="${TIDY_BASE:-HEAD~1}"
  git rev-parse --verify --quiet "$base" >/dev/null || base=$(git rev-list --max-parents=0 HEAD)
  mapfile -t files < <({
    git diff --name-only --diff-filter=d "$base" -- 'server/*.cc' 'client/*.cc'
    git ls-files --others --exclude-standard -- 'server/*.cc' 'client/*.cc'
  } | sort -u)
fi
if [[ ${#files[@]} -eq 0 ]]; then
  echo "tidy: no C++ source changed since ${base:-?}"
  exit 0
fi

echo "tidy: ${#files[@]} file(s) with $(basename "$tidy")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# One clang-tidy per file, JOBS at a time; findings in our own headers count too.
printf '%s\n' "${files[@]}" |
  xargs -P "${JOBS:-$(nproc)}" -I{} "$tidy" -p "$build_dir" --quiet \
    --header-filter="^$PWD/(server|client)/" {} >"$log" 2>/dev/null || true
# The same header finding is reported once per file that includes it.
findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error):' "$log" | sort -u || true)
if [[ -n "$findings" ]]; then
  echo "$findings"
  echo "tidy: $(wc -l <<<"$findings") finding(s)" >&2
  exit 1
fi
echo "tidy: clean"

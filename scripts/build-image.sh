#!/usr/bin/env bash
# Builds the container image from the Dockerfile and tags it copilot-gateway:<version> (the
# version in CMakeLists.txt), then writes beside it, under build/image/:
#   copilot-gateway-<version>.packages.tsv   the runtime image's Debian packages (dpkg-query of
#                                            its own database)
#   copilot-gateway-<version>.spdx.json      the same as an SPDX 2.3 SBOM (purls pkg:deb/...)
# and prints the image's size.
#
#   scripts/build-image.sh [--skip-tests] [--tag NAME:TAG] [--builder docker|buildah]
#
#   --skip-tests  build only the gateway in the build stage and skip its test run
#                 (--build-arg RUN_TESTS=false; for CI, which runs the tests anyway)
#
# With a running Docker engine it uses `docker build`. Otherwise it uses buildah (installed from
# Debian's archive when missing; vfs storage and chroot isolation, so it needs no daemon, no
# overlay filesystem and no user namespaces: as root). When the base image
# (debian:bookworm-slim) cannot be pulled, it makes one from Debian's archive with mmdebstrap
# (minbase, with the docs, man pages and locales left out as in the slim image) and builds on
# that: BASE_IMAGE names it in the image's labels.
#
# Push the result to a registry: deploy/kubernetes/README.md, "The image".
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=true
tag=""
builder=""
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-tests) run_tests=false ;;
    --tag) tag="$2"; shift ;;
    --builder) builder="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

version="$(sed -nE 's/^project\(copilot_gateway VERSION ([0-9.]+).*/\1/p' CMakeLists.txt)"
[ -n "$version" ] || { echo "build-image: no version in CMakeLists.txt" >&2; exit 1; }
tag="${tag:-copilot-gateway:${version}}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
out="build/image"
mkdir -p "$out"
base="debian:bookworm-slim"
log() { echo "build-image: $*"; }
started=$(date +%s)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -z "$builder" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    builder=docker
  else
    builder=buildah
  fi
fi

# buildah as this script runs it: vfs storage, so that it works without overlayfs or fuse.
bah() { buildah --storage-driver vfs "$@"; }

ensure_buildah() {
  local missing=()
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian's archive"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
  if [ "$(id -u)" -ne 0 ]; then
    # 77: the image tests count it as skipped, as the other tests that need root.
    echo "build-image: buildah without a Docker engine runs as root here (chroot isolation)" >&2
    exit 77
  fi
}

# The base image: local, else pulled, else made with mmdebstrap.
buildah_base() {
  # The tag names this recipe's revision: a changed recipe makes a new base.
  local local_base="localhost/debian-mmdebstrap:bookworm-slim-r2"
  if bah inspect --type image "docker.io/library/$base" >/dev/null 2>&1; then
    echo "docker.io/library/$base"; return
  fi
  if timeout 60 buildah --storage-driver vfs pull -q "docker.io/library/$base" >/dev/null 2>&1; then
    echo "docker.io/library/$base"; return
  fi
  if bah inspect --type image "$local_base" >/dev/null 2>&1; then
    echo "$local_base"; return
  fi
  log "cannot pull $base: making it from Debian's archive with mmdebstrap" >&2
  local tarball="$out/debian-bookworm-minbase.tar"
  # As the official slim image (debuerreotype): merged /usr without the usrmerge package (and
  # the perl it pulls in); dpkg leaves out man pages, docs (but copyright), locales, info pages
  # and lintian data, for every later install too; apt deletes its downloaded packages and
  # caches after each run (docker-clean) and fetches no translations.
  mmdebstrap --variant=minbase --quiet \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --aptopt='Acquire::Languages "none"' \
    --customize-hook='printf "%s\n" \
        "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" \
        "APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };" \
        "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" \
        > "$1/etc/apt/apt.conf.d/docker-clean"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
    bookworm "$tarball" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" >&2
  local ctr
  ctr="$(bah from scratch)"
  bah add "$ctr" "$tarball" / >/dev/null
  bah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.opencontainers.image.description=Debian 12 minbase (mmdebstrap), slimmed" "$ctr"
  bah commit -q --rm "$ctr" "$local_base" >/dev/null
  rm -f "$tarball"
  echo "$local_base"
}

build_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision"
            --build-arg "RUN_TESTS=$run_tests")
case "$builder" in
  docker)
    log "docker build -t $tag (RUN_TESTS=$run_tests)"
    docker build -t "$tag" "${build_args[@]}" .
    ;;
  buildah)
    ensure_buildah
    base_image="$(buildah_base)"
    log "buildah bud -t $tag on $base_image (RUN_TESTS=$run_tests)"
    bud_log="$out/buildah-bud.log"  # kept: the build's own log, also read below
    bah bud --isolation chroot --network host --pull=never --layers \
      -t "$tag" "${build_args[@]}" --build-arg "BASE_IMAGE=$base_image" . 2>&1 | tee "$bud_log"
    # --layers keeps every step's result as an unnamed image, the cache of the next build. With
    # vfs storage each is a whole copy of its root filesystem (about 1 GB for the build stage),
    # so only this build's steps are kept: older unnamed images are removed.
    keep="$(grep -oE -- '--> (Using cache )?[0-9a-f]{11,64}' "$bud_log" | grep -oE '[0-9a-f]{11,64}$' || true)"
    removed=0
    for id in $(bah images --quiet --filter dangling=true --no-trunc | sed 's/^sha256://'); do
      if ! grep -q "^${id:0:11}" <<< "$keep"; then
        bah rmi -f "$id" >/dev/null 2>&1 && removed=$((removed + 1))
      fi
    done
    log "removed $removed unnamed image(s) of earlier builds; kept this build's $(wc -l <<< "$keep") step(s)"
    ;;
  *) echo "build-image: --builder docker or buildah" >&2; exit 2 ;;
esac

# The runtime stage's packages, from its own dpkg database.
name="${tag%%:*}"; name="${name##*/}"
packages="$out/${name}-${version}.packages.tsv"
sbom="$out/${name}-${version}.spdx.json"
listing="$(mktemp)"
trap 'rm -f "$listing"' EXIT
query=(-W "-f=\${db:Status-Abbrev}\t\${Package}\t\${Version}\t\${Architecture}\t\${Installed-Size}\t\${source:Package}\n")
if [ "$builder" = docker ]; then
  docker run --rm --user 0 --entrypoint dpkg-query "$tag" "${query[@]}" > "$listing"
  size=$(docker image inspect --format '{{.Size}}' "$tag")
else
  ctr="$(bah from -q --pull=never "$tag")"
  mnt="$(bah mount "$ctr")"
  dpkg-query --admindir="$mnt/var/lib/dpkg" "${query[@]}" > "$listing"
  # The image's files, uncompressed (what `docker images` reports as its size).
  size=$(du -sbx "$mnt" | cut -f1)
  bah umount "$ctr" >/dev/null
  bah rm "$ctr" >/dev/null
fi
/usr/bin/python3 scripts/image_sbom.py --dpkg-query "$listing" --image "$tag" --revision "$revision" \
  --tsv "$packages" --spdx "$sbom"
log "$tag: $(awk -v b="$size" 'BEGIN { printf "%.1f MB (%d bytes, uncompressed)", b / 1e6, b }'), \
$(($(wc -l < "$packages") - 1)) Debian packages ($packages, $sbom); took $(( $(date +%s) - started )) s"

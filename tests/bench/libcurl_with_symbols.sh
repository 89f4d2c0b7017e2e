#!/usr/bin/env bash
# Builds the installed libcurl's own Debian source (the same version, Debian's patches applied)
# with debug symbols, and prints the directory holding its libcurl.so.4. Debian ships libcurl
# without symbols and its debug archive is not reachable from these machines, so a profile of the
# gateway shows libcurl's internals as bare addresses; with this library in LD_LIBRARY_PATH they
# have names:
#
#   LIBCURL_DIR="$(tests/bench/libcurl_with_symbols.sh)" tests/bench/instructions_per_call.sh
#
# For profiling only: it is configured with the features the gateway uses (OpenSSL, nghttp2, the
# threaded resolver), not all of Debian's, so its counts differ from Debian's build by about one
# percent (353,377 against 357,446 instructions a call at b99b96d, measured once each).
# WORK_DIR (default /tmp/libcurl-with-symbols) keeps the source and the build; a second run
# reuses them. Needs build-essential (with dpkg-source), libssl-dev and libnghttp2-dev:
# scripts/install-deps.sh installs them. Takes about a minute on two cores (45 s measured).
set -euo pipefail
work="${WORK_DIR:-/tmp/libcurl-with-symbols}"
version="$(dpkg-query -W -f='${Version}' libcurl4)"
upstream="${version%%-*}"
dir="$work/curl-$upstream"
lib="$dir/lib/.libs"
if [ -e "$lib/libcurl.so.4" ]; then
  echo "$lib"
  exit 0
fi
for tool in dpkg-source cc make curl; do
  command -v "$tool" >/dev/null || {
    echo "libcurl_with_symbols: $tool is missing (apt-get install dpkg-dev build-essential curl)" >&2
    exit 2
  }
done
mkdir -p "$work"
cd "$work"
dsc="curl_${version}.dsc"
# A security update lives in debian-security's pool, the point release's in the main archive.
fetched=""
for pool in http://deb.debian.org/debian-security/pool/updates/main/c/curl \
  http://deb.debian.org/debian/pool/main/c/curl; do
  if curl -fsS -o "$dsc" "$pool/$dsc" 2>/dev/null; then
    for file in $(awk '/^Files:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $3 }' "$dsc"); do
      curl -fsS -o "$file" "$pool/$file"
    done
    fetched="$pool"
    break
  fi
done
if [ -z "$fetched" ]; then
  echo "libcurl_with_symbols: curl $version's source is in neither of Debian's pools" >&2
  exit 1
fi
rm -rf "$dir"
dpkg-source --no-check -x "$dsc" "$dir" >&2
cd "$dir"
# The series ends with the GnuTLS and NSS flavours' patches (library name, symbol versions);
# debian/rules takes both off again for the OpenSSL flavour, which is the installed one.
for flavour in 99_nss 90_gnutls; do
  patch -R -p1 -s <"debian/patches/$flavour.patch"
done
./configure --with-openssl --with-nghttp2 --enable-threaded-resolver --disable-static \
  --disable-symbol-hiding --enable-versioned-symbols \
  --without-libpsl --without-brotli --without-zstd --without-libidn2 --without-librtmp \
  --without-libssh2 --disable-ldap --disable-manual CFLAGS="-O2 -g" >"$work/configure.log" 2>&1 || {
  echo "libcurl_with_symbols: configure failed, see $work/configure.log" >&2
  exit 1
}
make -j"$(nproc)" -C lib >"$work/make.log" 2>&1 || {
  echo "libcurl_with_symbols: make failed, see $work/make.log" >&2
  exit 1
}
echo "$lib"

#!/usr/bin/env bash
# Generates the Java code of copilot.v1 (messages and gRPC stubs) and of the google.rpc error
# protos (com.google.rpc.Status, ErrorInfo, RetryInfo, ...: no installed Debian jar has them, and
# grpc-protobuf's StatusProto needs com.google.rpc.Status) from proto/ into OUT_DIR (default:
# build/clients/java), compiles them with the example program against Debian's jars in
# /usr/share/java, and writes a launcher. Nothing is written into the source tree.
#
#   client/java/generate.sh [OUT_DIR]
#   OUT_DIR/bin/copilot-example
#
# OUT_DIR/gen-src      generated Java sources (package com.copilotgateway.copilot.v1, com.google.rpc)
# OUT_DIR/classes      compiled classes, the example's included
# OUT_DIR/classpath    the Debian jars it runs with
#
# Needs default-jdk-headless, protobuf-compiler, protobuf-compiler-grpc-java-plugin,
# libgrpc-java, libprotobuf-java, and at run time libnetty-java (grpc-netty's transport) and
# libperfmark-java (grpc-core calls PerfMark).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$repo/build/clients/java}"
jars_dir="${JAVA_JARS_DIR:-/usr/share/java}"
googleapis="${GOOGLEAPIS_PROTO_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}"
wkt="${PROTOBUF_INCLUDE_DIR:-/usr/include}"
grpc_plugin="${GRPC_JAVA_PLUGIN:-$(command -v grpc_java_plugin || command -v protoc-gen-grpc-java || true)}"

[ -n "$grpc_plugin" ] ||
  { echo "generate.sh: grpc_java_plugin not found (install protobuf-compiler-grpc-java-plugin)" >&2; exit 1; }
for tool in protoc javac java; do
  command -v "$tool" >/dev/null ||
    { echo "generate.sh: $tool not found (install protobuf-compiler, default-jdk-headless)" >&2; exit 1; }
done

# Package of each jar, for the message when one is missing.
declare -A package_of=(
  [grpc-api]=libgrpc-java [grpc-context]=libgrpc-java [grpc-core]=libgrpc-java
  [grpc-netty]=libgrpc-java [grpc-protobuf]=libgrpc-java [grpc-protobuf-lite]=libgrpc-java
  [grpc-stub]=libgrpc-java [protobuf]=libprotobuf-java [guava]=libguava-java
  [perfmark-api]=libperfmark-java [netty-buffer]=libnetty-java [netty-codec]=libnetty-java
  [netty-codec-http]=libnetty-java [netty-codec-http2]=libnetty-java
  [netty-common]=libnetty-java [netty-handler]=libnetty-java [netty-resolver]=libnetty-java
  [netty-transport]=libnetty-java
)
classpath=()
missing=()
for jar in grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub \
  protobuf guava perfmark-api netty-buffer netty-codec netty-codec-http netty-codec-http2 \
  netty-common netty-handler netty-resolver netty-transport; do
  if [ -f "$jars_dir/$jar.jar" ]; then
    classpath+=("$jars_dir/$jar.jar")
  else
    missing+=("$jar.jar (${package_of[$jar]})")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "generate.sh: missing in $jars_dir: ${missing[*]}" >&2
  exit 1
fi
cp_string="$(IFS=:; echo "${classpath[*]}")"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -rf "${out:?}/gen-src" "${out:?}/classes" "${out:?}/bin"
mkdir -p "$out/gen-src" "$out/classes" "$out/bin"

protoc -I "$repo/proto" -I "$googleapis" -I "$wkt" \
  --java_out="$out/gen-src" \
  --plugin=protoc-gen-grpc-java="$grpc_plugin" --grpc-java_out="$out/gen-src" \
  copilot/v1/resources.proto copilot/v1/copilot_service.proto
protoc -I "$googleapis" -I "$wkt" --java_out="$out/gen-src" \
  google/rpc/status.proto google/rpc/error_details.proto

# Debian's grpc_java_plugin (1.41) marks the stubs @javax.annotation.Generated, which left the
# JDK with Java 11 (and it has no option to leave it out); a source-retention stand-in
# satisfies the compiler.
mkdir -p "$out/gen-src/javax/annotation"
cat >"$out/gen-src/javax/annotation/Generated.java" <<'JAVA'
package javax.annotation;

/** Stand-in for the annotation the JDK no longer has; made by client/java/generate.sh. */
@java.lang.annotation.Retention(java.lang.annotation.RetentionPolicy.SOURCE)
public @interface Generated {
  String[] value();

  String date() default "";

  String comments() default "";
}
JAVA

mapfile -t sources < <(find "$out/gen-src" "$repo/client/java/src" -name '*.java' | sort)
javac -nowarn -encoding UTF-8 --release 17 -d "$out/classes" -cp "$cp_string" "${sources[@]}"

printf '%s\n' "$cp_string" >"$out/classpath"
cat >"$out/bin/copilot-example" <<LAUNCHER
#!/bin/sh
# Made by client/java/generate.sh: runs the Java example with the generated classes.
exec java -cp '$out/classes:$cp_string' com.copilotgateway.example.CopilotExample "\$@"
LAUNCHER
chmod +x "$out/bin/copilot-example"
echo "generated Java code in $out/gen-src, classes in $out/classes; example: $out/bin/copilot-example"

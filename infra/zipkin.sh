#!/usr/bin/env bash
# The Zipkin UI (Lens) for `web` to serve at /zipkin/: Maven fetches io.zipkin:zipkin-server's exec jar
# (infra/zipkin/pom.xml) into .cache/zipkin/lib, and Lens's static files (BOOT-INF/lib/zipkin-lens-*.jar,
# folder zipkin-lens/) are unpacked into .cache/zipkin/lens (ZIPKIN_UI_DIR's default). Done again only when
# the pom changes. Environment: STACK_CACHE (.cache).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${STACK_CACHE:-$ROOT/.cache}/zipkin"
POM="$ROOT/infra/zipkin/pom.xml"
SUM=$(sha256sum "$POM" | cut -d' ' -f1)

if [[ -f $CACHE/lens/.pom.sha256 && $(<"$CACHE/lens/.pom.sha256") == "$SUM" && -f $CACHE/lens/index.html ]]; then
  exit 0
fi
for cmd in mvn unzip; do
  if ! command -v "$cmd" >/dev/null; then
    pkg=$([[ $cmd == mvn ]] && echo maven || echo unzip)
    echo "zipkin.sh: $cmd not found, installing $pkg with apt-get" >&2
    $( [[ $(id -u) -eq 0 ]] || echo sudo ) apt-get install -y -q "$pkg" >/dev/null
  fi
done
mkdir -p "$CACHE"
echo "zipkin.sh: fetching zipkin-server's exec jar with Maven (for Lens) into ${CACHE#"$ROOT"/}" >&2
rm -rf "$CACHE/lib"
if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$CACHE/lib" >"$CACHE/mvn.log" 2>&1; then
  tail -n 30 "$CACHE/mvn.log" >&2
  echo "zipkin.sh: Maven could not fetch zipkin-server (full output: $CACHE/mvn.log)" >&2
  exit 1
fi
jar=$(ls "$CACHE"/lib/zipkin-server-*-exec.jar)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unzip -q -o "$jar" 'BOOT-INF/lib/zipkin-lens-*.jar' -d "$work"
unzip -q -o "$work"/BOOT-INF/lib/zipkin-lens-*.jar 'zipkin-lens/*' -d "$work/lens"
rm -rf "$CACHE/lens"
mv "$work/lens/zipkin-lens" "$CACHE/lens"
basename "$work"/BOOT-INF/lib/zipkin-lens-*.jar >"$CACHE/lens/VERSION"
echo "$SUM" >"$CACHE/lens/.pom.sha256"
echo "zipkin.sh: Lens ($(<"$CACHE/lens/VERSION")) is in ${CACHE#"$ROOT"/}/lens" >&2

#!/usr/bin/env bash
# Builds the local Apache Kafka test image FROM scratch (no registry needed):
# a jlink'ed JRE + the glibc it links + busybox + Kafka jars from Maven Central.
# Idempotent: every step is cached under $KAFKA_IMAGE_BUILD_DIR and the image
# carries a label with a hash of all inputs, so a rerun with nothing changed
# returns in about a second. See README.md.
#
# Env:
#   KAFKA_IMAGE            image name (default robust-producer/kafka:4.4.0). A name
#                          outside robust-producer/ is used as is if present
#                          locally, else pulled; never built.
#   KAFKA_IMAGE_BUILD_DIR  cache dir (default tests/kafka-image/build)
#   KAFKA_IMAGE_JDK        JDK used for jdeps/jlink (default: first JDK with jmods)
#   KAFKA_IMAGE_FORCE=1    rebuild the image even if it is up to date
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_IMAGE="robust-producer/kafka:4.4.0"
IMAGE="${KAFKA_IMAGE:-$DEFAULT_IMAGE}"
BUILD_DIR="${KAFKA_IMAGE_BUILD_DIR:-$HERE/build}"
CTX="$BUILD_DIR/context"
LABEL="robust-producer.kafka-image.inputs"

say() { echo "[build-image +$(( $(date +%s) - T0 ))s] $*"; }
die() { echo "[build-image] ERROR: $*" >&2; exit 1; }
sha() { sha256sum | cut -c1-16; }
now() { date +%s; }
T0=$(now)

# ---------------------------------------------------------------------------
# 0. Docker must answer (prepare.sh / ensure-docker.sh start it).
docker info >/dev/null 2>&1 \
    || die "no Docker engine answers 'docker info'. Run tests/kafka-image/ensure-docker.sh first."

# A user-chosen image under another name (built like ours): use it if it
# is there, else pull it. Names under robust-producer/ are built (and rebuilt
# when the inputs change, see the label check below).
case "$IMAGE" in
    robust-producer/*) ;;
    *)
        if docker image inspect "$IMAGE" >/dev/null 2>&1; then
            say "KAFKA_IMAGE=$IMAGE exists locally; nothing to build."
            exit 0
        fi
        say "KAFKA_IMAGE=$IMAGE is not present locally; trying 'docker pull $IMAGE'"
        docker pull "$IMAGE" \
            || die "image $IMAGE is neither present locally nor pullable (no registry?). Unset KAFKA_IMAGE to build $DEFAULT_IMAGE from Maven Central instead."
        exit 0 ;;
esac

# ---------------------------------------------------------------------------
# 1. Tools: a JDK with jlink + jmods, Maven, static busybox.
need_apt() { # package, what for
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing Debian package $1 ($2)"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null; then
            apt-get update -q >/dev/null || die "apt-get update failed (Debian mirrors unreachable?)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null \
                || die "could not install Debian package $1 ($2)"
        fi
    else
        die "missing $2: install the Debian package $1"
    fi
}

find_jdk() {
    local c
    for c in ${KAFKA_IMAGE_JDK:-} ${JAVA_HOME:-} /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64 /usr/lib/jvm/*; do
        [ -n "$c" ] && [ -x "$c/bin/jlink" ] && [ -x "$c/bin/jdeps" ] && [ -f "$c/jmods/java.base.jmod" ] && { echo "$c"; return 0; }
    done
    return 1
}
JDK="$(find_jdk)" || { need_apt openjdk-17-jdk-headless "a JDK 17+ with jlink and jmods"; JDK="$(find_jdk)" || die "no JDK with bin/jlink and jmods/ found (set KAFKA_IMAGE_JDK)"; }
command -v mvn >/dev/null 2>&1 || need_apt maven "Maven, to fetch the Kafka jars"
command -v unzip >/dev/null 2>&1 || need_apt unzip "unzip, to inspect the jars"
BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ] && file -L "$b" 2>/dev/null | grep -q 'statically linked'; then BUSYBOX="$b"; break; fi
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then BUSYBOX="$b"; break; fi
done
[ -n "$BUSYBOX" ] || { need_apt busybox-static "a static busybox for the image's /bin/sh"; BUSYBOX=/bin/busybox; }

# ---------------------------------------------------------------------------
# 2. Up to date already? The label hashes every input of the image.
INPUTS_HASH="$( {
    cat "$HERE/pom.xml" "$HERE/build-image.sh" "$HERE"/image/*
    cat "$JDK/release"
    sha256sum "$BUSYBOX" | cut -d' ' -f1
} | sha )"
if [ "${KAFKA_IMAGE_FORCE:-0}" != 1 ] \
    && [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null)" = "$INPUTS_HASH" ]; then
    say "image $IMAGE is up to date (inputs $INPUTS_HASH); nothing to do."
    exit 0
fi
say "building $IMAGE (inputs $INPUTS_HASH) in $BUILD_DIR, JDK $JDK"
mkdir -p "$CTX"

# stamp helpers: a step is done when its stamp file holds the expected hash
done_step() { [ -f "$BUILD_DIR/$1.stamp" ] && [ "$(cat "$BUILD_DIR/$1.stamp")" = "$2" ]; }
mark_step() { echo "$2" > "$BUILD_DIR/$1.stamp"; }

# ---------------------------------------------------------------------------
# 3. Kafka jars + runtime deps + log4j2 backend (Maven Central).
JARS_HASH="$(sha < "$HERE/pom.xml")"
if done_step jars "$JARS_HASH" && [ -d "$CTX/libs" ]; then
    say "jars: cached ($(find "$CTX/libs" -name "*.jar" | wc -l) jars)"
else
    say "jars: mvn dependency:copy-dependencies"
    rm -rf "$CTX/libs" "$CTX/libs.tmp"
    if ! mvn -B -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$CTX/libs.tmp" > "$BUILD_DIR/mvn.log" 2>&1; then
        tail -n 30 "$BUILD_DIR/mvn.log" >&2
        die "Maven could not fetch the Kafka jars (is Maven Central reachable? full log: $BUILD_DIR/mvn.log)"
    fi
    ls "$CTX/libs.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after mvn"
    mv "$CTX/libs.tmp" "$CTX/libs"
    mark_step jars "$JARS_HASH"
    say "jars: $(find "$CTX/libs" -name "*.jar" | wc -l) jars, $(du -sh "$CTX/libs" | cut -f1)"
fi

# ---------------------------------------------------------------------------
# 4. JDK modules the jars need (jdeps), plus a few that are only loaded
#    reflectively / as services. Modular jars confuse jdeps' module
#    resolution, so it analyses all classes unpacked into one tree.
EXTRA_MODULES="jdk.crypto.ec,jdk.management,jdk.zipfs,jdk.naming.dns,jdk.net,jdk.unsupported"
FALLBACK_MODULES="java.base,java.compiler,java.desktop,java.management,java.naming,java.rmi,java.scripting,java.security.jgss,java.security.sasl,java.sql,jdk.unsupported"
MODS_HASH="$( { echo "$JARS_HASH"; cat "$JDK/release"; echo "$EXTRA_MODULES"; } | sha )"
if done_step modules "$MODS_HASH" && [ -s "$BUILD_DIR/modules.txt" ]; then
    say "modules: cached ($(cat "$BUILD_DIR/modules.txt"))"
else
    say "modules: jdeps --print-module-deps (takes ~20 s)"
    classes="$BUILD_DIR/classes"
    rm -rf "$classes" && mkdir -p "$classes"
    for j in "$CTX"/libs/*.jar; do unzip -qo "$j" '*.class' -d "$classes" 2>/dev/null || true; done
    find "$classes" -name module-info.class -delete
    rm -rf "$classes/META-INF"
    if mods="$("$JDK/bin/jdeps" --ignore-missing-deps --print-module-deps -q "$classes" 2>/dev/null | tail -1)" \
        && [[ "$mods" =~ ^java\.base ]]; then
        :
    else
        say "modules: jdeps failed, using the known-good list"
        mods="$FALLBACK_MODULES"
    fi
    rm -rf "$classes"
    echo "$mods,$EXTRA_MODULES" | tr ',' '\n' | sort -u | paste -sd, > "$BUILD_DIR/modules.txt"
    mark_step modules "$MODS_HASH"
    say "modules: $(cat "$BUILD_DIR/modules.txt")"
fi
MODULES="$(cat "$BUILD_DIR/modules.txt")"

# ---------------------------------------------------------------------------
# 5. jlink JRE. The AWT/sound/font natives of java.desktop (pulled in for
#    java.beans) are never used by a headless broker and would drag X11,
#    freetype, etc. into the image, so they are removed.
JRE_HASH="$( { echo "$MODULES"; cat "$JDK/release"; echo v3; } | sha )"
if done_step jre "$JRE_HASH" && [ -x "$CTX/jre/bin/java" ]; then
    say "jre: cached ($(du -sh "$CTX/jre" | cut -f1))"
else
    say "jre: jlink $MODULES"
    rm -rf "$CTX/jre"
    "$JDK/bin/jlink" --add-modules "$MODULES" --strip-debug --no-man-pages --no-header-files \
        --compress=2 --output "$CTX/jre" || die "jlink failed"
    (cd "$CTX/jre/lib" && rm -f libawt.so libawt_headless.so libawt_xawt.so libfontmanager.so \
        libjavajpeg.so libjawt.so libjsound.so liblcms.so libmlib_image.so libsplashscreen.so)
    # Default CDS archive for the JDK classes: faster JVM start.
    "$CTX/jre/bin/java" -Xshare:dump >/dev/null 2>&1 || say "jre: (CDS archive not generated; fine)"
    mark_step jre "$JRE_HASH"
    say "jre: $(du -sh "$CTX/jre" | cut -f1)"
fi

# ---------------------------------------------------------------------------
# 6. Base filesystem: busybox, the shared libraries the JRE and the jars'
#    JNI libraries link, /tmp (1777), /etc basics, the data directory.
BASE="$CTX/base"
rm -rf "$BASE" && mkdir -p "$BASE"/{bin,etc,tmp,lib64,var/lib/kafka/data,root}
chmod 1777 "$BASE/tmp"
cp "$BUSYBOX" "$BASE/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$BASE/bin/$applet"
done

natives="$BUILD_DIR/natives"
rm -rf "$natives" && mkdir -p "$natives"
for j in "$CTX"/libs/*.jar; do
    for so in $(unzip -Z1 "$j" 2>/dev/null | grep -E '(linux|Linux)/(amd64|x86_64)/[^/]+\.so$' || true); do
        unzip -qo "$j" "$so" -d "$natives"
    done
done
libs_missing=""
while read -r lib; do
    case "$lib" in
        /*) [ -e "$lib" ] || continue
            mkdir -p "$BASE$(dirname "$lib")"
            cp -L "$lib" "$BASE$lib" ;;
        *)  libs_missing="$libs_missing $lib" ;;
    esac
done < <(find "$CTX/jre" "$natives" -type f \( -name '*.so' -o -path '*/bin/*' \) -print0 \
            | xargs -0 ldd 2>/dev/null \
            | awk '/=> not found/ {print $1; next} /=>/ {print $3; next} /^\t\/.*\(0x/ {print $1}' \
            | sort -u)
# "not found" libraries that the JRE itself provides are resolved at run time
for lib in $libs_missing; do
    find "$CTX/jre" -name "$lib" | grep -q . || say "WARNING: shared library $lib not found on the host"
done
rm -rf "$natives"
[ -e "$BASE/lib64/ld-linux-x86-64.so.2" ] || die "dynamic loader not collected (ldd output unexpected)"
cat > "$BASE/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$BASE/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "hosts: files dns" > "$BASE/etc/nsswitch.conf"

# Kafka scripts and configuration from the repo.
rm -rf "$CTX/kafka" && mkdir -p "$CTX/kafka/bin" "$CTX/kafka/config"
install -m 0755 "$HERE/image/start-kafka.sh" "$CTX/kafka/bin/start-kafka.sh"
install -m 0644 "$HERE/image/server.properties" "$HERE/image/log4j2.properties" "$CTX/kafka/config/"
install -m 0644 "$HERE/image/Dockerfile" "$CTX/Dockerfile"

# Pre-formatted storage for the default cluster id / node id: a container's
# first start then needs no separate StorageTool JVM (start-kafka.sh discards
# it if the container's settings differ).
# shellcheck disable=SC2016
CLUSTER_ID="$(sed -n 's/^CLUSTER_ID="\${CLUSTER_ID:-\(.*\)}"$/\1/p' "$HERE/image/start-kafka.sh")"
[ -n "$CLUSTER_ID" ] || die "could not read the default CLUSTER_ID from image/start-kafka.sh"
fmt_conf="$BUILD_DIR/format.properties"
{ cat "$HERE/image/server.properties"
  echo "log.dirs=$BASE/var/lib/kafka/data"
  echo "advertised.listeners=PLAINTEXT://127.0.0.1:9092,BROKER://127.0.0.1:9094"
} > "$fmt_conf"
"$CTX/jre/bin/java" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$HERE/image/log4j2.properties" \
    -Dkafka.root.loglevel=WARN -cp "$CTX/libs/*" kafka.tools.StorageTool format \
    -t "$CLUSTER_ID" -c "$fmt_conf" >/dev/null || die "StorageTool format (pre-formatting the image's data dir) failed"
rm -f "$fmt_conf"
echo "$CLUSTER_ID" > "$BASE/var/lib/kafka/preformatted"

# ---------------------------------------------------------------------------
# 7. docker build (the classic builder: no buildx plugin needed).
dbuild() { # tag, extra args...
    local tag=$1; shift
    DOCKER_BUILDKIT=0 docker build -q "$@" -t "$tag" "$CTX" \
        2> >(grep -v -i 'legacy builder\|buildx\|DEPRECATED\|BuildKit\|environment-variable\|^ *$' >&2) >/dev/null
}

# 8. Class-data sharing: start the broker once in a container with
#    -XX:ArchiveClassesAtExit, stop it, keep the archive (cuts the broker's
#    start-up by about a third). KAFKA_IMAGE_CDS=0 skips it.
# (the archive records the jars' and the JRE's sizes and mtimes: include them)
CDS_HASH="$( { echo "$JRE_HASH $JARS_HASH"; find "$CTX/libs" "$CTX/jre/lib/modules" -printf '%p %s %T@\n' | sort; cat "$HERE/image/server.properties" "$HERE/image/log4j2.properties" "$HERE/image/Dockerfile"; } | sha )"
if [ "${KAFKA_IMAGE_CDS:-1}" = 0 ]; then
    say "cds: disabled (KAFKA_IMAGE_CDS=0)"
    rm -rf "$CTX/cds" && mkdir -p "$CTX/cds"
elif done_step cds "$CDS_HASH" && [ -s "$CTX/cds/kafka.jsa" ]; then
    say "cds: cached ($(du -sh "$CTX/cds/kafka.jsa" | cut -f1))"
else
    rm -rf "$CTX/cds" && mkdir -p "$CTX/cds"
    training_tag="robust-producer/kafka-cds-training:$$"
    training_ctr="robust-producer-kafka-cds-training-$$"
    trap 'docker rm -f "$training_ctr" >/dev/null 2>&1 || true; docker rmi "$training_tag" >/dev/null 2>&1 || true' EXIT
    say "cds: training run (start the broker once, record its classes)"
    dbuild "$training_tag" || die "docker build (training image) failed"
    docker run -d --name "$training_ctr" -e KAFKA_CDS=off \
        -e KAFKA_OPTS="-XX:ArchiveClassesAtExit=/tmp/kafka.jsa -Xlog:cds=off -Xlog:cds+dynamic=off" \
        "$training_tag" >/dev/null || die "could not start the CDS training container"
    started=""
    for _ in $(seq 1 360); do
        if docker logs "$training_ctr" 2>&1 | grep -q 'Kafka Server started'; then started=1; break; fi
        [ "$(docker inspect -f '{{.State.Running}}' "$training_ctr")" = true ] || break
        sleep 0.5
    done
    if [ -z "$started" ]; then
        docker logs --tail 30 "$training_ctr" >&2 || true
        die "the broker did not print 'Kafka Server started' within 180 s in the training container (log above)"
    fi
    docker stop -t 120 "$training_ctr" >/dev/null
    if docker cp "$training_ctr:/tmp/kafka.jsa" "$CTX/cds/kafka.jsa" 2>/dev/null && [ -s "$CTX/cds/kafka.jsa" ]; then
        mark_step cds "$CDS_HASH"
        say "cds: archive $(du -sh "$CTX/cds/kafka.jsa" | cut -f1)"
    else
        rm -rf "$CTX/cds" && mkdir -p "$CTX/cds"
        say "cds: WARNING: no archive was written; building without it"
    fi
    docker rm -f "$training_ctr" >/dev/null 2>&1 || true
    docker rmi "$training_tag" >/dev/null 2>&1 || true
    trap - EXIT
fi

say "docker build -t $IMAGE"
dbuild "$IMAGE" --label "$LABEL=$INPUTS_HASH" || die "docker build failed"
# earlier builds of this image, now untagged
docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE: $((size / 1024 / 1024)) MB in $(( $(now) - T0 )) s"

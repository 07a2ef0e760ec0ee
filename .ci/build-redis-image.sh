#!/usr/bin/env bash
# Builds a minimal Redis image from the host's Debian redis-server, because CI
# has no internet access and so cannot pull redis:7.2. The image holds only the
# server binary, its shared libraries and the dynamic loader.
# Usage: .ci/build-redis-image.sh [TAG]   (default tag: recovery-redis:7.0)
# Safe to run twice: does nothing when the image already exists.
set -euo pipefail

image_tag="${1:-recovery-redis:7.0}"

log() { echo "[build-redis-image] $*"; }

if docker image inspect "$image_tag" >/dev/null 2>&1; then
    log "image $image_tag already present, nothing to do"
    exit 0
fi

server_path="$(command -v redis-server || true)"
if [[ -z "$server_path" ]]; then
    log "redis-server not found on PATH: install it first (apt-get install -y redis-server)" >&2
    exit 1
fi
# Debian ships redis-server as a symlink to redis-check-rdb; the binary picks
# its mode from argv[0], so it is copied under the name redis-server.
server_binary="$(readlink -f "$server_path")"
log "packing $server_binary (from $server_path) and its libraries into $image_tag"

staging="$(mktemp -d)"
trap 'rm -rf "$staging" "$staging.tar"' EXIT

copy_with_path() {
    local source="$1" destination="$2"
    mkdir -p "$staging/$(dirname "$destination")"
    cp -L "$source" "$staging/$destination"
}

copy_with_path "$server_binary" /usr/bin/redis-server

# ldd lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
# "/lib64/ld-linux-x86-64.so.2 (0x...)" for the loader; vdso has no file.
library_count=0
while read -r library; do
    copy_with_path "$library" "$library"
    library_count=$((library_count + 1))
done < <(ldd "$server_binary" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }
')
if [[ "$library_count" -eq 0 ]]; then
    log "ldd listed no libraries for $server_binary: refusing to build a broken image" >&2
    exit 1
fi
log "copied $library_count libraries (loader included)"
mkdir -p "$staging/data" "$staging/tmp"
chmod 1777 "$staging/tmp"

tar -C "$staging" -cf "$staging.tar" .

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'WORKDIR /data' \
    --change 'EXPOSE 6379' \
    --change 'CMD ["/usr/bin/redis-server","--protected-mode","no"]' \
    "$staging.tar" "$image_tag" >/dev/null

# Prove the image works: testcontainers waits for this exact log line.
container_id="$(docker run -d --rm "$image_tag")"
ready=no
for _ in $(seq 1 50); do
    if docker logs "$container_id" 2>&1 | grep -q "Ready to accept connections"; then
        ready=yes
        break
    fi
    sleep 0.2
done
docker rm -f "$container_id" >/dev/null 2>&1 || true
if [[ "$ready" != yes ]]; then
    log "image $image_tag did not print 'Ready to accept connections' within 10 s; removing it" >&2
    docker image rm "$image_tag" >/dev/null 2>&1 || true
    exit 1
fi
log "image $image_tag built and verified"

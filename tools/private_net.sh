#!/usr/bin/env bash
# Run a command in a private network namespace whose only interface is loopback (up).
# Used for the Milvus 2.3.5 server, which listens on every interface: inside, nothing outside
# the namespace can reach it. Needs unshare(1) and ip(8) (util-linux, iproute2) and either root
# or unprivileged user namespaces.
set -euo pipefail
if [[ $# -eq 0 ]]; then
    echo "usage: tools/private_net.sh COMMAND [ARGS...]" >&2
    exit 2
fi
if [[ "${FACEGATE_IN_PRIVATE_NET:-}" == "1" ]]; then
    ip link set lo up
    exec "$@"
fi
for tool in unshare ip; do
    command -v "$tool" >/dev/null || { echo "tools/private_net.sh: '$tool' not found (install util-linux / iproute2)" >&2; exit 2; }
done
FACEGATE_IN_PRIVATE_NET=1 exec unshare --net --map-root-user "$0" "$@"

#!/usr/bin/env bash
# kube-apiserver and kube-controller-manager 1.20.2 for the fleet controller's tests (`make kube`).
#
# No package registry reachable here ships these binaries, but Debian bookworm's `kubernetes`
# source package (1.20.2, the full tree with its vendored Go modules) builds them with Debian's
# golang-go. So: install the build tools with apt-get, fetch that source package through apt (a
# private deb-src list pointing at the mirror this machine's apt already uses; hashes checked
# against the signed release files), build with the module proxy off, and install the two
# binaries into a cache outside the repo:
#
#   ${FACEGATE_KUBE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facegate/kube/1.20.2}/bin/
#
# One change to the source: its vendored github.com/modern-go/reflect2 is v1.0.1, which reads
# the Go runtime's map iterator through a layout Go 1.18 changed: built with Go >= 1.18 (bookworm
# has 1.19) the API server dies (`fatal error: fault` in runtime.mapiternext under reflect2's
# UnsafeIterate) as soon as json-iterator encodes a map, e.g. when a custom resource is written.
# reflect2 v1.0.2 fixes that, and bookworm packages it (golang-github-modern-go-reflect2-dev):
# its source replaces the vendored copy (json-iterator's vendored v1.1.10 builds against it).
#
# Idempotent: nothing is done when both binaries are there, report v1.20.2, and the stamp file
# next to them ($BIN_DIR/build-recipe) records this script's RECIPE revision or a later one;
# binaries from an older revision (or with no stamp: built before the reflect2 fix) are rebuilt.
# The build tree
# (about 3 GB with Go's build cache) is removed afterwards, failed or not; only the binaries stay.
# Takes 5 to 8 minutes on 2 cores (7.5 measured with other tests running).
set -euo pipefail

VERSION=1.20.2
SOURCE_PACKAGE=kubernetes
SUITE=bookworm
BINARIES=(kube-apiserver kube-controller-manager)
# What the binaries are built from and how; raise it when that changes, so older builds are redone.
#   1 (no stamp): Debian's source as is        2: reflect2 v1.0.2 from Debian swapped into vendor/
RECIPE=2
REFLECT2_PACKAGE=golang-github-modern-go-reflect2-dev
REFLECT2_MIN_VERSION=1.0.2
REFLECT2_SOURCE=/usr/share/gocode/src/github.com/modern-go/reflect2
KUBE_DIR=${FACEGATE_KUBE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/facegate/kube/$VERSION}
BIN_DIR=$KUBE_DIR/bin
STAMP=$BIN_DIR/build-recipe

say() { echo "build_kube: $*" >&2; }

installed() {
    local name
    for name in "${BINARIES[@]}"; do
        [[ -x $BIN_DIR/$name ]] || return 1
        "$BIN_DIR/$name" --version 2>/dev/null | grep -qx "Kubernetes v$VERSION" || return 1
    done
}

# the recipe revision the installed binaries were built with (0: no stamp, built before stamps)
built_recipe() {
    local recipe
    recipe=$(head -n1 "$STAMP" 2>/dev/null) || recipe=
    [[ $recipe =~ ^[0-9]+$ ]] && echo "$recipe" || echo 0
}

if installed && (($(built_recipe) >= RECIPE)); then
    say "kube-apiserver and kube-controller-manager v$VERSION (build recipe $(built_recipe)) already in $BIN_DIR"
    exit 0
fi
if installed; then
    say "rebuilding: the binaries in $BIN_DIR are from build recipe $(built_recipe), this is $RECIPE"
fi

# --- build tools (Debian packages; sudo only when not root, as the other make targets do)
SUDO=$([[ $(id -u) == 0 ]] || echo sudo)
needed=()
command -v go >/dev/null || needed+=(golang-go)
command -v dpkg-source >/dev/null || needed+=(dpkg-dev)
command -v rsync >/dev/null || needed+=(rsync)
command -v make >/dev/null || needed+=(make)
[[ -d $REFLECT2_SOURCE ]] || needed+=("$REFLECT2_PACKAGE")
if ((${#needed[@]})); then
    say "installing ${needed[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}"
fi
GO=$(command -v go)
say "using $("$GO" version)"
reflect2_version=$(dpkg-query -W -f '${Version}' "$REFLECT2_PACKAGE" 2>/dev/null) || reflect2_version=
if [[ -z $reflect2_version ]] || ! dpkg --compare-versions "$reflect2_version" ge "$REFLECT2_MIN_VERSION" \
        || [[ ! -d $REFLECT2_SOURCE ]]; then
    say "need $REFLECT2_PACKAGE >= $REFLECT2_MIN_VERSION (has ${reflect2_version:-none})"; exit 1
fi

started=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/facegate-kube-build.XXXXXX")
cleanup() { chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# --- the source package, from the Debian mirror this machine's apt is configured with
MIRROR=$(apt-get indextargets --format '$(REPO_URI)' "Release: $SUITE" 'Target-Of: deb' 2>/dev/null | head -n1)
MIRROR=${MIRROR:-http://deb.debian.org/debian/}
say "fetching the $SUITE $SOURCE_PACKAGE source package from $MIRROR"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$WORK/apt/sources.list"
APT_PRIVATE=(
    -o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache"
    -o Debug::NoLocking=true -o "APT::Sandbox::User=$(id -un)" -qq  # our own temp dirs: no lock, no _apt
)
apt-get "${APT_PRIVATE[@]}" update
(cd "$WORK" && apt-get "${APT_PRIVATE[@]}" source --download-only "$SOURCE_PACKAGE")
dsc=$(ls "$WORK"/"${SOURCE_PACKAGE}"_*.dsc)
case $dsc in
    *really$VERSION* | *_$VERSION-*) ;;
    *) say "expected Kubernetes $VERSION, $SUITE has $(basename "$dsc")"; exit 1 ;;
esac
# apt checked every file against the signed Sources index; unpack and apply Debian's patches
dpkg-source --no-check -x "$dsc" "$WORK/src" >/dev/null

# --- reflect2 v1.0.2 (Debian's package) in place of the vendored v1.0.1, which Go >= 1.18 breaks.
# The build is GOPATH-mode (hack/lib/init.sh sets GO111MODULE=off), so only the files count; the
# version in go.mod's replace directive and vendor/modules.txt is moved along so the tree says
# what it holds (and module-mode tools find the two consistent). The vendored LICENSE stays.
say "replacing vendored reflect2 with $REFLECT2_PACKAGE $reflect2_version"
(
    cd "$WORK/src"
    vendored=vendor/github.com/modern-go/reflect2
    [[ -d $vendored ]] || { say "no $vendored in the source"; exit 1; }
    find "$vendored" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    find "$REFLECT2_SOURCE" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
        -exec cp -t "$vendored" {} +
    module=github.com/modern-go/reflect2
    new=v$(upstream=${reflect2_version#*:} && echo "${upstream%-*}")  # 1.0.2-2 -> v1.0.2
    sed -i "s#^\(\s*$module => $module\) v1\.0\.1\$#\1 $new#" go.mod
    sed -i -e "s#^\# $module v1\.0\.1 => $module v1\.0\.1\$#\# $module $new => $module $new#" \
        -e "s#^\# $module => $module v1\.0\.1\$#\# $module => $module $new#" vendor/modules.txt
    [[ $(grep -c "$module.* $new\$" go.mod) == 1 && $(grep -c "^# $module.* $new\$" vendor/modules.txt) == 2 ]] ||
        { say "go.mod / vendor/modules.txt do not list reflect2 v1.0.1 as expected"; exit 1; }
    grep -q 'func mapiterinit' "$vendored/go_above_118.go" ||
        { say "$vendored has no Go 1.18 map iterator (go_above_118.go)"; exit 1; }
)

# --- build: the vendored modules only (no module proxy), static binaries as Debian builds them
say "building ${BINARIES[*]} (5 to 8 minutes on 2 cores)"
build_started=$(date +%s)
(
    cd "$WORK/src"
    export GOPATH=$WORK/gopath GOCACHE=$WORK/gocache GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOTOOLCHAIN=local
    make WHAT="${BINARIES[*]/#/cmd/}" >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; exit 1; }
)
built=$(date +%s)

mkdir -p "$BIN_DIR"
for name in "${BINARIES[@]}"; do
    install -m 0755 "$WORK/src/_output/bin/$name" "$BIN_DIR/$name.new"
    mv -f "$BIN_DIR/$name.new" "$BIN_DIR/$name"
done
installed || { say "the built binaries do not report v$VERSION: $("$BIN_DIR/kube-apiserver" --version)"; exit 1; }
printf '%s\n%s\n' "$RECIPE" "$(basename "$dsc" .dsc), $("$GO" version | cut -d' ' -f3), $REFLECT2_PACKAGE $reflect2_version" \
    >"$STAMP.new"
mv -f "$STAMP.new" "$STAMP"
say "$("$BIN_DIR/kube-apiserver" --version) installed in $BIN_DIR" \
    "(build $((built - build_started)) s, $(($(date +%s) - started)) s in all)"

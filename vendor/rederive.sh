#!/usr/bin/env bash
# Re-derives vendor/candle-core from the published crates.io release plus the numbered patch
# series in vendor/patches (see vendor/README.md).
#
#   bash vendor/rederive.sh            check: exit 1, printing the differences, if vendor/candle-core
#                                      is not exactly the release (stripped) plus the series
#   bash vendor/rederive.sh --write    regenerate vendor/candle-core from the release and the series
#   bash vendor/rederive.sh --git DIR  make DIR a git repository: the stripped release as the first
#                                      commit (tag `pristine`), then one commit per patch on branch
#                                      `phi4r`, for editing or rebasing the series (vendor/README.md)
#   bash vendor/rederive.sh --pristine DIR   only unpack the stripped release into DIR
#
# The .crate file is cached in ${PHI4R_CACHE:-$HOME/.cache/phi4r}; without a cache it is downloaded
# from static.crates.io. Its sha256 is the `cksum` of the release in the crates.io index
# (https://index.crates.io/ca/nd/candle-core), which is also what Cargo.lock records for it.
# CANDLE_VERSION and CANDLE_SHA256 override the release (for --pristine of a newer one).
set -euo pipefail

VERSION="${CANDLE_VERSION:-0.11.1}"
SHA256="${CANDLE_SHA256:-d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325}"
CRATE="candle-core-$VERSION.crate"
URL="https://static.crates.io/crates/candle-core/$CRATE"

VENDOR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="$VENDOR/candle-core"
PATCHES="$VENDOR/patches"
CACHE="${PHI4R_CACHE:-$HOME/.cache/phi4r}"

mode=check dir=
case "${1:-}" in
    "") ;;
    --write) mode=write ;;
    --git|--pristine) mode="${1#--}"; dir="${2:?$1 needs a directory}" ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "rederive.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

die() { echo "rederive.sh: $*" >&2; exit 1; }
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. The release, verified.
crate="$CACHE/$CRATE"
if [[ ! -f "$crate" || "$(sha256 "$crate")" != "$SHA256" ]]; then
    crate="$tmp/$CRATE"
    if command -v curl >/dev/null; then
        curl -fsSL --retry 2 --connect-timeout 15 -o "$crate" "$URL" || rc=$?
    else
        wget -q -T 15 -O "$crate" "$URL" || rc=$?
    fi
    [[ -z "${rc:-}" ]] || die "could not download $URL (no network? exit status $rc).
Put the file at $CACHE/$CRATE (or set PHI4R_CACHE) to run offline."
    got="$(sha256 "$crate")"
    [[ "$got" == "$SHA256" ]] || die "$URL has sha256 $got, expected $SHA256"
    if mkdir -p "$CACHE" 2>/dev/null && cp "$crate" "$CACHE/$CRATE.tmp.$$" 2>/dev/null; then
        mv "$CACHE/$CRATE.tmp.$$" "$CACHE/$CRATE"
    fi
fi

# 2. Unpacked and stripped the way vendor/candle-core is: no benches, examples or tests (nor their
#    [[example]], [[test]] and [[bench]] targets in Cargo.toml), no Cargo.toml.orig, no Cargo.lock.
tar -xzf "$crate" -C "$tmp"
tree="$tmp/candle-core-$VERSION"
[[ -f "$tree/Cargo.toml" ]] || die "$CRATE did not unpack to candle-core-$VERSION/"
rm -rf "$tree/benches" "$tree/examples" "$tree/tests" "$tree/Cargo.toml.orig" "$tree/Cargo.lock"
awk '/^\[\[(example|test|bench)\]\]$/ { skip = 1 } skip && /^$/ { skip = 0; next } !skip' \
    "$tree/Cargo.toml" >"$tmp/Cargo.toml" && mv "$tmp/Cargo.toml" "$tree/Cargo.toml"

if [[ $mode == pristine ]]; then
    mkdir -p "$dir" && cp -R "$tree/." "$dir/"
    echo "stripped candle-core $VERSION in $dir"
    exit 0
fi

# 3. The series, in order. git apply (no fuzz) outside any repository; patch -p1 -F0 without git.
shopt -s nullglob
series=("$PATCHES"/[0-9][0-9][0-9][0-9]-*.patch)
((${#series[@]})) || die "no patches in $PATCHES"
if [[ $mode == git ]]; then
    [[ ! -e "$dir" ]] || die "$dir exists"
    mv "$tree" "$dir"
    export GIT_AUTHOR_NAME=rederive GIT_AUTHOR_EMAIL=rederive@localhost
    export GIT_COMMITTER_NAME=rederive GIT_COMMITTER_EMAIL=rederive@localhost
    git -C "$dir" init -q
    git -C "$dir" symbolic-ref HEAD refs/heads/phi4r
    git -C "$dir" add -A
    git -C "$dir" commit -qm "candle-core $VERSION (crates.io), stripped as in vendor/candle-core"
    git -C "$dir" tag pristine
    git -C "$dir" am -q --keep-cr "${series[@]}" || die "git am failed in $dir"
    git -C "$dir" log --oneline pristine.. | cat
    exit 0
fi
for p in "${series[@]}"; do
    if command -v git >/dev/null; then
        (cd "$tree" && GIT_CEILING_DIRECTORIES="$tmp" git apply -p1 "$p")
    else
        patch -s -p1 -F0 --no-backup-if-mismatch -d "$tree" <"$p"
    fi || die "$(basename "$p") does not apply to candle-core $VERSION plus the patches before it"
done

# 4. Compare, or write.
if [[ $mode == write ]]; then
    rm -rf "$TARGET"
    cp -R "$tree" "$TARGET"
    echo "vendor/candle-core regenerated: candle-core $VERSION + ${#series[@]} patches"
    exit 0
fi
if ! diff -ru "$tree" "$TARGET" >"$tmp/diff"; then
    sed -e "s|$tree|release+series|g" -e "s|$TARGET|vendor/candle-core|g" "$tmp/diff"
    die "vendor/candle-core differs from candle-core $VERSION + vendor/patches (diff above).
Edit the series, not the tree (vendor/README.md), then run: bash vendor/rederive.sh --write"
fi
echo "vendor/candle-core = candle-core $VERSION (sha256 $SHA256) + ${#series[@]} patches"

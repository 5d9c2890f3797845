#!/bin/sh
# Installs the Debian packages the tests (and, given as arguments, the benchmarks) need,
# or says what is missing when not root.
# openssl: the CLI is the independent judge of our certificates and signatures.
set -eu
missing=""
for cmd in openssl "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || missing="$missing $cmd"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
else
    echo "missing system packages:$missing" >&2
    echo "install them as root (Debian: apt-get install$missing) and run make again" >&2
    exit 1
fi

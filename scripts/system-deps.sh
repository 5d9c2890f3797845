#!/bin/sh
# Installs the Debian packages the tests (and, given as extra arguments, the benchmarks) need,
# or says what is missing when not root. Each need is "package:command-or-file".
#   openssl      the CLI, the independent judge of our certificates and signatures
#   softhsm2     a real PKCS#11 token for the hardware-key tests
#   gcc, libssl-dev  to build the SKF and SDF simulator libraries the device tests load
#   fonts-wqy-microhei  a CJK font with Latin glyphs: seal pictures and the text of our PDFs
#   chromium     the browser the page tests drive through Playwright (Debian's, not a download)
set -eu
needs="openssl:openssl softhsm2:softhsm2-util gcc:gcc libssl-dev:/usr/include/openssl/evp.h"
needs="$needs fonts-wqy-microhei:/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
needs="$needs chromium:/usr/bin/chromium"
for extra in "$@"; do needs="$needs $extra:$extra"; done
missing=""
for need in $needs; do
    package=${need%%:*}
    probe=${need#*:}
    case "$probe" in
        /*) [ -e "$probe" ] || missing="$missing $package" ;;
        *) command -v "$probe" >/dev/null 2>&1 || missing="$missing $package" ;;
    esac
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

#!/usr/bin/env bash
# Debian's Chromium for the public pages' browser tests (driven by Playwright, never a downloaded
# browser): installed when absent, as the PostgreSQL script does.
set -euo pipefail
die() { echo "chromium: $*" >&2; exit 1; }
if [ -x /usr/bin/chromium ]; then exit 0; fi
[ "$(id -u)" = 0 ] || die "no /usr/bin/chromium; install Debian's 'chromium' package"
echo "chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null || die "apt-get install chromium failed"

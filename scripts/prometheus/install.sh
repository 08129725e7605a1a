#!/usr/bin/env bash
# Debian's Prometheus (prometheus and promtool) for the tests that evaluate the chart's dashboards
# and alert rules against the local stack: installed when absent, as the PostgreSQL script does.
# The package's own service is not used (the tests start their own server on loopback).
set -euo pipefail
die() { echo "prometheus: $*" >&2; exit 1; }
if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; then exit 0; fi
[ "$(id -u)" = 0 ] || die "no /usr/bin/prometheus; install Debian's 'prometheus' package"
echo "prometheus: installing Debian's prometheus package" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d: do not start the packaged daemon (no init here, and the tests run their own).
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
{ apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; } \
  || die "apt-get install prometheus failed"

#!/usr/bin/env bash
# Install the Debian tools the test suite drives, when they are missing: curl, nghttp and
# h2load (nghttp2-client), nghttpd (nghttp2-server: the client tests), nginx (the gRPC reverse
# proxy of tests/grpc), HAProxy (the proxy of tests/integration/test_haproxy.py), Chromium with
# its WebDriver (the browser test of WebSocket over HTTP/2), and ss (iproute2).
#
# Installing nginx or HAProxy must not start Debian's own service (nginx would listen on port
# 80 of every interface), so a policy-rc.d that forbids service starts is put in place for the
# install when none exists, and removed afterwards.
set -euo pipefail

declare -A package_of=(
    [curl]=curl [nghttp]=nghttp2-client [h2load]=nghttp2-client [nghttpd]=nghttp2-server
    [nginx]=nginx [haproxy]=haproxy
    [chromium]=chromium [chromedriver]=chromium-driver [ss]=iproute2
)
missing=()
for command in "${!package_of[@]}"; do
    command -v "$command" >/dev/null || missing+=("${package_of[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing ${missing[*]}" >&2

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

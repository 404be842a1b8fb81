#!/bin/sh
# The HTML report's browser test needs Chromium. `make test` calls this first: it installs
# Debian's chromium through apt when it is missing and this machine may (root with apt-get, as
# CI is); elsewhere it says why the test will be skipped. Already installed: nothing to do.
set -eu
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "no chromium, and no root apt-get to install it: the report's browser test will be" \
        "skipped (install it with: sudo apt-get install chromium)" >&2
    exit 0
fi
echo "installing chromium for the report's browser test (apt-get install chromium)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null

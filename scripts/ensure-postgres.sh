#!/bin/sh
# The store's tests run against PostgreSQL too, started by the tests in a temporary folder. `make
# test` calls this first: it installs Debian's postgresql through apt when its server is missing
# and this machine may (root with apt-get, as CI is); elsewhere it says why those tests skip.
set -eu
if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "no PostgreSQL server, and no root apt-get to install it: the PostgreSQL tests will be" \
        "skipped (install it with: sudo apt-get install postgresql)" >&2
    exit 0
fi
echo "installing PostgreSQL for the store's tests (apt-get install postgresql)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null

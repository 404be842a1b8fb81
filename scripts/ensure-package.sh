#!/bin/sh
# ensure-package.sh PACKAGE PURPOSE PROGRAM...: a test needs a real part from Debian (Chromium for
# the report's browser test, PostgreSQL for the store's). `make test` calls this first. When none
# of the PROGRAMs is there (a command name, or a path pattern with a /), it installs PACKAGE
# through apt if this machine may (root with apt-get, as CI is); elsewhere it says why the tests
# that need it will be skipped. Already installed: nothing to do.
set -eu
package=$1
purpose=$2
shift 2
for program in "$@"; do
    case $program in
        */*) if ls $program >/dev/null 2>&1; then exit 0; fi ;;
        *) if command -v "$program" >/dev/null 2>&1; then exit 0; fi ;;
    esac
done
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "no $package, and no root apt-get to install it: $purpose will be skipped" \
        "(install it with: sudo apt-get install $package)" >&2
    exit 0
fi
echo "installing $package for $purpose (apt-get install $package)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "$package" >/dev/null

#!/bin/sh
# Debian's chromium for the report.html browser test (tests/test_htmlreport.py), installed where
# this machine allows it: as root, or with password-less sudo, through apt-get. Elsewhere it says
# how to get one and exits 0: the browser test is then skipped with that reason (and `.ci/run`,
# which sets AUTOFIX_REQUIRE_BROWSER=1, fails instead of skipping).
for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done
install='apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null'
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing Debian's chromium for the report.html browser test" >&2
        sh -c "$install" && exit 0
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "installing Debian's chromium for the report.html browser test (sudo)" >&2
        sudo -n sh -c "$install" && exit 0
    fi
fi
echo "note: no chromium on PATH and it could not be installed here; the report.html browser test" \
     "will be skipped (install it with: sudo apt-get install -y chromium)" >&2
exit 0

#!/usr/bin/env bash
# Installs the non-Python tools the test suite drives, when missing:
# npm's wscat (the client API Gateway's docs use) into ./node_modules, and Debian's chromium
# (the browser tests in tests/browser drive /usr/bin/chromium through Playwright).
# Quiet when all is well; loud when something could not be installed, but never failing: the
# tests that need the missing tool then fail and name it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/wscat ] && command -v npm >/dev/null 2>&1; then
    npm install --silent --no-audit --no-fund --prefix . wscat@6 >/dev/null 2>&1 || echo "warning: npm install wscat failed" >&2
fi

chromium=${WSCHAT_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log=$(mktemp)
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
            echo "warning: could not install chromium (apt-get update && apt-get install -y chromium):" >&2
            tail -n 20 "$log" >&2
        fi
        rm -f "$log"
    fi
    if [ ! -x "$chromium" ]; then
        echo "warning: no browser at $chromium: the browser tests (tests/browser) will fail." >&2
        echo "         Install Debian's chromium as root: apt-get install chromium" >&2
    fi
fi
# checkov, in a virtualenv of its own (see the script for why).
bash scripts/install-checkov.sh || echo "warning: checkov could not be installed: the template scan test will fail." >&2
exit 0

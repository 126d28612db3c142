#!/usr/bin/env bash
# Installs the non-Python tools the test suite drives, when missing:
# npm's wscat (the client API Gateway's docs use) into ./node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/wscat ] && command -v npm >/dev/null 2>&1; then
    npm install --silent --no-audit --no-fund --prefix . wscat@6 >/dev/null 2>&1 || echo "warning: npm install wscat failed" >&2
fi

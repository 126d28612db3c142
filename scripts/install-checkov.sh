#!/usr/bin/env bash
# Installs checkov (the template.yaml security scan tests/integration/test_security.py runs) into
# a virtualenv of its own, .venv/tools/checkov, when missing.
#
# Not in pyproject's dev extra: checkov pins boto3==1.35.49 (with botocore 1.35, which lacks what
# tests/unit/test_sigv4.py compares against), packaging<24 and networkx<2.7, so sharing .venv
# would downgrade the project's own dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOV_VERSION=3.3.30
TOOL=.venv/tools/checkov
if [ -x "$TOOL/bin/checkov" ] && "$TOOL/bin/python" -c "
import importlib.metadata, sys
sys.exit(importlib.metadata.version('checkov') != '$CHECKOV_VERSION')" 2>/dev/null; then
    exit 0
fi
PYTHON=${PYTHON:-$(command -v .venv/bin/python || command -v python3)}
rm -rf "$TOOL"
"$PYTHON" -m venv "$TOOL"
"$TOOL/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"

#!/usr/bin/env bash
# Installs the AWS SAM CLI (for `sam validate --lint`, which tests/unit/test_template.py runs on
# template.yaml) into a virtualenv of its own, .venv/tools/sam, when missing.
#
# Not in pyproject's dev extra: aws-sam-cli pins its own boto3, cfn-lint and Flask ranges, which
# would move the project's own dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
SAM_VERSION=1.170.0
TOOL=.venv/tools/sam
if [ -x "$TOOL/bin/sam" ] && "$TOOL/bin/python" -c "
import importlib.metadata, sys
sys.exit(importlib.metadata.version('aws-sam-cli') != '$SAM_VERSION')" 2>/dev/null; then
    exit 0
fi
PYTHON=${PYTHON:-$(command -v .venv/bin/python || command -v python3)}
rm -rf "$TOOL"
"$PYTHON" -m venv "$TOOL"
"$TOOL/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_VERSION"

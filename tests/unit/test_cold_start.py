"""What a Lambda cold start imports: a handler pulls in neither the local gateway, websockets nor
the CLI, nor a store it was not asked for; and only the AWS adapters import boto3."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import wschat

HANDLERS = [
    "wschat.handlers.connect",
    "wschat.handlers.disconnect",
    "wschat.handlers.send_message",
    "wschat.handlers.default",
    "wschat.handlers.authorize",
    "wschat.handlers.page",
]
PACKAGE_DIR = Path(wschat.__file__).resolve().parent
AWS_ADAPTERS = {"storage/dynamodb.py", "delivery/aws.py", "delivery/sqs.py"}
# The test harness hands tests a boto3 @connections client; no handler imports it.
AWS_ADAPTERS |= {"testing/gateway.py"}
AWS_SDK = ("boto3", "botocore")

_PROBE = """
import json, sys
import {module} as handler
assert callable(handler.lambda_handler)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def modules_after_import() -> dict[str, set[str]]:
    """sys.modules after importing each handler alone in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSCHAT_")}
    # The same wschat these tests import, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")) if p
    )
    probes = {
        module: subprocess.Popen(
            [sys.executable, "-c", _PROBE.format(module=module)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for module in HANDLERS
    }
    loaded = {}
    for module, probe in probes.items():
        out, err = probe.communicate(timeout=60)
        assert probe.returncode == 0, f"importing {module} failed:\n{err}"
        loaded[module] = set(json.loads(out))
    return loaded


def _under(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("handler", HANDLERS)
def test_handler_imports_no_gateway_websockets_or_cli(
    handler: str, modules_after_import: dict[str, set[str]]
) -> None:
    loaded = modules_after_import[handler]

    assert handler in loaded
    assert _under(loaded, "websockets", "wschat.gateway", "wschat.cli") == []


@pytest.mark.parametrize("handler", HANDLERS)
def test_handler_opens_no_store_at_import(
    handler: str, modules_after_import: dict[str, set[str]]
) -> None:
    loaded = modules_after_import[handler]

    assert _under(loaded, "wschat.storage.sqlite", "wschat.storage.dynamodb") == []
    assert _under(loaded, "sqlite3", "_sqlite3") == [], "a DynamoDB Lambda never needs sqlite3"


# --- only the AWS adapters import the AWS SDK -----------------------------------------------


def aws_sdk_imports(source: str) -> list[int]:
    """Lines that import boto3 or botocore, at any depth: module level, in a function, through
    ``importlib.import_module("boto3")`` or ``__import__("botocore...")``."""

    def is_sdk(name: str | None) -> bool:
        return name is not None and name.split(".")[0] in AWS_SDK

    def names_sdk(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(is_sdk(alias.name) for alias in node.names)
        if isinstance(node, ast.ImportFrom):
            return node.level == 0 and is_sdk(node.module)
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            return (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and is_sdk(first.value)
            )
        return False

    lines = [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.stmt | ast.expr) and names_sdk(node)
    ]
    return sorted(lines)


def _package_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        yield path.relative_to(PACKAGE_DIR).as_posix(), path


def test_only_the_aws_adapters_import_boto3() -> None:
    offenders = [
        f"src/wschat/{name}:{line}"
        for name, path in _package_modules()
        if name not in AWS_ADAPTERS
        for line in aws_sdk_imports(path.read_text(encoding="utf-8"))
    ]

    assert offenders == [], "boto3/botocore belong in the AWS adapters only"


def test_the_scan_sees_the_delivery_adapters_function_level_imports() -> None:
    source = (PACKAGE_DIR / "delivery/aws.py").read_text(encoding="utf-8")

    assert aws_sdk_imports(source), "delivery/aws.py imports boto3 inside its methods"


@pytest.mark.parametrize(
    "source",
    [
        "import boto3",
        "import os, botocore.session",
        "from botocore.exceptions import ClientError",
        "import boto3.dynamodb.conditions as conditions",
        "def client():\n    import boto3\n    return boto3.client('s3')",
        "class Store:\n    def get(self):\n        from boto3.dynamodb.types import TypeSerializer",
        "import importlib\nsdk = importlib.import_module('boto3')",
        "sdk = __import__('botocore.config')",
    ],
)
def test_the_scan_finds_every_way_of_importing_the_sdk(source: str) -> None:
    assert aws_sdk_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import boto3x",
        "from . import boto3",
        "from .botocore import thing",
        "name = 'boto3'",
        "# import boto3",
        "import mypy_boto3_dynamodb",
    ],
)
def test_the_scan_ignores_what_is_not_the_sdk(source: str) -> None:
    assert aws_sdk_imports(source) == []

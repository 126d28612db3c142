"""``pip install`` gives a ``wschat`` command that serves another project's template from that
project's directory, with nothing of this repository on the path.

The wheel is built from the repository as pip builds it (an isolated build), installed into a
virtualenv of its own, and run from a copy of a third-party app (tests/fixtures/apps/chat_json)
in a temporary directory: ``wschat serve --template template.yaml``, as its README would say.
Its dependencies (boto3, websockets, ...) come from this project's virtualenv through a .pth
line, so the test needs the network only for the build backend, as ``pip install .`` does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from tests.integration.conftest import APPS, REPO, TIMEOUT, wait_for, ws_connect

from wschat.testing import ServeProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a virtualenv where the built wheel is installed."""
    root = tmp_path_factory.mktemp("install")
    # A copy of what the sdist holds, so the build's own files (build/, *.egg-info) are not
    # left in the repository.
    source = root / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = root / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    (wheel,) = wheels.glob("wschat-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = subprocess.run(
        [*pip, "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, f"pip install failed:\n{install.stdout}\n{install.stderr}"
    # The dependencies, from this virtualenv: a plain path, so its editable wschat (a .pth
    # hook) is not picked up.
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            text=True,
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def test_the_installed_package_is_the_wheels_with_its_data(installed: Path) -> None:
    probe = (
        "import json, pathlib, wschat, wschat.page as page; "
        "root = pathlib.Path(wschat.__file__).parent; "
        "print(json.dumps({'root': str(root), 'page': (page.WEB_DIR / 'index.html').is_file()}))"
    )
    found = json.loads(
        subprocess.check_output([str(installed / "python"), "-c", probe], cwd="/", text=True)
    )
    assert Path(found["root"]).is_relative_to(installed.parent), found  # not the repository's
    assert found["page"], "the chat page's files are in the wheel"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """Another project's directory: its template and code, nothing else."""
    directory = tmp_path / "someone-elses-app"
    shutil.copytree(APPS / "chat_json", directory)
    yield directory


def test_wschat_serves_another_projects_template_from_its_directory(
    installed: Path, project: Path, tmp_path: Path
) -> None:
    connections = project / "connections.json"
    env = {"PATH": f"{installed}:/usr/bin:/bin", "PYTHONPATH": ""}
    serve = ServeProcess(
        ["--template", "template.yaml", "--parameter", f"ConnectionsFile={connections}"],
        tmp_path,
        env,
        cwd=project,
        command=[str(installed / "wschat")],
    )
    with ExitStack() as stack:
        stack.callback(serve.close)
        serve.wait_ready(timeout=30)
        assert "Chat page" not in serve.urls  # the chat's page is not another app's
        alice = stack.enter_context(ws_connect(serve.websocket_url))
        bob = stack.enter_context(ws_connect(serve.websocket_url))
        wait_for(
            lambda: connections.exists() and len(json.loads(connections.read_text())) == 2,
            what="both connections in the app's own file",
        )
        bob.send(json.dumps({"action": "sendmessage", "data": "installed"}))
        assert alice.recv(timeout=TIMEOUT) == "installed"
    assert (project / "data").is_dir()  # its data dir is the project's own, by default
    assert not (project / "data" / "wschat.sqlite3").exists()  # and holds no chat store

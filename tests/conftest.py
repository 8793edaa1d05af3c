import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# tests never use the user's index or cache
os.environ.pop("ZOOINDEX_INDEX", None)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("ZOOINDEX_INDEX", raising=False)


@pytest.fixture
def run(capsys):
    """Run the CLI in this process: ``run("search", ...) -> (exit code, stdout, stderr)``."""
    from zooindex.cli import main

    def invoke(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


@pytest.fixture
def zoo(tmp_path):
    """The three-model zoo of ``support.data.three_model_zoo``, indexed (a test file's own
    ``zoo`` fixture takes precedence)."""
    import zooindex
    from support.data import three_model_zoo

    made = three_model_zoo(tmp_path)
    zooindex.add(made["folder"], index=made["index"])
    return made


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """An empty local Hugging Face hub the client is pointed at, with downloads in
    ``tmp_path/cache`` (a test file's own ``fake_hub`` takes precedence)."""
    from support.hf_server import FakeHub, point_client_at

    with FakeHub() as server:
        point_client_at(monkeypatch, server.endpoint, tmp_path / "hf_home")
        monkeypatch.setenv("ZOOINDEX_CACHE", str(tmp_path / "cache"))
        yield server

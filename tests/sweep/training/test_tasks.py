"""The task registry: built-in tasks and plug-ins found through the ``sweep.tasks`` entry points."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sweep.definition.spec import SweepSpec
from sweep.training import tasks
from sweep.training.tasks import get_task, task_names

PLUGIN_MODULE = "sweep_test_plugin_task"

PLUGIN_SOURCE = """
class TinyTask:
    name = "tiny"
    description = "a plug-in task installed while the process runs"

    def check_options(self, options):
        pass

    def run(self, config):
        return iter(())
"""


@pytest.fixture
def install_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Installs, when called, a package whose entry point registers the task ``tiny``."""

    def install() -> None:
        (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
        dist_info = tmp_path / "sweep_test_plugin-0.1.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: sweep-test-plugin\n")
        (dist_info / "entry_points.txt").write_text(
            f"[sweep.tasks]\ntiny = {PLUGIN_MODULE}:TinyTask\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))

    yield install
    # uninstalled again: later tests must not find a task whose files are gone
    sys.modules.pop(PLUGIN_MODULE, None)
    tasks._registered.cache_clear()


def test_task_names_does_not_rescan_the_installed_packages_on_every_call() -> None:
    task_names()
    before = tasks._registered.cache_info()
    for _ in range(3):
        assert {"digits-mlp", "npz-mlp", "synthetic"} <= set(task_names())
    after = tasks._registered.cache_info()
    assert after.misses == before.misses  # no new scan
    assert after.hits == before.hits + 3  # each call answered from the first one


def test_a_plugin_installed_since_the_first_scan_is_found_by_its_name(
    install_plugin: Callable[[], None],
) -> None:
    assert "tiny" not in task_names()  # scanned before the plug-in is installed
    install_plugin()
    assert SweepSpec.model_validate({"name": "uses-tiny", "task": "tiny"}).task == "tiny"
    assert get_task("tiny").description == "a plug-in task installed while the process runs"
    assert "tiny" in task_names()

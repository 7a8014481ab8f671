"""Every Python snippet of README.md runs as it is, in order, so the journeys cannot rot.

The snippets read `../shared/fixtures/...` like the README's install command: they run in a
work directory beside a `shared` link to the fixtures' parent, one fresh namespace each, with
what earlier snippets wrote (outputs/...) still there.
"""

import os
import pathlib
import re

import pytest

from conftest import fixture_dir

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_snippets():
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_has_its_journeys():
    titles = re.findall(r"^### (.+)$", README.read_text(), re.M)
    for journey in ("Load your own checkpoint", "Find directions", "Invert and edit a photo"):
        assert any(t.startswith(journey) for t in titles), titles
    assert len(python_snippets()) >= 5


def test_readme_snippets_run(tmp_path, monkeypatch):
    shared = fixture_dir("genforce_stylegan2_r32").parent.parent
    (tmp_path / "shared").symlink_to(shared, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for index, snippet in enumerate(python_snippets()):
        try:
            exec(compile(snippet, f"README.md python snippet {index}", "exec"), {})
        except Exception as error:
            pytest.fail(f"README snippet {index} failed: {error!r}\n{snippet}")
    assert os.path.isdir(work / "outputs" / "my_model")
    assert os.path.isdir(work / "outputs" / "tiny_run" / "model")

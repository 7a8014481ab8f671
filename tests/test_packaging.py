"""`ports/` and `configs/` install inside the jgan namespace, never as top-level packages."""

import importlib
import pathlib
import subprocess
import sys
import zipfile

from conftest import REPO


def test_editable_install_maps_ports_and_configs():
    ports = importlib.import_module("jgan.ports.genforce")
    configs = importlib.import_module("jgan.configs")
    assert pathlib.Path(ports.__file__).resolve().parent == REPO / "ports"
    assert pathlib.Path(configs.__file__).resolve().parent == REPO / "configs"


def test_wheel_puts_ports_and_configs_under_jgan(tmp_path):
    """The wheel `pip install .` builds (isolated build, as users get it)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("jgan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jgan/ports/genforce.py" in names
    assert "jgan/ports/torch_pickle.py" in names
    assert "jgan/configs/__init__.py" in names
    assert "jgan/nn/modulated.py" in names
    assert "jgan/assets/testbed/jgan_model.json" in names  # the shipped model, whole
    assert "jgan/assets/testbed_model_card.md" in names
    assert sum(n.startswith("jgan/assets/testbed/params/") for n in names) > 3
    tops = {name.split("/")[0] for name in names if "dist-info" not in name}
    assert tops == {"jgan"}, f"top-level names in the wheel: {tops}"

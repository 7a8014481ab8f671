"""VGG16 perceptual networks and LPIPS heads (REFERENCE.md §14, F11 perceptual).

Recognised files, all plain state dicts:
- torchvision `vgg16` (e.g. `vgg16-397923af.pth`, or `features` only): keys
  `features.{0,2,...,28}.{weight,bias}`; the `classifier.*` tensors, if present, are not used.
- IDInvert's / genforce's Keras-converted `vgg16.pth`: keys `layer{0,2,...,28}.{weight,bias}`.
- The LPIPS v0.1 VGG heads `lin{0..4}.model.1.weight` (1, C, 1, 1), which the `lpips` package
  ships in its wheel as `lpips/weights/v0.1/vgg.pth` (a legacy torch file with CUDA storages;
  jgan's reader places every tensor on the host). LPIPS itself pairs them with torchvision's
  ImageNet VGG16, so `load_lpips` takes both files.
"""

from jgan.errors import CheckpointError, InputError
from jgan.models.lpips import CHANNELS, LPIPS
from jgan.models.registry import build_abstract
from jgan.models.vgg import CONV_INDICES, VGG16
from jgan.ports.state import load_state
from jgan.ports.torch_pickle import read_torch_file

PREFIXES = {"torchvision": "features.", "caffe": "layer"}
"""Key prefix of the conv at `features` index i, per convention: `features.i.*`, `layeri.*`."""
CLASSIFIER = {r"classifier\.\d+\.(weight|bias)": None}
"""torchvision's fully connected head: not part of the feature extractor."""
HEAD_KEYS = tuple(f"lin{k}.model.1.weight" for k in range(len(CHANNELS)))


def _conv_keys(convention):
    prefix = PREFIXES[convention]
    return {f"{prefix}{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")}


def convention_of(state):
    """'torchvision' or 'caffe' for a VGG16 state dict, None for anything else."""
    if not isinstance(state, dict):
        return None
    keys = {k for k in state if not str(k).startswith("classifier.")}
    return next((c for c in PREFIXES if keys == _conv_keys(c)), None)


def is_vgg(obj):
    """Whether an unpickled checkpoint is a VGG16 state dict of either convention."""
    return convention_of(obj) is not None


def build(state, source="checkpoint"):
    """The VGG16 module holding a state dict of either convention."""
    convention = convention_of(state)
    if convention is None:
        raise CheckpointError(
            f"{source}: not a VGG16 state dict (expected the 26 tensors "
            f"features.{{0,2,...,28}}.{{weight,bias}} or layer{{0,2,...,28}}.{{weight,bias}})"
        )
    module = build_abstract(VGG16, {"convention": convention})  # load_state fills it all
    return load_state(module, state, ignored=CLASSIFIER, source=source)


def read(obj, source, **overrides):
    """Modules of a VGG16 file: dict(arch='vgg16', perceptual=VGG16)."""
    if overrides:
        raise InputError(f"{source} is a VGG16 file; it takes no overrides ({sorted(overrides)})")
    return {"arch": "vgg16", "perceptual": build(obj, source)}


def build_lpips(trunk, heads, source="checkpoint"):
    """LPIPS from a torchvision VGG16 state dict and the lpips head state dict."""
    convention = convention_of(trunk)
    if convention != "torchvision":
        found = "IDInvert's caffe-convention VGG16" if convention else "not a VGG16 state dict"
        raise CheckpointError(
            f"{source}: LPIPS needs torchvision's VGG16 (features.N.* keys); the trunk is {found}"
        )
    if not isinstance(heads, dict) or set(heads) != set(HEAD_KEYS):
        found = sorted(heads)[:8] if isinstance(heads, dict) else type(heads).__name__
        raise CheckpointError(
            f"{source}: not LPIPS VGG heads (expected {HEAD_KEYS}; found {found}); use "
            "lpips/weights/v0.1/vgg.pth from the lpips package"
        )
    tensors = {**{f"net.{k}": v for k, v in trunk.items()}, **heads}
    ignored = {rf"net\.{pattern}": None for pattern in CLASSIFIER}
    return load_state(build_abstract(LPIPS, {}), tensors, ignored=ignored, source=source)


def load_lpips(trunk_path, heads_path):
    """LPIPS (v0.1, VGG) from a torchvision VGG16 file and the lpips head file.

    `trunk_path`: torchvision's ImageNet VGG16 (`vgg16-397923af.pth`, as `lpips` itself loads
    through `torchvision.models.vgg16(pretrained=True)`), whole or `features` only.
    `heads_path`: `lpips/weights/v0.1/vgg.pth` from the `lpips` package (7 KB; e.g.
    `pip download lpips==0.1.4 --no-deps` and unzip the wheel).
    """
    trunk, heads = read_torch_file(trunk_path), read_torch_file(heads_path)
    return build_lpips(trunk, heads, source=f"{trunk_path} + {heads_path}")

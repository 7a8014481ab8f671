"""The FID InceptionV3 weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`.

A plain state dict (the TF graph `inception-2015-12-05` ported by pytorch-fid) whose keys are
the attribute paths of `jgan.models.inception.FIDInceptionV3`, plus the 1008-way classifier
`fc.{weight,bias}` (unused for FID) and, in files saved by newer torch versions,
`*.bn.num_batches_tracked`. jgan never downloads it: users point at their copy with
`fid.inception_path` in a training config, the `JGAN_INCEPTION` environment variable, or a
path argument.
"""

import os

from jgan.errors import CheckpointError, InputError
from jgan.models.inception import FIDInceptionV3
from jgan.models.registry import build_abstract
from jgan.ports.state import load_state
from jgan.ports.torch_pickle import read_torch_file

FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FILE_NAME}"
ENV_VAR = "JGAN_INCEPTION"
CLASSES = 1008
"""The TF graph's classifier has 1008 outputs; torchvision's ImageNet InceptionV3 (a different
network for FID purposes) has 1000, which is how the two files are told apart."""
IGNORED = {r"fc\.(weight|bias)": None, r".*\.bn\.num_batches_tracked": None}
MARKERS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")


def is_inception(contents):
    """Whether an unpickled file is the FID InceptionV3 state dict."""
    if not isinstance(contents, dict) or not all(k in contents for k in MARKERS):
        return False
    return tuple(getattr(contents["fc.weight"], "shape", ())) == (CLASSES, 2048)


def build(state, source="checkpoint", resize=299):
    """The `FIDInceptionV3` holding the FID weights of state dict `state`."""
    if not is_inception(state):
        raise CheckpointError(
            f"{source}: not the FID InceptionV3 state dict (expected pytorch-fid's {FILE_NAME}: "
            f"keys {MARKERS} with a {CLASSES}-way fc.weight); torchvision's ImageNet "
            "InceptionV3 is a different network and gives other FID values"
        )
    module = build_abstract(FIDInceptionV3, {"resize": resize})  # load_state fills it all
    return load_state(module, state, ignored=IGNORED, source=source)


def read(obj, source, **overrides):
    """Modules of the FID Inception file: dict(arch='fid_inception', perceptual=...)."""
    unknown = set(overrides) - {"resize"}
    if unknown:
        raise InputError(f"{source} is the FID InceptionV3; it takes only `resize` ({unknown})")
    return {"arch": "fid_inception", "perceptual": build(obj, source, **overrides)}


def inception_path(path=None):
    """The weights file to use: `path`, else $JGAN_INCEPTION; an error saying where to get it
    when neither names an existing file."""
    path = path or os.environ.get(ENV_VAR)
    if path and os.path.isfile(os.path.expanduser(os.fspath(path))):
        return os.path.expanduser(os.fspath(path))
    found = f"{path} does not exist" if path else f"no path given and ${ENV_VAR} is not set"
    raise CheckpointError(
        f"FID and KID need the InceptionV3 weights file {FILE_NAME} ({found}). Download it "
        f"once from {URL} and pass its path (config fid.inception_path, or the environment "
        f"variable {ENV_VAR})"
    )


def load_inception(path=None, resize=299):
    """The FID InceptionV3 from `path` (default $JGAN_INCEPTION)."""
    path = inception_path(path)
    return build(read_torch_file(path), source=path, resize=resize)

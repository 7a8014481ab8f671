"""Converting a full-size StyleGAN2 checkpoint (1024 px, official config-F channels, random
weights) into a jgan model directory: wall time and peak memory relative to the file size.

`--format nvidia` (default) converts a stylegan2-ada-pytorch network pickle (G, G_ema, D, as
training snapshots hold them); `--format genforce` a genforce model-zoo .pth (generator,
generator_smooth, discriminator) written by `jgan export`. The pickle is synthetic: the
persistence structure of the fixture `nvidia_sg2ada_r32/network-snapshot-000000.pkl` (one
`_reconstruct_persistent_obj(meta)` per module, tensors as `torch.storage._load_from_bytes`
of a legacy torch.save stream), written by jgan's torch-free pickle writer at the official
sizes, with a placeholder for the embedded source. Nothing of NVIDIA's code is run or needed.

The file is written, and each conversion (`jgan.load` + `save_model_dir`) runs, in a fresh
process started from this small one: Linux carries a process's peak resident size across
fork and exec, so the peak (getrusage) of each conversion is then its own. The resident size
after the imports is reported too.

    python benchmarks/convert.py [--format nvidia|genforce] [--resolution 1024] [--repeats 3]
"""

import argparse
import json
import math
import os
import pickle
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from jgan.ports.torch_pickle import LEGACY_MAGIC_NUMBER
from jgan.ports.torch_writer import Call, Global, PersistentId, pickle_bytes

MODULE_SOURCE = (
    "# Synthetic network pickle written by jgan's benchmark: no code. The readers recognise\n"
    "# stylegan2-ada-pytorch's training/networks.py by its line 'class SynthesisBlock(...)'.\n"
)
CHANNEL_BASE, CHANNEL_MAX, NUM_FP16_RES, CONV_CLAMP = 32768, 512, 4, 256
Z_DIM = W_DIM = 512
MAPPING_LAYERS = 8
FILTER = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64

ORDERED_DICT = Call(Global("collections", "OrderedDict"), ())
SQRT2 = math.sqrt(2)


def megabytes(count):
    return count / 2**20


# --- A network pickle in NVIDIA's persistence format.


class Weights:
    """Seeded random tensors as NVIDIA pickles them: a storage is the bytes of a legacy
    torch.save stream, read back through torch.storage._load_from_bytes."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def tensor(self, values, parameter=True):
        values = np.asarray(values, np.float32)
        pid = ("storage", Global("torch", "FloatStorage"), "0", "cpu", values.size, None)
        stream = b"".join(
            [
                pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2),
                pickle.dumps(1001, protocol=2),
                pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
                pickle_bytes(PersistentId(pid)),
                pickle.dumps(["0"], protocol=2),
                struct.pack("<q", values.size),
                values.astype("<f4").tobytes(),
            ]
        )
        storage = Call(Global("torch.storage", "_load_from_bytes"), (stream,))
        strides = tuple(int(s) // 4 for s in values.strides)
        tensor = Call(
            Global("torch._utils", "_rebuild_tensor_v2"),
            (storage, 0, values.shape, strides, False, ORDERED_DICT),
        )
        if not parameter:
            return tensor
        return Call(Global("torch._utils", "_rebuild_parameter"), (tensor, True, ORDERED_DICT))

    def random(self, *shape, scale=1.0):
        return self.tensor(scale * self.rng.standard_normal(shape, np.float32))


def module(class_name, args, kwargs, attributes, parameters=None, buffers=None, modules=None):
    """`_reconstruct_persistent_obj(meta)` of one persistent torch module."""
    state = {
        "training": False,
        "_parameters": parameters or {},
        "_buffers": buffers or {},
        "_modules": modules or {},
        "_init_args": tuple(args),
        "_init_kwargs": kwargs,
        **attributes,
    }
    meta = {
        "type": "class",
        "version": 6,
        "module_src": MODULE_SOURCE,
        "class_name": class_name,
        "state": state,
    }
    return Call(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,))


def channels(res):
    return min(CHANNEL_BASE // res, CHANNEL_MAX)


def fully_connected(weights, inputs, outputs, activation="linear", lr=1.0, bias_init=None):
    kwargs = {"activation": activation} if activation != "linear" else {}
    if lr != 1.0:
        kwargs["lr_multiplier"] = lr
    if bias_init is not None:
        kwargs["bias_init"] = bias_init
    attributes = {"activation": activation, "weight_gain": lr / math.sqrt(inputs), "bias_gain": lr}
    parameters = {"weight": weights.random(outputs, inputs), "bias": weights.random(outputs)}
    return module("FullyConnectedLayer", (inputs, outputs), kwargs, attributes, parameters)


def synthesis_layer(weights, inputs, outputs, res, up):
    kwargs = {"w_dim": W_DIM, "resolution": res, "conv_clamp": CONV_CLAMP, "channels_last": False}
    if up > 1:
        kwargs.update(up=up, resample_filter=[1, 3, 3, 1])
    attributes = {
        "resolution": res,
        "up": up,
        "use_noise": True,
        "activation": "lrelu",
        "conv_clamp": CONV_CLAMP,
        "padding": 1,
        "act_gain": SQRT2,
    }
    parameters = {
        "weight": weights.random(outputs, inputs, 3, 3),
        "noise_strength": weights.random(scale=0.1),
        "bias": weights.random(outputs, scale=0.1),
    }
    buffers = {
        "resample_filter": weights.tensor(FILTER, parameter=False),
        "noise_const": weights.tensor(weights.rng.standard_normal((res, res)), parameter=False),
    }
    affine = fully_connected(weights, W_DIM, inputs, bias_init=1)
    return module(
        "SynthesisLayer",
        (inputs, outputs),
        kwargs,
        attributes,
        parameters,
        buffers,
        {"affine": affine},
    )


def to_rgb(weights, inputs):
    kwargs = {"w_dim": W_DIM, "conv_clamp": CONV_CLAMP, "channels_last": False}
    attributes = {"conv_clamp": CONV_CLAMP, "weight_gain": 1 / math.sqrt(inputs)}
    parameters = {"weight": weights.random(3, inputs, 1, 1), "bias": weights.random(3)}
    affine = fully_connected(weights, W_DIM, inputs, bias_init=1)
    return module(
        "ToRGBLayer", (inputs, 3), kwargs, attributes, parameters, None, {"affine": affine}
    )


def generator(weights, resolution):
    """stylegan2-ada-pytorch's Generator (skip architecture) with config-F channels."""
    resolutions = [4 << k for k in range(int(math.log2(resolution // 4)) + 1)]
    fp16_resolution = max(2 ** (int(math.log2(resolution)) + 1 - NUM_FP16_RES), 8)
    blocks, num_ws = {}, 0
    for res in resolutions:
        inputs, outputs = (0 if res == 4 else channels(res // 2)), channels(res)
        is_last, use_fp16 = res == resolution, res >= fp16_resolution
        parameters, layers = {}, {}
        if res == 4:
            parameters["const"] = weights.random(outputs, 4, 4)
        else:
            layers["conv0"] = synthesis_layer(weights, inputs, outputs, res, up=2)
        layers["conv1"] = synthesis_layer(weights, outputs, outputs, res, up=1)
        layers["torgb"] = to_rgb(weights, outputs)
        num_conv = 1 if res == 4 else 2
        num_ws += num_conv
        kwargs = {"w_dim": W_DIM, "resolution": res, "img_channels": 3, "is_last": is_last}
        kwargs.update(use_fp16=use_fp16, conv_clamp=CONV_CLAMP)
        attributes = {
            "in_channels": inputs,
            "w_dim": W_DIM,
            "resolution": res,
            "img_channels": 3,
            "is_last": is_last,
            "architecture": "skip",
            "use_fp16": use_fp16,
            "channels_last": False,
            "num_conv": num_conv,
            "num_torgb": 1,
        }
        buffers = {"resample_filter": weights.tensor(FILTER, parameter=False)}
        blocks[f"b{res}"] = module(
            "SynthesisBlock", (inputs, outputs), kwargs, attributes, parameters, buffers, layers
        )
    num_ws += 1  # the last ToRGB
    synthesis_kwargs = {
        "channel_base": CHANNEL_BASE,
        "channel_max": CHANNEL_MAX,
        "num_fp16_res": NUM_FP16_RES,
        "conv_clamp": CONV_CLAMP,
    }
    synthesis = module(
        "SynthesisNetwork",
        (),
        {"w_dim": W_DIM, "img_resolution": resolution, "img_channels": 3, **synthesis_kwargs},
        {
            "w_dim": W_DIM,
            "img_resolution": resolution,
            "img_resolution_log2": int(math.log2(resolution)),
            "img_channels": 3,
            "block_resolutions": resolutions,
            "num_ws": num_ws,
        },
        modules=blocks,
    )
    fcs = {
        f"fc{i}": fully_connected(weights, Z_DIM if i == 0 else W_DIM, W_DIM, "lrelu", lr=0.01)
        for i in range(MAPPING_LAYERS)
    }
    sizes = {"z_dim": Z_DIM, "c_dim": 0, "w_dim": W_DIM, "num_ws": num_ws}
    mapping = module(
        "MappingNetwork",
        (),
        {**sizes, "num_layers": MAPPING_LAYERS},
        {**sizes, "num_layers": MAPPING_LAYERS, "w_avg_beta": 0.995},
        buffers={"w_avg": weights.tensor(weights.rng.standard_normal(W_DIM), parameter=False)},
        modules=fcs,
    )
    kwargs = {
        "z_dim": Z_DIM,
        "w_dim": W_DIM,
        "mapping_kwargs": {"num_layers": MAPPING_LAYERS},
        "synthesis_kwargs": synthesis_kwargs,
        "c_dim": 0,
        "img_resolution": resolution,
        "img_channels": 3,
    }
    attributes = {"z_dim": Z_DIM, "c_dim": 0, "w_dim": W_DIM, "img_resolution": resolution}
    attributes.update(img_channels=3, num_ws=num_ws)
    modules = {"synthesis": synthesis, "mapping": mapping}
    return module("Generator", (), kwargs, attributes, modules=modules)


def conv2d(weights, inputs, outputs, kernel, activation="lrelu", down=1, bias=True, clamp=True):
    kwargs = {"kernel_size": kernel}
    if activation != "linear":
        kwargs["activation"] = activation
    if not bias:
        kwargs["bias"] = False
    if down > 1:
        kwargs["down"] = down
    kwargs["trainable"] = True
    if down > 1:
        kwargs["resample_filter"] = [1, 3, 3, 1]
    if clamp:
        kwargs["conv_clamp"] = CONV_CLAMP
    kwargs["channels_last"] = False
    attributes = {
        "activation": activation,
        "up": 1,
        "down": down,
        "conv_clamp": CONV_CLAMP if clamp else None,
        "padding": kernel // 2,
        "weight_gain": 1 / math.sqrt(inputs * kernel * kernel),
        "act_gain": SQRT2 if activation == "lrelu" else 1,
    }
    parameters = {"weight": weights.random(outputs, inputs, kernel, kernel)}
    if bias:
        parameters["bias"] = weights.random(outputs, scale=0.1)
    else:
        attributes["bias"] = None
    buffers = {"resample_filter": weights.tensor(FILTER, parameter=False)}
    return module("Conv2dLayer", (inputs, outputs), kwargs, attributes, parameters, buffers)


def discriminator(weights, resolution):
    """stylegan2-ada-pytorch's Discriminator (resnet architecture) with config-F channels."""
    resolutions = [resolution >> k for k in range(int(math.log2(resolution // 4)))]
    fp16_resolution = max(2 ** (int(math.log2(resolution)) + 1 - NUM_FP16_RES), 8)
    blocks, first_layer = {}, 0
    for res in resolutions:
        inputs = 0 if res == resolution else channels(res)
        hidden, outputs = channels(res), channels(res // 2)
        use_fp16 = res >= fp16_resolution
        layers = {}
        if inputs == 0:
            layers["fromrgb"] = conv2d(weights, 3, hidden, 1)
        layers["conv0"] = conv2d(weights, hidden, hidden, 3)
        layers["conv1"] = conv2d(weights, hidden, outputs, 3, down=2)
        layers["skip"] = conv2d(weights, hidden, outputs, 1, "linear", 2, bias=False, clamp=False)
        kwargs = {"resolution": res, "first_layer_idx": first_layer, "use_fp16": use_fp16}
        kwargs.update(img_channels=3, architecture="resnet", conv_clamp=CONV_CLAMP)
        attributes = {
            "in_channels": inputs,
            "resolution": res,
            "img_channels": 3,
            "first_layer_idx": first_layer,
            "architecture": "resnet",
            "use_fp16": use_fp16,
            "channels_last": False,
            "num_layers": len(layers),
        }
        first_layer += len(layers)
        buffers = {"resample_filter": weights.tensor(FILTER, parameter=False)}
        blocks[f"b{res}"] = module(
            "DiscriminatorBlock",
            (inputs, hidden, outputs),
            kwargs,
            attributes,
            None,
            buffers,
            layers,
        )
    width = channels(4)
    mbstd = module(
        "MinibatchStdLayer",
        (),
        {"group_size": 4, "num_channels": 1},
        {"group_size": 4, "num_channels": 1},
    )
    epilogue_layers = {
        "mbstd": mbstd,
        "conv": conv2d(weights, width + 1, width, 3),
        "fc": fully_connected(weights, width * 16, width, "lrelu"),
        "out": fully_connected(weights, width, 1),
    }
    blocks["b4"] = module(
        "DiscriminatorEpilogue",
        (width,),
        {"cmap_dim": 0, "resolution": 4, "mbstd_group_size": 4, "img_channels": 3}
        | {"architecture": "resnet", "conv_clamp": CONV_CLAMP},
        {"in_channels": width, "cmap_dim": 0, "resolution": 4, "img_channels": 3}
        | {"architecture": "resnet"},
        modules=epilogue_layers,
    )
    kwargs = {
        "block_kwargs": {},
        "mapping_kwargs": {},
        "epilogue_kwargs": {"mbstd_group_size": 4},
        "channel_base": CHANNEL_BASE,
        "channel_max": CHANNEL_MAX,
        "num_fp16_res": NUM_FP16_RES,
        "conv_clamp": CONV_CLAMP,
        "c_dim": 0,
        "img_resolution": resolution,
        "img_channels": 3,
    }
    attributes = {
        "c_dim": 0,
        "img_resolution": resolution,
        "img_resolution_log2": int(math.log2(resolution)),
        "img_channels": 3,
        "block_resolutions": resolutions,
    }
    return module("Discriminator", (), kwargs, attributes, modules=blocks)


def write_network_pickle(path, resolution):
    """A training snapshot: {training_set_kwargs, G, D, G_ema} (augment_pipe left out)."""
    snapshot = {
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset"},
        "G": generator(Weights(1), resolution),
        "D": discriminator(Weights(2), resolution),
        "G_ema": generator(Weights(3), resolution),
    }
    with open(path, "wb") as file:
        file.write(pickle_bytes(snapshot, protocol=4))


# --- A genforce model-zoo file, through jgan's own exporter.


def write_genforce(path, resolution):
    from jgan.bundle import Bundle
    from jgan.models.registry import build_abstract, model_classes
    from jgan.ports.export import export_genforce
    from jgan.ports.state import load_state, module_tensors

    rng = np.random.default_rng(0)

    def randomized(cls):
        module = build_abstract(cls, {"resolution": resolution})
        state = {
            key: rng.standard_normal(var.shape, np.float32)
            for key, var in module_tensors(module).items()
        }
        return load_state(module, state)

    G, D = model_classes("stylegan2")
    bundle = Bundle("stylegan2", generator=randomized(G), generator_raw=randomized(G))
    bundle.discriminator = randomized(D)
    export_genforce(bundle, path)


# --- Measuring one conversion in a fresh process.


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(path, destination):
    """Runs in the child: times jgan.load and save_model_dir; prints JSON."""
    import jgan
    import jgan.ports.formats  # noqa: F401 (imports are not part of the conversion)

    baseline = resident_bytes()
    cpu = time.process_time()
    start = time.perf_counter()
    bundle = jgan.load(path)
    loaded = time.perf_counter()
    jgan.save_model_dir(bundle, destination)
    saved = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "load_s": loaded - start,
                "save_s": saved - loaded,
                "total_s": saved - start,
                "cpu_s": time.process_time() - cpu,
                "baseline_rss": baseline,
                "peak_rss": peak,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("nvidia", "genforce"), default="nvidia")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, metavar=("FILE", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write = write_network_pickle if args.format == "nvidia" else write_genforce
        return write(args.write, args.resolution)
    if args.measure:
        return measure(*args.measure)

    with tempfile.TemporaryDirectory(prefix="jgan-convert-") as workdir:
        name = "network-snapshot.pkl" if args.format == "nvidia" else "stylegan2.pth"
        path = os.path.join(workdir, name)
        start = time.perf_counter()
        options = ["--format", args.format, "--resolution", str(args.resolution)]
        subprocess.run([sys.executable, __file__, *options, "--write", path], check=True)
        size = os.path.getsize(path)
        print(
            f"{args.format} StyleGAN2 {args.resolution}px checkpoint: {megabytes(size):.0f} MiB "
            f"(written in {time.perf_counter() - start:.1f} s)"
        )
        runs = []
        for run in range(args.repeats):
            destination = os.path.join(workdir, f"model{run}")
            command = [sys.executable, __file__, "--measure", path, destination]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    over_baseline = median["peak_rss"] - median["baseline_rss"]
    print(f"conversion (jgan.load + save_model_dir), median of {args.repeats} fresh processes:")
    print(
        f"  wall time {median['total_s']:.2f} s (load {median['load_s']:.2f} s, "
        f"save {median['save_s']:.2f} s), {megabytes(size) / median['total_s']:.0f} MiB/s; "
        f"{median['cpu_s']:.2f} s of CPU time"
    )
    print(
        f"  peak RSS {megabytes(median['peak_rss']):.0f} MiB = {median['peak_rss'] / size:.2f} x "
        f"the file; {megabytes(median['baseline_rss']):.0f} MiB resident after the imports, so "
        f"the conversion added {megabytes(over_baseline):.0f} MiB = {over_baseline / size:.2f} "
        "x the file"
    )


if __name__ == "__main__":
    main()

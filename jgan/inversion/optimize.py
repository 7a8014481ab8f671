"""GAN inversion by latent optimisation: codes whose generated images match given images.

    out = jgan.invert(generator, images)                                  # W+, from w_avg
    out = jgan.invert(generator, images, method="idinvert", encoder=E, perceptual=vgg)
    out = jgan.invert(generator, images, method="multicode", perceptual=vgg,
                      task=jgan.inversion.Colorize())
    out["codes"], out["images"], out["losses"]["total"]                   # (N, steps)

Every image is its own problem, as in the originals (which invert one image at a time): the
steps run in one jitted `lax.scan` per chunk of steps, `jax.vmap`ped over the images, with the
batch sharded over all devices (parameters replicated, as `jgan.synthesize`). The per-step
losses stay on the device until a chunk ends; progress bars and the NaN check see them once per
chunk, not once per step.

Methods and their defaults (`preset(method, task)`; keyword arguments override any field):
- "optimize": plain optimisation, Adam (lr 0.01, 100 steps) in W+ from w_avg, pixel MSE.
- "idinvert": IDInvert's in-domain inversion (Zhu et al. 2020): init from the encoder, then
  MSE + 5e-5 * VGG16 conv4_3 (caffe) + 2.0 * ||code - E(G(code))||^2, Adam lr 0.01, 100 steps;
  semantic diffusion drops the encoder term, as IDInvert's diffuse.py.
- "multicode": mGANprior (Gu et al. 2020): 30 Z codes composed after layer 6, MSE + 1e-3 * L1
  of VGG16 relu3_3 (torchvision), plain gradient descent lr 1.0, 3000 steps; the colorization,
  inpainting and super-resolution scripts' own defaults per task.
"""

import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax
from tqdm.auto import tqdm

from jgan import parallel
from jgan.api import as_input_array, placed
from jgan.errors import InputError
from jgan.inversion import losses, multicode
from jgan.inversion.tasks import Diffuse, Task
from jgan.models.vgg import VGG16, check_layers, min_size

METHODS = ("optimize", "idinvert", "multicode")
SPACES = ("z", "w", "wp", "y")
OPTIMIZERS = ("adam", "sgd")
INITS = ("mean", "random", "encoder")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Hyper-parameters of a single-code inversion (static under jit: a change recompiles).

    - `space`: the latent space optimised: 'z', 'w', 'wp' (W+) or 'y' (StyleGAN's styles).
    - `init`: 'mean' (w_avg, or zeros in Z), 'random' (z ~ N(0, I) mapped to the space; one
      key per image, `jax.random.split(key, N)`) or 'encoder' (E(image), W+ or Y).
    - loss weights: `pixel_weight` (MSE), `l1_weight`, `perceptual_weight` (VGG16
      `perceptual_layer`, mean squared ('l2') or absolute ('l1') `perceptual_distance`; with a
      `perceptual_convention` set, the network must use that preprocessing, since the weight
      was tuned for its feature scale) and `encoder_weight` (IDInvert's domain regulariser).
    """

    space: str = "wp"
    steps: int = 100
    optimizer: str = "adam"
    learning_rate: float = 0.01
    init: str = "mean"
    pixel_weight: float = 1.0
    l1_weight: float = 0.0
    perceptual_weight: float = 0.0
    perceptual_layer: str = "relu4_3"
    perceptual_distance: str = "l2"
    perceptual_convention: str | None = None
    encoder_weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class MultiCodeSettings(Settings):
    """Settings of a multi-code inversion: `num_codes` codes composed after `composing_layer`
    layers of the generator (see `jgan.inversion.multicode`)."""

    num_codes: int = 30
    composing_layer: int = 6


OPTIMIZE = Settings()
IDINVERT = Settings(
    init="encoder",
    perceptual_weight=5e-5,
    perceptual_layer="relu4_3",
    perceptual_convention="caffe",
    encoder_weight=2.0,
)
MGANPRIOR = MultiCodeSettings(
    space="z",
    steps=3000,
    optimizer="sgd",
    learning_rate=1.0,
    init="random",
    # mGANprior's VGGLoss: L1 of torchvision VGG16 features[:16] (relu3_3) times 0.001, vgg 1.
    perceptual_weight=1e-3,
    perceptual_layer="relu3_3",
    perceptual_distance="l1",
    perceptual_convention="torchvision",
    num_codes=30,
    composing_layer=6,
)
PRESETS = {"optimize": OPTIMIZE, "idinvert": IDINVERT, "multicode": MGANPRIOR}
TASK_PRESETS = {
    # mGANprior's task scripts (colorization.py, inpainting.py, super_resolution.py); its
    # super-resolution 'Zero' init never reaches the multi-code generator, which starts random.
    ("multicode", "colorize"): dict(composing_layer=4, num_codes=20, steps=1500),
    ("multicode", "inpaint"): dict(composing_layer=4, perceptual_weight=1e-4),
    ("multicode", "super-resolve"): dict(steps=2000),
    # IDInvert's diffuse.py: masked pixel and perceptual losses, no encoder regulariser.
    ("idinvert", "diffuse"): dict(encoder_weight=0.0),
}


def preset(method, task=None):
    """The default settings of `method` for `task` (a Task, its name, or None)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}; got {method!r}")
    name = task.name if isinstance(task, Task) else task
    return dataclasses.replace(PRESETS[method], **TASK_PRESETS.get((method, name), {}))


# --- the optimisation, one image at a time (vmapped) --------------------------------------------


TERMS = ("pixel", "l1", "perceptual", "encoder")


def _optimizer(settings, learning_rate):
    return (optax.adam if settings.optimizer == "adam" else optax.sgd)(learning_rate)


def _structure(settings):
    """The settings with their numbers replaced by markers (weights 1 or 0, one step): all
    that the compiled functions depend on, so new step counts, learning rates or weights reuse
    them."""
    switches = {f"{t}_weight": float(bool(getattr(settings, f"{t}_weight"))) for t in TERMS}
    return dataclasses.replace(settings, steps=1, learning_rate=1.0, **switches)


def _numbers(settings):
    """The learning rate and the weights of the terms switched on, as traced values."""
    weights = {t: getattr(settings, f"{t}_weight") for t in TERMS}
    return {
        "learning_rate": jnp.float32(settings.learning_rate),
        "weights": {t: jnp.float32(w) for t, w in weights.items() if w},
    }


def _sharded(tree):
    """Every per-image output split over the devices along its batch axis: the next chunk
    then gets inputs placed as the last one (one compiled function serves every chunk)."""
    return jax.tree.map(lambda x: lax.with_sharding_constraint(x, parallel.batch_sharded()), tree)


def _merge(graphdefs, states):
    return tuple(
        None if g is None else nnx.merge(g, s) for g, s in zip(graphdefs, states, strict=True)
    )


def _z_dim(generator):
    mapping = getattr(generator, "mapping", None)
    return generator.z_space_dim if mapping is None else mapping.z_dim


def code_shape(generator, space):
    """Shape of one code of `generator` in `space`."""
    if space == "z":
        return (_z_dim(generator),)
    if space == "w":
        return tuple(generator.truncation.w_avg.shape)
    width = generator.y_space_dim if space == "y" else generator.w_space_dim
    return (generator.num_layers, width)


def _codes_from_z(generator, z, space):
    """Codes in `space` of Z codes (K, z_dim): mapped, broadcast, turned into styles."""
    if space == "z":
        return z
    w = generator.mapping(z)
    return _codes_from_w(generator, w, space)


def _codes_from_w(generator, w, space):
    if space == "w":
        return w
    wp = generator.truncation.broadcast(w)
    return wp if space == "wp" else generator.y_codes(wp)


def _encoded(generator, encoder, images, space):
    """The encoder's codes of `images` in `space`: as they are when the encoder predicts that
    space (its `latent_space`, W+ by default), W+ codes turned into styles for Y."""
    codes = encoder(images)
    predicted = getattr(encoder, "latent_space", "wp")
    if predicted == space:
        return codes
    if predicted == "wp" and space == "y":
        return generator.y_codes(codes)
    raise InputError(f"the encoder predicts {predicted!r} codes, not {space!r} codes")


def _initial_codes(generator, encoder, image, key, settings):
    """The starting code(s) of one image (1, H, W, C): (*code_shape) or (K, *code_shape)."""
    num = settings.num_codes if isinstance(settings, MultiCodeSettings) else 1
    if settings.init == "encoder":
        codes = _encoded(generator, encoder, image, settings.space)
    elif settings.init == "random":
        codes = _codes_from_z(
            generator, jax.random.normal(key, (num, _z_dim(generator))), settings.space
        )
    elif settings.space == "z":
        codes = jnp.zeros((1, _z_dim(generator)), image.dtype)
    else:
        w_avg = generator.truncation.w_avg[...].reshape(1, -1)
        codes = _codes_from_w(generator, w_avg, settings.space)
    return codes if isinstance(settings, MultiCodeSettings) else codes[0]


def _render(generator, params, settings):
    """The image (1, H, W, C) of one image's parameters."""
    if isinstance(settings, MultiCodeSettings):
        return multicode.compose(
            generator, params["codes"], params["alphas"], settings.composing_layer, settings.space
        )
    return generator.generate(params[None], space=settings.space)["image"]


def _target(vgg, image, task, settings):
    """What the loss compares a reconstruction of `image` (1, H, W, C) with."""
    observed = task.observe(image)
    target = {"observed": observed}
    if settings.perceptual_weight:
        target["features"] = vgg(observed, (settings.perceptual_layer,))[settings.perceptual_layer]
    return target


def _loss_terms(modules, params, target, task, settings):
    """{term: value} of one image's parameters (unweighted)."""
    generator, vgg, encoder = modules
    image = _render(generator, params, settings)
    observed = task.observe(image)
    terms = {}
    if settings.pixel_weight:
        terms["pixel"] = losses.pixel_mse(observed, target["observed"])[0]
    if settings.l1_weight:
        terms["l1"] = losses.pixel_l1(observed, target["observed"])[0]
    if settings.perceptual_weight:
        layer = settings.perceptual_layer
        features = vgg(observed, (layer,))[layer]
        distance = settings.perceptual_distance
        terms["perceptual"] = losses.feature_distance(features, target["features"], distance)[0]
    if settings.encoder_weight:
        encoded = _encoded(generator, encoder, image, settings.space)
        terms["encoder"] = losses.domain_regularizer(params[None], encoded)[0]
    return terms


@functools.partial(jax.jit, static_argnames=("graphdefs", "settings"))
def _start(graphdefs, states, images, task, keys, init_codes, *, settings):
    """Initial parameters, optimiser states, loss targets and initial images of a batch."""
    modules = _merge(graphdefs, states)
    generator, vgg, encoder = modules

    def one(image, task, key, given):
        image = image[None]
        if given is None:
            codes = _initial_codes(generator, encoder, image, key, settings)
        else:
            codes = given
        if isinstance(settings, MultiCodeSettings):
            channels = multicode.feature_channels(
                generator, codes.shape[1:], settings.composing_layer, settings.space
            )
            alphas = jnp.full((settings.num_codes, channels), 1.0 / settings.num_codes)
            params = {"codes": codes, "alphas": alphas}
        else:
            params = codes
        opt_state = _optimizer(settings, 1.0).init(params)  # the state does not hold the rate
        first = _render(generator, params, settings)[0]
        return params, opt_state, _target(vgg, image, task, settings), first

    return _sharded(jax.vmap(one)(images, task, keys, init_codes))


@functools.partial(jax.jit, static_argnames=("graphdefs", "settings", "num_steps", "unroll"))
def _steps(
    graphdefs, states, params, opt_state, targets, task, numbers, *, settings, num_steps, unroll
):
    """`num_steps` optimisation steps of every image: new parameters and optimiser states, the
    per-step losses {term: (N, num_steps)} of the parameters each step started from, and the
    images of the new parameters."""
    modules = _merge(graphdefs, states)
    optimizer = _optimizer(settings, numbers["learning_rate"])
    weights = numbers["weights"]

    def one(params, opt_state, target, task):
        def loss(params):
            terms = _loss_terms(modules, params, target, task, settings)
            return sum(weights[name] * value for name, value in terms.items()), terms

        def step(carry, _):
            params, opt_state = carry
            (total, terms), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {"total": total, **terms}

        carry = (params, opt_state)
        (params, opt_state), history = lax.scan(step, carry, length=num_steps, unroll=unroll)
        return params, opt_state, history, _render(modules[0], params, settings)[0]

    return _sharded(jax.vmap(one)(params, opt_state, targets, task))


# --- checks and the entry point ------------------------------------------------------------------


def _check_settings(settings, generator, images, vgg, encoder):
    """InputError for settings that cannot run, or would silently do less than asked."""
    s = settings
    if s.space not in SPACES or s.space not in generator.latent_spaces:
        raise InputError(
            f"{type(generator).__name__} is inverted in one of the spaces "
            f"{tuple(x for x in SPACES if x in generator.latent_spaces)}; got space={s.space!r}"
        )
    if isinstance(s.steps, bool) or not isinstance(s.steps, numbers.Integral) or s.steps < 1:
        raise InputError(f"steps must be a positive integer; got {s.steps!r}")
    if s.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}; got {s.optimizer!r}")
    if not (isinstance(s.learning_rate, numbers.Real) and 0 < s.learning_rate < math.inf):
        raise InputError(f"learning_rate must be a positive number; got {s.learning_rate!r}")
    if s.init not in INITS:
        raise InputError(f"init must be one of {INITS}; got {s.init!r}")
    weights = {
        name: getattr(s, f"{name}_weight") for name in ("pixel", "l1", "perceptual", "encoder")
    }
    for name, weight in weights.items():
        if not (isinstance(weight, numbers.Real) and 0 <= weight < math.inf):
            raise InputError(f"{name}_weight must be a non-negative number; got {weight!r}")
    if not (weights["pixel"] or weights["l1"] or weights["perceptual"]):
        raise InputError("at least one of pixel_weight, l1_weight, perceptual_weight must be > 0")
    if getattr(generator, "label_size", 0) or generator.config.get("label_size", 0):
        raise InputError("inverting a conditional generator is not supported")
    if s.init == "encoder" or s.encoder_weight:
        if encoder is None:
            why = "init='encoder'" if s.init == "encoder" else f"encoder_weight={s.encoder_weight}"
            raise InputError(f"{why} needs encoder= (e.g. jgan.load(encoder_file).encoder)")
        if s.space not in ("wp", "y"):
            raise InputError(f"the encoder predicts W+ (or Y) codes; space={s.space!r} has none")
        predicted = getattr(encoder, "latent_space", "wp")
        if s.space != predicted and (predicted, s.space) != ("wp", "y"):
            raise InputError(
                f"the encoder predicts {predicted!r} codes, not {s.space!r} codes: invert with "
                f"space={predicted!r}"
            )
    if s.perceptual_weight:
        _check_perceptual(s, vgg, images)
    if s.init == "mean" and s.space != "z" and not getattr(generator.truncation, "has_w_avg", True):
        raise InputError(
            "init='mean' starts from w_avg, which this generator's file does not store: set one "
            "with jgan.models.latent.set_w_avg, or use init='random'"
        )
    if isinstance(s, MultiCodeSettings):
        if isinstance(s.num_codes, bool) or not isinstance(s.num_codes, int) or s.num_codes < 1:
            raise InputError(f"num_codes must be a positive integer; got {s.num_codes!r}")
        if s.init != "random":
            raise InputError(
                "multi-code inversion starts from random codes (init='random'): identical "
                f"starting codes would stay identical; got init={s.init!r}"
            )
        if s.encoder_weight:
            raise InputError(
                "the encoder regulariser applies to single codes; set encoder_weight=0"
            )


def _check_perceptual(settings, vgg, images):
    if not isinstance(vgg, VGG16):
        raise InputError(
            f"perceptual_weight={settings.perceptual_weight} needs perceptual= a VGG16 (e.g. "
            f"jgan.load('vgg16.pth').perceptual); got {type(vgg).__name__}"
        )
    check_layers((settings.perceptual_layer,))
    losses.check_distance(settings.perceptual_distance)
    wanted = settings.perceptual_convention
    if wanted is not None and vgg.convention != wanted:
        raise InputError(
            f"these settings weigh {settings.perceptual_layer} features of a {wanted}-convention "
            f"VGG16, whose feature scale the weight was tuned for; the network given is "
            f"{vgg.convention}: pass matching weights or perceptual_convention=None"
        )
    side = min_size((settings.perceptual_layer,))
    if min(images.shape[1:3]) < side:
        raise InputError(
            f"{settings.perceptual_layer} needs images of at least {side}x{side}; "
            f"got {images.shape[1]}x{images.shape[2]}"
        )


def _check_images(generator, images):
    images = as_input_array(images, "images")
    config = generator.config
    side, channels = config["resolution"], config.get("image_channels", 3)
    if images.ndim != 4 or images.shape[1:] != (side, side, channels):
        raise InputError(
            f"images must have shape (N, {side}, {side}, {channels}) (NHWC, in the generator's "
            f"range) for this generator; got {tuple(images.shape)} (jgan.imageio.fit or the "
            "command's --resize center-crops and resizes images)"
        )
    return images


def _check_init_codes(codes, generator, images, settings):
    codes = as_input_array(codes, "init_codes")
    shape = (images.shape[0], *code_shape(generator, settings.space))
    if isinstance(settings, MultiCodeSettings):
        shape = (shape[0], settings.num_codes, *shape[1:])
    if codes.shape != shape:
        raise InputError(
            f"init_codes must have shape {shape} (space {settings.space!r}); got {codes.shape}"
        )
    return codes


CPU_CHUNK = 2
"""Steps per chunk on CPU, where chunks are unrolled: XLA:CPU runs convolutions inside a while
loop (an un-unrolled `lax.scan`) on a slow path, 10-50x slower here (jax#12868). Compile time
grows with the unrolled length (about 0.9 s per step for a 32-px StyleGAN on 2 cores) and
every call has a fixed cost (about 70 ms with 4 emulated devices): 2 steps balanced the two."""


def _on_cpu():
    return jax.devices()[0].platform == "cpu"


def _chunk_size(steps, chunk_steps, progress):
    """Steps per chunk. By default a divisor of `steps` (so one compiled chunk serves them
    all): every step at once on accelerators, about 20 chunks with a progress bar, and at most
    CPU_CHUNK steps on CPU."""
    if chunk_steps is not None:
        if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, int) or chunk_steps < 1:
            raise InputError(f"chunk_steps must be a positive integer; got {chunk_steps!r}")
        return chunk_steps
    target = CPU_CHUNK if _on_cpu() else math.ceil(steps / 20) if progress else steps
    return max(d for d in range(1, min(target, steps) + 1) if steps % d == 0)


def _check_finite(history, done):
    """InputError naming the first image and step whose loss is NaN or infinite."""
    bad = ~np.isfinite(history["total"])
    if not bad.any():
        return
    image, step = np.argwhere(bad)[0]
    terms = [
        name
        for name, values in history.items()
        if name != "total" and not np.isfinite(values[image, step])
    ]
    raise InputError(
        f"the inversion loss became {history['total'][image, step]} at step {done + step} of image "
        f"{image} (terms: {', '.join(terms) or 'total'}): lower the learning rate, or check the "
        "images and the models for NaN or huge values"
    )


def invert(
    generator,
    images,
    *,
    method="optimize",
    encoder=None,
    perceptual=None,
    task=None,
    key=None,
    init_codes=None,
    progress=False,
    chunk_steps=None,
    settings=None,
    **overrides,
):
    """Inverts NHWC `images` (in the generator's range, at its resolution) into latent codes.

    - `method`: 'optimize', 'idinvert' or 'multicode'; its defaults are `preset(method, task)`,
      `settings` replaces them (a `Settings` / `MultiCodeSettings`), and keyword arguments
      override single fields: space='wp', steps=100, learning_rate=..., init=..., ...
    - `encoder`: a jgan encoder (images -> W+ codes) for init='encoder' and the domain
      regulariser; `perceptual`: a `VGG16` for the perceptual loss.
    - `task`: a restoration task (`Colorize()`, `SuperResolve(8)`, `Inpaint(hole)`, `Diffuse`
      from `paste`); the loss compares what the task observes.
    - `key`: PRNG key of random initial codes (default key 0); `init_codes` gives the starting
      codes instead (N, *code_shape), or (N, num_codes, *code_shape) for multi-code.
    - `progress`: a tqdm bar advancing once per chunk of `chunk_steps` steps (default: 20
      chunks with a bar, 1 without); the NaN check runs after every chunk.

    Returns a dict: 'codes' (N, *code_shape), or (N, num_codes, *code_shape) and 'alphas'
    (N, num_codes, C) for multi-code; 'images' (reconstructions); 'losses' {'total', and each
    weighted term: (N, steps)}, the loss of the codes each step started from; 'init_codes' and
    'init_images' (where the optimisation started, e.g. the encoder's output); with a task,
    'result' and 'degraded' (the naive restoration); 'settings'.
    """
    problem = _problem(
        generator, images, method, encoder, perceptual, task, key, init_codes, settings, overrides
    )
    settings, structure, task, n = problem.settings, problem.structure, problem.task, problem.n
    params, opt_state, targets, init_images = _start(
        problem.graphdefs, problem.states, *problem.inputs, settings=structure
    )
    start_params = params
    chunk = _chunk_size(settings.steps, chunk_steps, progress)
    history, done = [], 0
    with tqdm(total=settings.steps, desc="invert", unit="step", disable=not progress) as bar:
        while done < settings.steps:
            size = min(chunk, settings.steps - done)
            params, opt_state, part, reconstructions = _steps(
                *problem.step_args(params, opt_state, targets), **problem.step_options(size)
            )
            part = {name: np.asarray(values)[:n] for name, values in part.items()}
            _check_finite(part, done)
            history.append(part)
            done += size
            bar.update(size)

    def first_n(tree):
        return jax.tree.map(lambda x: x[:n], tree)

    reconstructions = first_n(reconstructions)
    out = {
        "images": reconstructions,
        "losses": {name: np.concatenate([h[name] for h in history], axis=1) for name in history[0]},
        "init_images": first_n(init_images),
        "settings": settings,
    }
    params, start_params = first_n(params), first_n(start_params)
    if isinstance(settings, MultiCodeSettings):
        out.update(codes=params["codes"], alphas=params["alphas"])
        out["init_codes"] = start_params["codes"]
    else:
        out.update(codes=params, init_codes=start_params)
    if type(task) is not Task:
        out["result"] = task.result(problem.images, reconstructions)
        out["degraded"] = task.degraded(problem.images)
    return out


@dataclasses.dataclass(frozen=True)
class _Problem:
    """A checked inversion, ready for the jitted functions: the modules split into static graph
    definitions and replicated states, the per-image inputs (images, task, keys, initial codes)
    padded to a multiple of the device count and sharded, the settings' static structure and
    traced numbers."""

    settings: Settings
    structure: Settings
    numbers: dict
    graphdefs: tuple
    states: tuple
    inputs: tuple
    images: jax.Array
    task: Task
    n: int

    def step_args(self, params, opt_state, targets):
        task = self.inputs[1]
        return (self.graphdefs, self.states, params, opt_state, targets, task, self.numbers)

    def step_options(self, num_steps):
        unroll = True if _on_cpu() and num_steps <= CPU_CHUNK else 1
        return dict(settings=self.structure, num_steps=num_steps, unroll=unroll)


def _problem(
    generator, images, method, encoder, perceptual, task, key, init_codes, settings, overrides
):
    """The `_Problem` of `invert`'s arguments, or an InputError saying what is wrong."""
    base = preset(method, task) if settings is None else settings
    if method == "multicode" and not isinstance(base, MultiCodeSettings):
        raise InputError("method='multicode' needs MultiCodeSettings")
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(
            f"unknown setting(s) {unknown} for method {method!r}; valid: {sorted(fields)}"
        )
    settings = dataclasses.replace(base, **overrides)
    images = _check_images(generator, images)
    task = Task() if task is None else task
    if not isinstance(task, Task):
        raise InputError(f"task must be a jgan.inversion task; got {type(task).__name__}")
    if isinstance(task, Diffuse) and settings.encoder_weight:
        raise InputError(
            "semantic diffusion has no encoder regulariser (IDInvert): set encoder_weight=0"
        )
    _check_settings(settings, generator, images, perceptual, encoder)
    task = task.for_batch(images)

    uses_encoder = settings.init == "encoder" or bool(settings.encoder_weight)
    modules = (
        generator,
        perceptual if settings.perceptual_weight else None,
        encoder if uses_encoder else None,
    )
    splits = [(None, None) if m is None else placed(m) for m in modules]
    graphdefs = tuple(graphdef for graphdef, _ in splits)
    states = tuple(state for _, state in splits)
    if init_codes is not None:
        init_codes = _check_init_codes(init_codes, generator, images, settings)
    n = images.shape[0]
    pad = -n % jax.device_count()

    def batched(x):
        """`x` (N, ...) padded with copies of its last entry to a multiple of the device count
        (every device then runs as many images; the copies are dropped at the end), sharded."""
        x = jnp.asarray(x)
        return parallel.shard_batch(jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]))

    keys = jax.random.split(jax.random.key(0) if key is None else key, n)
    inputs = jax.tree.map(batched, (images, task, keys, init_codes))
    return _Problem(
        settings=settings,
        structure=_structure(settings),
        numbers=_numbers(settings),
        graphdefs=graphdefs,
        states=states,
        inputs=inputs,
        images=jnp.asarray(images),
        task=task,
        n=n,
    )

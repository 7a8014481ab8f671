"""FID and KID: distances between image distributions in InceptionV3 pool3 feature space.

    net = jgan.ports.inception.load_inception("pt_inception-2015-12-05-6726825d.pth")
    real = reference_statistics(net, real_batches, "ffhq256_stats.npz")  # cached
    feats = inception_features(net, fake_batches)
    fid = frechet_distance(*real, *statistics(feats))

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to the two feature
sets; KID (Binkowski et al. 2018) the unbiased MMD² with the cubic polynomial kernel
k(x, y) = (x·y / d + 1)³, averaged over random subsets of 1000 (its standard protocol).
Features are computed by a jitted InceptionV3 over this process's devices (batches split
along the batch axis), so each process of a multi-host run can evaluate on its own.
"""

import functools
import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from jgan.errors import CheckpointError, InputError
from jgan.models.inception import FEATURES, FIDInceptionV3

KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _features(graphdef, state, images):
    return nnx.merge(graphdef, state)(images)


def _local_mesh():
    return Mesh(np.array(jax.local_devices()), ("data",))


def _as_float_images(images):
    """uint8 [0, 255] or float [-1, 1] (N, H, W, 3) -> float32 [-1, 1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"images must be (N, H, W, 3) RGB; got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    return images.astype(np.float32)


def inception_features(net, batches, *, batch_size=64, progress=False):
    """pool3 features (N, 2048) float32 of images through FID InceptionV3 `net`.

    `batches` is one array or an iterable of arrays (N, H, W, 3), uint8 in [0, 255] or float
    in [-1, 1]. Each batch is split over this process's devices (padded to a multiple of
    their number); arrays are cut into batches of `batch_size`.
    """
    if not isinstance(net, FIDInceptionV3):
        raise InputError(f"inception_features needs a FIDInceptionV3; got {type(net).__name__}")
    if isinstance(batches, np.ndarray | jax.Array):
        array = batches
        batches = (array[i : i + batch_size] for i in range(0, len(array), batch_size))
    mesh = _local_mesh()
    split, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    graphdef, state = nnx.split(net)
    state = jax.device_put(state, replicated)
    out = []
    for batch in tqdm(batches, desc="inception", unit="batch", disable=not progress):
        images = _as_float_images(batch)
        n, pad = len(images), -len(images) % mesh.size
        if pad:
            images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
        features = _features(graphdef, state, jax.device_put(images, split))
        out.append(np.asarray(jax.device_get(features))[:n])
    if not out:
        raise InputError("no images to compute Inception features of")
    return np.concatenate(out)


def statistics(features):
    """(mean, covariance) float64 of features (N, D), N >= 2: the Gaussian FID fits."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise InputError(f"features must be (N >= 2, D); got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix):
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|² + tr(S1 + S2 - 2 (S1 S2)^½) between two Gaussians.

    tr (S1 S2)^½ is computed as the sum of the square roots of the eigenvalues of the
    symmetric S1^½ S2 S1^½ (similar to S1 S2): real and stable even for the singular
    covariances of fewer samples than dimensions, where a general `sqrtm` of S1 S2 turns
    complex.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[-1]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InputError(
            f"statistics do not match: means {mu1.shape}, {mu2.shape}, covariances "
            f"{sigma1.shape}, {sigma2.shape}"
        )
    root = _psd_sqrt(sigma1)
    product = root @ sigma2 @ root
    values = np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)
    trace = np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(values).sum()
    return float(np.sum((mu1 - mu2) ** 2) + trace)


def fid(features1, features2):
    """FID between two feature sets (N, D)."""
    return frechet_distance(*statistics(features1), *statistics(features2))


@jax.jit
def _mmd2(x, y):
    """Unbiased MMD² of equal-size samples x, y (m, d) under (x·y / d + 1)³."""
    m, d = x.shape

    def kernel(a, b):
        return (jax.numpy.matmul(a, b.T, precision="highest") / d + 1) ** 3

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_diagonal = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1))
    return off_diagonal - 2 * kxy.mean()


def kid(features1, features2, *, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """KID: (mean, standard deviation) of the unbiased MMD² over `subsets` random subsets of
    min(subset_size, N1, N2) features drawn without replacement from each set."""
    x, y = np.asarray(features1, np.float32), np.asarray(features2, np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise InputError(f"features must be (N, D) of one D; got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2 or subsets < 1:
        raise InputError(f"KID needs at least 2 features per set and 1 subset; got {m}, {subsets}")
    rng = np.random.default_rng(seed)
    values = [
        float(
            _mmd2(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        )
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def save_statistics(path, mu, sigma, features=None):
    """Writes (mu, sigma) and optionally the features (for KID) to the .npz file `path`,
    atomically (a temporary file beside it, then renamed)."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.tmp-{os.getpid()}.npz"
    arrays = {"mu": mu, "sigma": sigma}
    if features is not None:
        arrays["features"] = np.asarray(features, np.float32)
    np.savez(staging, **arrays)
    os.replace(staging, path)


def load_statistics(path):
    """{'mu', 'sigma'[, 'features']} of a statistics file (as `save_statistics` or
    pytorch-fid's `--save-stats` write it)."""
    try:
        with np.load(os.fspath(path)) as data:
            stats = {k: data[k] for k in data.files}
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read FID statistics {path}: {error}") from error
    mu, sigma = stats.get("mu"), stats.get("sigma")
    if mu is None or sigma is None or sigma.shape != (len(mu), len(mu)):
        raise CheckpointError(
            f"{path} is not an FID statistics file (expected arrays mu (D,) and sigma (D, D); "
            f"found {sorted(stats)})"
        )
    return stats


def reference_statistics(net, batches, cache=None, *, keep_features=True, progress=False):
    """{'mu', 'sigma', 'features'} of reference images, read from the .npz `cache` when it
    exists, else computed (`batches` as `inception_features` takes them; a callable is
    called first, so the data is only opened when needed) and saved there."""
    if cache is not None and os.path.exists(cache):
        stats = load_statistics(cache)
        if len(stats["mu"]) != FEATURES:
            raise CheckpointError(f"{cache} holds {len(stats['mu'])}-d statistics, not pool3's")
        return stats
    features = inception_features(
        net, batches() if callable(batches) else batches, progress=progress
    )
    mu, sigma = statistics(features)
    stats = {"mu": mu, "sigma": sigma} | ({"features": features} if keep_features else {})
    if cache is not None:
        save_statistics(cache, mu, sigma, stats.get("features"))
    return stats

"""Layers against independent numpy references of the official formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jgan import nn

rng = np.random.default_rng(0)


def np_conv2d(x, w, pad):
    """Direct NHWC cross-correlation with an OIHW kernel (torch conv2d semantics)."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    o, i, kh, kw = w.shape
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], h, wd, o))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("nhwi,oi->nhwo", x[:, a : a + h, b : b + wd], w[:, :, a, b])
    return out


def np_conv_transpose2d(x, w, stride):
    """torch conv_transpose2d by scattering every input pixel; w is (in, out, kh, kw)."""
    n, h, wd, _ = x.shape
    _, o, kh, kw = w.shape
    out = np.zeros((n, (h - 1) * stride + kh, (wd - 1) * stride + kw, o))
    for y in range(h):
        for q in range(wd):
            out[:, y * stride : y * stride + kh, q * stride : q * stride + kw] += np.einsum(
                "ni,iokl->nklo", x[:, y, q], w
            )
    return out


def np_upfirdn(x, k, up, down, pad):
    """Per-channel zero-insert, pad, true convolution, decimate (NVIDIA upfirdn2d)."""
    n, h, w, c = x.shape
    u = np.zeros((n, h * up, w * up, c))
    u[:, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    u = np.pad(u, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    u = u[:, -min(y0, 0) : u.shape[1] + min(y1, 0), -min(x0, 0) : u.shape[2] + min(x1, 0)]
    kf = k[::-1, ::-1]
    kh, kw = k.shape
    oh, ow = u.shape[1] - kh + 1, u.shape[2] - kw + 1
    out = np.zeros((n, oh, ow, c))
    for a in range(kh):
        for b in range(kw):
            out += kf[a, b] * u[:, a : a + oh, b : b + ow]
    return out[:, ::down, ::down]


def test_conv2d_matches_reference():
    x, w = rng.normal(size=(2, 7, 6, 5)), rng.normal(size=(4, 5, 3, 3))
    ours = nn.conv2d(jnp.float32(x), jnp.float32(w), padding=1)
    np.testing.assert_allclose(ours, np_conv2d(x, w, 1), atol=1e-4)


def test_conv_transpose2d_and_upconv_match_reference():
    x, w = rng.normal(size=(2, 5, 4, 3)), rng.normal(size=(3, 6, 3, 3))
    ours = nn.conv_transpose2d(jnp.float32(x), jnp.float32(w), stride=2)
    np.testing.assert_allclose(ours, np_conv_transpose2d(x, w, 2), atol=1e-4)
    # upconv2d(x, W) is the transposed conv with the flipped, in/out-swapped OIHW weight.
    w_oihw = rng.normal(size=(6, 3, 3, 3))
    flipped = np.flip(w_oihw, (2, 3)).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(
        nn.upconv2d(jnp.float32(x), jnp.float32(w_oihw)),
        np_conv_transpose2d(x, flipped, 2),
        atol=1e-4,
    )


@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize(
    "up,down,pad",
    [(1, 1, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (2, 1, (0, -1, 1, 0))],
)
def test_upfirdn2d_matches_reference(up, down, pad, separable):
    x = rng.normal(size=(2, 6, 5, 3))
    # Asymmetric kernels catch a missing flip; separable ones take the shifted-slice path.
    k = np.outer(rng.normal(size=4), rng.normal(size=4)) if separable else rng.normal(size=(4, 4))
    ours = nn.upfirdn2d(jnp.float32(x), k, up=up, down=down, pad=pad)
    np.testing.assert_allclose(ours, np_upfirdn(x, k, up, down, pad), atol=1e-4)


def test_fir_resampling_sizes_gains_and_kernels():
    k = nn.make_kernel((1, 3, 3, 1), 4)
    np.testing.assert_allclose(k.sum(), 4.0)
    np.testing.assert_allclose(k, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16)
    ones = jnp.ones((1, 8, 8, 2))
    up = nn.upsample2d(ones, k)
    assert up.shape == (1, 16, 16, 2)
    np.testing.assert_allclose(up[0, 4:12, 4:12], 1.0, atol=1e-6)  # unit DC gain inside
    down = nn.downsample2d(ones, nn.make_kernel((1, 3, 3, 1)))
    assert down.shape == (1, 4, 4, 2)
    np.testing.assert_allclose(down[0, 1:3, 1:3], 1.0, atol=1e-6)
    np.testing.assert_allclose(nn.BLUR_KERNEL, np.outer([1, 2, 1], [1, 2, 1]) / 16)
    x = rng.normal(size=(1, 4, 4, 1))
    np.testing.assert_allclose(nn.upsample_nearest(jnp.float32(x))[0, ::2, 1::2], x[0], atol=0)
    np.testing.assert_allclose(nn.avg_pool2x(jnp.float32(x))[0, 0, 0], x[0, :2, :2].mean(), 1e-6)


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
def test_modulated_conv_grouped_equals_non_grouped_and_reference(up, demodulate):
    x = jnp.float32(rng.normal(size=(3, 6, 6, 4)))
    w = jnp.float32(rng.normal(size=(5, 4, 3, 3)))
    s = jnp.float32(rng.normal(size=(3, 4)) + 1)
    kernel = nn.make_kernel((1, 3, 3, 1), 4)
    kwargs = dict(demodulate=demodulate, up=up, up_kernel=kernel)
    fast = nn.modulated_conv2d(x, w, s, **kwargs)
    grouped = nn.modulated_conv2d(x, w, s, grouped=True, **kwargs)
    np.testing.assert_allclose(fast, grouped, atol=1e-4)
    # Reference: per-sample weights W * s (/ ||W * s||), one ordinary conv per sample.
    for i in range(3):
        wi = np.asarray(w) * np.asarray(s)[i][None, :, None, None]
        if demodulate:
            wi = wi / np.sqrt((wi**2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        xi = np.asarray(x)[i : i + 1]
        if up:
            ref = np_conv_transpose2d(xi, np.flip(wi, (2, 3)).transpose(1, 0, 2, 3), 2)
            ref = np_upfirdn(ref, kernel, 1, 1, (1, 1, 1, 1))
        else:
            ref = np_conv2d(xi, wi, 1)
        np.testing.assert_allclose(fast[i : i + 1], ref, atol=1e-4)
    assert fast.shape[1] == (12 if up else 6)


def test_minibatch_stddev_groups_are_strided():
    x = rng.normal(size=(4, 3, 3, 6)).astype(np.float32)
    ours = np.asarray(nn.minibatch_stddev(jnp.asarray(x), group_size=2, num_features=2))
    assert ours.shape == (4, 3, 3, 8)
    np.testing.assert_array_equal(ours[..., :6], x)
    for m in range(2):  # group m holds samples m and m + 2
        group = x[[m, m + 2]].reshape(2, 3, 3, 2, 3)
        std = np.sqrt(group.var(axis=0) + 1e-8).mean(axis=(0, 1, 3))
        for n in (m, m + 2):
            np.testing.assert_allclose(ours[n, 1, 2, 6:], std, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        nn.minibatch_stddev(jnp.ones((6, 2, 2, 1)), group_size=4)


def test_normalisations_and_style_modulation():
    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32) * 3 + 1
    p = np.asarray(nn.pixel_norm(jnp.asarray(x)))
    np.testing.assert_allclose((p**2).mean(-1), 1.0, rtol=1e-5)
    i = np.asarray(nn.instance_norm(jnp.asarray(x)))
    np.testing.assert_allclose(i.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose((i**2).mean(axis=(1, 2)), 1.0, rtol=1e-4)
    style = rng.normal(size=(2, 8)).astype(np.float32)
    m = np.asarray(nn.style_modulate(jnp.asarray(x), jnp.asarray(style)))
    np.testing.assert_allclose(m, x * (style[:, None, None, :4] + 1) + style[:, None, None, 4:])


def test_equalized_layers_apply_the_runtime_scale():
    dense = nn.EqualizedDense(16, 3, gain=2.0, lr_mul=0.01, bias_offset=1.0, rngs=nnx.Rngs(0))
    w, b = np.asarray(dense.weight[...]), np.asarray(dense.bias[...])
    assert abs(w.std() - 100) < 30  # stored N(0, 1) / lr_mul, as the official formats
    x = rng.normal(size=(5, 16)).astype(np.float32)
    expected = x @ (w * 2.0 / 4.0 * 0.01).T + b * 0.01 + 1.0
    np.testing.assert_allclose(dense(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)
    conv = nn.EqualizedConv(3, 2, 3, rngs=nnx.Rngs(1))
    xi = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    wc = np.asarray(conv.weight[...]) * np.sqrt(2) / np.sqrt(27)
    np.testing.assert_allclose(conv(jnp.asarray(xi)), np_conv2d(xi, wc, 1), atol=1e-4)


def test_noise_map_modes():
    fixed = jnp.arange(6.0).reshape(1, 1, 2, 3)
    const = nn.noise_map(fixed, 2, "const")
    assert const.shape == (2, 2, 3, 1)
    np.testing.assert_array_equal(const[1, :, :, 0], np.arange(6.0).reshape(2, 3))
    a = nn.noise_map(fixed, 2, "random", jax.random.key(0))
    np.testing.assert_array_equal(a, nn.noise_map(fixed, 2, "random", jax.random.key(0)))
    assert not np.allclose(a, nn.noise_map(fixed, 2, "random", jax.random.key(1)))
    np.testing.assert_array_equal(nn.noise_map(fixed, 2, "none"), 0.0)
    with pytest.raises(ValueError, match="key"):
        nn.noise_map(fixed, 2, "random")

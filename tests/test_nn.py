"""xcrai.nn: the box-sum partial convolution equals the textbook form; U-Net shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import textbook_layer

from xcrai.nn import PartialConv2d, PartialConvUNet, UNetConfig
from xcrai.nn.pconv import wrap_longitude
from xcrai.nn.unet import concat_channels, upsample_concat


def _random_case(seed, n, cin, h, w, hole_fraction):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, cin, h, w))
    m = rng.random((n, cin, h, w)) > hole_fraction
    m[0, :, : h // 2, : w // 2] = False  # a block large enough for windows with no valid point
    return x, m


@pytest.mark.parametrize("padding", ["zeros", "global"])
@pytest.mark.parametrize("stride,kernel", [(1, 3), (2, 5), (2, 7)])
@pytest.mark.parametrize("batch_norm,bias", [(False, True), (True, False)])
def test_box_sum_equals_textbook_mask_convolution(padding, stride, kernel, batch_norm, bias):
    x, m = _random_case(stride * kernel, 3, 4, 13, 17, 0.6)
    layer = PartialConv2d(4, 6, kernel, stride, bias=bias, batch_norm=batch_norm).double().eval()
    torch.manual_seed(0)
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    if batch_norm:
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(1e-5, 2.0)
    state = {f"l.{k}": v for k, v in layer.state_dict().items()}
    xt, mt = torch.from_numpy(x), torch.from_numpy(m.astype(np.float64))
    with torch.no_grad():
        got, got_mask = layer(xt * mt, mt.sum(1, keepdim=True), padding)
    want, want_mask = textbook_layer(state, "l", xt, mt, stride, padding == "global", "none")
    assert (want_mask[:, 0] == 0).any(), "the case must include windows with no valid point"
    np.testing.assert_array_equal(got_mask[:, 0].numpy(), want_mask[:, 0].numpy())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_window_normalization_scales_by_window_over_count():
    x, m = _random_case(1, 2, 3, 9, 9, 0.5)
    crai = PartialConv2d(3, 2, 3, 1, normalization="crai").double()
    window = PartialConv2d(3, 2, 3, 1, normalization="window").double()
    window.load_state_dict(crai.state_dict())
    xt, mt = torch.from_numpy(x), torch.from_numpy(m.astype(np.float64))
    count = mt.sum(1, keepdim=True)
    with torch.no_grad():
        a, mask = crai(xt * mt, count)
        b, _ = window(xt * mt, count)
    np.testing.assert_allclose(b.numpy(), a.numpy() * 27, rtol=1e-12)
    assert (mask == 0).any()


@pytest.mark.parametrize("shape", [(72, 72), (37, 51), (5, 9), (1, 3)])
@pytest.mark.parametrize("padding", ["zeros", "global"])
def test_unet_keeps_any_grid_size(shape, padding):
    net = PartialConvUNet(UNetConfig.from_n_filters(4, 3)).eval()
    x = torch.randn(2, 1, *shape)
    m = (torch.rand(2, 1, *shape) > 0.3).float()
    with torch.inference_mode():
        out, reach = net(x, m, padding)
    assert out.shape == (2, 1, *shape) and reach.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


def test_n_filters_config_matches_the_demo_checkpoint(demo_model):
    built = PartialConvUNet(UNetConfig.from_n_filters(18, 3))
    shapes = {k: v.shape for k, v in built.state_dict().items()}
    loaded = {k: v.shape for k, v in demo_model.net.state_dict().items()}
    assert shapes == loaded


def test_unreachable_points_are_zero_and_flagged():
    net = PartialConvUNet(UNetConfig.from_n_filters(4, 2)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(1, 1, 40, 40)
    m = torch.zeros_like(x)
    m[..., 0, 0] = 1  # one valid corner: far points are out of reach
    with torch.inference_mode():
        out, reach = net(x, m, "zeros")
    assert not reach[0, 0, -1, -1] and reach[0, 0, 0, 0]
    assert (out[reach == 0] == 0).all()


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
@pytest.mark.parametrize("channels", [1, 5])
def test_longitude_wrap_and_channel_concat_keep_values_and_layout(grad, channels):
    """Both the in-place (inference) and the ``cat`` (autograd) paths give ``torch.cat``'s
    values, and NHWC inputs give NHWC outputs, even next to a one-channel skip."""
    x = torch.randn(2, channels, 6, 9).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(grad)
    wrapped = wrap_longitude(x, 2)
    torch.testing.assert_close(wrapped, torch.cat([x[..., -2:], x, x[..., :2]], -1), rtol=0, atol=0)
    assert wrapped.is_contiguous(memory_format=torch.channels_last)
    deep = torch.randn(2, 4, 6, 9).contiguous(memory_format=torch.channels_last)
    joined = concat_channels(deep, x)
    torch.testing.assert_close(joined, torch.cat([deep, x], 1), rtol=0, atol=0)
    assert joined.is_contiguous(memory_format=torch.channels_last)
    assert joined.requires_grad == grad
    if grad:
        (wrapped.sum() + joined.sum()).backward()
        expected = torch.full_like(x, 2.0)
        expected[..., :2] += 1  # the wrap repeats the first and last two longitudes
        expected[..., -2:] += 1
        torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)


@pytest.mark.parametrize("padding", ["zeros", "global"])
def test_inference_and_autograd_paths_agree(demo_model, hadcrut, padding):
    """Without autograd the network writes wrapped and concatenated inputs in place; with
    it, it uses ``cat``. Both give the same numbers (channels-last input, as the engine's)."""
    net = demo_model.replica(torch.device("cpu"))
    values = hadcrut.tas.values[:, None]
    valid = np.isfinite(values)
    x = torch.from_numpy(np.where(valid, values, 0).astype(np.float32))
    m = torch.from_numpy(valid.astype(np.float32))
    x, m = (t.contiguous(memory_format=torch.channels_last) for t in (x, m))
    with torch.no_grad():
        fast, fast_reach = net(x, m, padding=padding)
    with torch.enable_grad():
        slow, slow_reach = net(x.requires_grad_(), m, padding=padding)
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(fast_reach, slow_reach, rtol=0, atol=0)


@pytest.mark.parametrize("rows,cols", [(72, 72), (721, 1440), (19, 7), (3, 2)])
@pytest.mark.parametrize("width", [0, 1, 2])
def test_upsampling_into_the_concatenation_equals_interpolate_then_cat(rows, cols, width):
    """The fused inference path writes nearest upsampling (row i // 2, column j // 2) straight
    into the concatenation; it equals ``F.interpolate`` then ``cat`` then the wrap, bit for bit,
    for odd and even sizes (a stride-2 layer halves H to ceil(H / 2))."""
    g = torch.Generator().manual_seed(rows * cols + width)
    small = torch.randn(2, 5, (rows + 1) // 2, (cols + 1) // 2, generator=g)
    small = small.contiguous(memory_format=torch.channels_last)
    skip = torch.randn(2, 1, rows, cols, generator=g)
    deep = torch.nn.functional.interpolate(small, size=(rows, cols), mode="nearest")
    expected = wrap_longitude(torch.cat([deep, skip], 1), width)
    with torch.no_grad():
        fused = upsample_concat(small, skip, width)
    torch.testing.assert_close(fused, expected, rtol=0, atol=0)
    assert fused.is_contiguous(memory_format=torch.channels_last)

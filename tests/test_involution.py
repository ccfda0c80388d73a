"""The involution operator: exact small cases, agreement with the unfold reference, gradients of
first and second order, errors, the layer, and the benchmark helpers (tiny sizes)."""
from __future__ import annotations

import importlib
import random
import re

import pytest
import torch

from stabgan.config import NORMS
from stabgan.nn import _involution_cpu
from stabgan.nn.involution import (Involution2d, eq5_parameter_estimate, involution,
                                   involution_reference)

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(params=["cpp", "torch"])
def backend(request, monkeypatch):
    """Run a test once per backend; the cpp one is skipped where no compiler can build it."""
    if request.param == "cpp" and _involution_cpu.load() is None:
        pytest.skip("the C++ involution kernel cannot be built here")
    monkeypatch.setenv("STABGAN_INVOLUTION_BACKEND", request.param)
    return request.param


def out_size(n: int, stride: int) -> int:
    return -(-n // stride)


def random_kernel(x: torch.Tensor, groups: int, k: int, stride: int, **kw) -> torch.Tensor:
    b, _, h, w = x.shape
    return torch.randn(b, groups, k, k, out_size(h, stride), out_size(w, stride), **kw)


# --- exact answers ----------------------------------------------------------------------------

def test_identity_center_kernel_returns_x(backend):
    x = torch.randn(2, 8, 5, 7)
    kernel = torch.zeros(2, 4, 3, 3, 5, 7)
    kernel[:, :, 1, 1] = 1.0
    assert torch.equal(involution(x, kernel), x)
    assert torch.equal(involution(x, torch.ones(2, 2, 1, 1, 5, 7)), x)


def test_hand_computed_3x3(backend):
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    box = torch.ones(1, 1, 3, 3, 3, 3)
    box_sums = torch.tensor([[[[12.0, 21, 16], [27, 45, 33], [24, 39, 28]]]])
    assert torch.equal(involution(x, box), box_sums)
    # Only the top-left tap: every pixel takes its upper-left neighbour (zero outside).
    top_left = torch.zeros(1, 1, 3, 3, 3, 3)
    top_left[:, :, 0, 0] = 1.0
    assert torch.equal(involution(x, top_left), torch.tensor([[[[0.0, 0, 0], [0, 1, 2], [0, 4, 5]]]]))
    # Stride 2 on 3x3: windows centred on the corners; a per-pixel weight scales each output.
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    strided = torch.ones(1, 1, 3, 3, 2, 2) * weights
    expected = torch.tensor([[[[12.0, 16 * 2], [24 * 3, 28 * 4]]]])
    assert torch.equal(involution(x, strided, stride=2), expected)


def test_groups_are_contiguous_channel_blocks(backend):
    x = torch.randn(1, 4, 4, 4)
    kernel = torch.zeros(1, 2, 3, 3, 4, 4)
    kernel[:, 0, 1, 1] = 1.0  # group 0 = channels 0, 1: identity; group 1 = channels 2, 3: zero
    y = involution(x, kernel)
    assert torch.equal(y[:, :2], x[:, :2])
    assert torch.equal(y[:, 2:], torch.zeros_like(y[:, 2:]))


# --- agreement with the reference -------------------------------------------------------------

def _random_case(rng: random.Random):
    groups = rng.choice([1, 2, 3, 4])
    return dict(b=rng.choice([1, 1, 2, 3]), c=groups * rng.choice([1, 2, 5]), groups=groups,
                k=rng.choice([1, 3, 5, 7]), h=rng.randint(1, 19), w=rng.randint(1, 37),
                stride=rng.choice([1, 1, 2, 3]), noncontig=rng.random() < 0.4)


def _make_inputs(case, dtype=torch.float32):
    b, c, h, w, s = case["b"], case["c"], case["h"], case["w"], case["stride"]
    kshape = (b, case["groups"], case["k"], case["k"], out_size(h, s), out_size(w, s))
    if case["noncontig"]:
        # Transposed storage for x, a permuted one for the kernel: both non-contiguous views.
        x = torch.randn(b, c, w, h, dtype=dtype).transpose(2, 3)
        kernel = torch.randn(kshape[::-1], dtype=dtype).permute(5, 4, 3, 2, 1, 0)
    else:
        x, kernel = torch.randn(b, c, h, w, dtype=dtype), torch.randn(kshape, dtype=dtype)
    return x.requires_grad_(), kernel.requires_grad_()


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_random_sweep(backend, seed):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(12):
        case = _random_case(rng)
        x, kernel = _make_inputs(case)
        y = involution(x, kernel, case["stride"])
        y_ref = involution_reference(x, kernel, case["stride"])
        gy = torch.randn_like(y_ref)
        grads = torch.autograd.grad(y, (x, kernel), gy)
        grads_ref = torch.autograd.grad(y_ref, (x, kernel), gy)
        torch.testing.assert_close(y, y_ref, **TOL, msg=lambda m: f"{case}: {m}")
        for g, g_ref, name in zip(grads, grads_ref, ("x", "kernel")):
            torch.testing.assert_close(g, g_ref, **TOL, msg=lambda m: f"grad {name} {case}: {m}")


def test_matches_reference_on_tiled_widths(backend):
    # Widths around the C++ register tile (16 floats): full tiles, tiles plus a tail, tail only.
    torch.manual_seed(0)
    for w in (8, 15, 16, 17, 33, 48):
        x = torch.randn(2, 12, 6, w, requires_grad=True)
        kernel = torch.randn(2, 3, 5, 5, 6, w, requires_grad=True)
        y, y_ref = involution(x, kernel), involution_reference(x, kernel)
        torch.testing.assert_close(y, y_ref, **TOL)
        gy = torch.randn_like(y)
        for g, g_ref in zip(torch.autograd.grad(y, (x, kernel), gy),
                            torch.autograd.grad(y_ref, (x, kernel), gy)):
            torch.testing.assert_close(g, g_ref, **TOL)


def test_multithreaded_cpp_kernels_match_reference(monkeypatch):
    # Small inputs normally run on one thread; force helpers (more than there are cores) and
    # repeat, so that races between the caller and late helpers would show.
    if _involution_cpu.load() is None:
        pytest.skip("the C++ involution kernel cannot be built here")
    module = importlib.import_module("stabgan.nn.involution")  # the package re-exports the function
    monkeypatch.setenv("STABGAN_INVOLUTION_BACKEND", "cpp")
    monkeypatch.setattr(module, "_GRAIN", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        torch.manual_seed(7)
        for b, groups, k, h, w, stride in ((1, 1, 3, 13, 17, 1), (3, 2, 5, 8, 16, 1),
                                           (2, 2, 3, 9, 11, 2), (1, 1, 7, 5, 40, 1)):
            x = torch.randn(b, 4, h, w, requires_grad=True)
            kernel = random_kernel(x, groups, k, stride).requires_grad_()
            y_ref = involution_reference(x, kernel, stride)
            gy = torch.randn_like(y_ref)
            grads_ref = torch.autograd.grad(y_ref, (x, kernel), gy)
            for _ in range(10):
                y = involution(x, kernel, stride)
                torch.testing.assert_close(y, y_ref, **TOL)
                for g, g_ref in zip(torch.autograd.grad(y, (x, kernel), gy), grads_ref):
                    torch.testing.assert_close(g, g_ref, **TOL)
    finally:
        torch.set_num_threads(threads)


def test_float64_matches_reference(backend):
    torch.manual_seed(1)
    for stride in (1, 2):
        x = torch.randn(2, 6, 9, 11, dtype=torch.float64)
        kernel = random_kernel(x, 3, 5, stride, dtype=torch.float64)
        torch.testing.assert_close(involution(x, kernel, stride),
                                   involution_reference(x, kernel, stride), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_gradcheck_and_gradgradcheck_float64(backend, stride):
    # Second order matters: the WGAN-GP penalty differentiates through the critic's input gradient.
    torch.manual_seed(2)
    x = torch.randn(1, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    kernel = random_kernel(x, 2, 3, stride, dtype=torch.float64).requires_grad_()

    def fn(a, b):
        return involution(a, b, stride)

    assert torch.autograd.gradcheck(fn, (x, kernel))
    assert torch.autograd.gradgradcheck(fn, (x, kernel), fast_mode=True)


def test_gradient_penalty_matches_reference(backend):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    kernel = torch.randn(2, 2, 3, 3, 6, 6, requires_grad=True)

    def penalty(op):
        (gx,) = torch.autograd.grad((op(x, kernel) ** 2).sum(), x, create_graph=True)
        return torch.autograd.grad(((gx.flatten(1).norm(dim=1) - 1) ** 2).mean(), (x, kernel))

    for g, g_ref in zip(penalty(involution), penalty(involution_reference)):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


def test_empty_inputs(backend):
    for x_shape, k_shape in (((0, 4, 5, 5), (0, 2, 3, 3, 5, 5)), ((2, 4, 0, 5), (2, 2, 3, 3, 0, 5))):
        x = torch.randn(x_shape, requires_grad=True)
        kernel = torch.randn(k_shape, requires_grad=True)
        y = involution(x, kernel)
        y.sum().backward()
        assert y.shape == x_shape and x.grad.shape == x_shape and kernel.grad.shape == k_shape


def test_half_types_accumulate_in_float32_on_cpu(monkeypatch):
    monkeypatch.setenv("STABGAN_INVOLUTION_BACKEND", "auto")
    torch.manual_seed(4)
    x = torch.randn(2, 8, 7, 7)
    kernel = random_kernel(x, 4, 5, 1)
    y_ref = involution_reference(x.double(), kernel.double())
    for dtype, tol in ((torch.float16, 2e-2), (torch.bfloat16, 1e-1)):
        y = involution(x.to(dtype), kernel.to(dtype))
        assert y.dtype == dtype
        torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)


def test_mixed_dtypes_are_promoted():
    x, kernel = torch.randn(1, 2, 4, 4), torch.randn(1, 1, 3, 3, 4, 4, dtype=torch.float64)
    y = involution(x, kernel)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, involution_reference(x.double(), kernel))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_reference(dtype):
    torch.manual_seed(5)
    x = torch.randn(2, 8, 9, 9, device="cuda")
    kernel = random_kernel(x, 4, 3, 2, device="cuda")
    y = involution(x.to(dtype), kernel.to(dtype), 2)
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(y.float(), involution_reference(x, kernel, 2), rtol=tol, atol=tol)


def test_fast_path_does_not_materialize_unfolded_tensor(backend):
    from stabgan.bench import peak_allocated_bytes
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    kernel = torch.randn(2, 2, 7, 7, 12, 12, requires_grad=True)
    gy = torch.randn(2, 8, 12, 12)

    def run(op):
        def fn():
            op(x, kernel).backward(gy)
            x.grad = kernel.grad = None
        return fn

    run(involution)()
    ours, ref = peak_allocated_bytes(run(involution)), peak_allocated_bytes(run(involution_reference))
    unfolded = 49 * x.numel() * 4
    assert ours < unfolded / 2, (ours, unfolded)
    assert ours < ref / 3, (ours, ref)


# --- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kshape, stride, words", [
    ((2, 2, 3, 3, 5, 5), 1, ["(2, 2, 3, 3, 5, 5)", "(2, 4, 6, 6)"]),   # spatial mismatch
    ((3, 2, 3, 3, 6, 6), 1, ["(3, 2, 3, 3, 6, 6)", "(2, 4, 6, 6)"]),   # batch mismatch
    ((2, 2, 3, 3, 6, 6), 2, ["(2, 2, 3, 3, 6, 6)", "(2, 4, 6, 6)", "3, 3"]),  # stride needs 3x3
    ((2, 2, 4, 4, 6, 6), 1, ["(4, 4)"]),                                 # even K
    ((2, 2, 3, 5, 6, 6), 1, ["(3, 5)"]),                                 # not square
    ((2, 3, 3, 3, 6, 6), 1, ["groups=3", "channels=4"]),                # groups do not divide C
])
def test_shape_errors_name_the_values(kshape, stride, words):
    with pytest.raises(ValueError) as info:
        involution(torch.randn(2, 4, 6, 6), torch.randn(kshape), stride)
    for word in words:
        assert word in str(info.value)


def test_other_argument_errors():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="stride"):
        involution(x, torch.randn(1, 1, 3, 3, 4, 4), 0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        involution(x[0], torch.randn(1, 1, 3, 3, 4, 4))
    with pytest.raises(ValueError, match="B, G, K, K"):
        involution(x, torch.randn(1, 3, 3, 4, 4))
    with pytest.raises(TypeError, match="floating"):
        involution(x.long(), torch.ones(1, 1, 3, 3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="kernel_size=4"):
        Involution2d(8, kernel_size=4)
    with pytest.raises(ValueError, match="groups=3.*channels=8"):
        Involution2d(8, groups=3)
    with pytest.raises(ValueError, match="stride=0"):
        Involution2d(8, stride=0)
    with pytest.raises(ValueError, match="norm='layer'"):
        Involution2d(8, norm="layer")


def test_cpp_backend_refuses_what_it_cannot_run(monkeypatch):
    if _involution_cpu.load() is None:
        pytest.skip("no compiler")
    monkeypatch.setenv("STABGAN_INVOLUTION_BACKEND", "cpp")
    x = torch.randn(1, 2, 4, 4, dtype=torch.float16)
    kernel = torch.randn(1, 1, 3, 3, 4, 4, dtype=torch.float16)
    with pytest.raises(ValueError, match="float16"):
        involution(x, kernel)
    monkeypatch.setenv("STABGAN_INVOLUTION_BACKEND", "fast")
    with pytest.raises(ValueError, match="'fast'"):
        involution(x.float(), kernel.float())


def test_falls_back_to_torch_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(_involution_cpu, "_state", {})
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("STABGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(_involution_cpu.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.warns(RuntimeWarning, match="pure-torch"):
        x = torch.randn(1, 4, 5, 5)
        kernel = torch.randn(1, 2, 3, 3, 5, 5)
        torch.testing.assert_close(involution(x, kernel), involution_reference(x, kernel), **TOL)
    assert _involution_cpu.load() is None  # remembered: warned once, no rebuild attempts


# --- the layer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("stride", [1, 2])
def test_layer_gradients_match_reference(norm, stride):
    torch.manual_seed(6)
    layer = Involution2d(8, kernel_size=3, stride=stride, groups=2, reduction=2, norm=norm)
    if norm == "spectral":
        layer.eval()  # in training each forward takes a power-iteration step: not repeatable
    x = torch.randn(2, 8, 7, 9, requires_grad=True)
    weight = torch.randn(2, 8, out_size(7, stride), out_size(9, stride))

    def grads(apply):
        layer.zero_grad(set_to_none=True)
        x.grad = None
        y = apply()
        (y * weight).sum().backward()
        return y, [x.grad] + [p.grad for p in layer.parameters()]

    kernels = []
    layer.kernel_tap.register_forward_hook(lambda m, i, out: kernels.append(out))
    y, g = grads(lambda: layer(x))
    y_ref, g_ref = grads(lambda: involution_reference(x, layer.generate_kernel(x), stride))
    assert y.shape == (2, 8, out_size(7, stride), out_size(9, stride))
    torch.testing.assert_close(y, y_ref, **TOL)
    assert len(g) == len(g_ref) and all(a is not None for a in g)
    for a, b in zip(g, g_ref):  # summed over many pixels: relative error grows, hence rtol 1e-4
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    kernel = kernels[0]  # what the layer applied, as the kernel probe's hook sees it
    assert kernel.requires_grad and torch.equal(kernel, layer.generate_kernel(x))
    assert kernel.shape == (2, 2, 3, 3, out_size(7, stride), out_size(9, stride))
    if norm == "softmax":
        torch.testing.assert_close(kernel.sum(dim=(2, 3)), torch.ones(2, 2, *kernel.shape[4:]))


# --- parameter estimate and benchmarks ----------------------------------------------------------

def test_eq5_parameter_estimate():
    assert eq5_parameter_estimate(64, 1, 4, 2) == 544  # the seed's table prints 644 for this case
    assert eq5_parameter_estimate(64, 3, 4, 2) == 800
    assert eq5_parameter_estimate(64, 3, 1, 2) == 2336
    with pytest.raises(ValueError, match="groups=0"):
        eq5_parameter_estimate(64, 3, 0, 2)


def test_bench_involution_tiny_run():
    from stabgan.bench import bench_involution, machine_peaks, table2_costs
    lines: list[str] = []
    peaks = machine_peaks("cpu", n=64, copy_mb=1, repeats=1)
    assert peaks["matmul_gflops"] > 0 and peaks["copy_gbps"] > 0
    rows = bench_involution(kernel_sizes=(3,), groups=(2,), sizes=(6,), batch=2, channels=4,
                            repeats=1, warmup=0, device="cpu", peaks=peaks, with_table2=False,
                            echo=lines.append)
    assert len(rows) == 1 and len(lines) >= 4
    for key in ("reference_ms", "ours_ms", "speedup", "reference_peak_mb", "ours_peak_mb",
                "ours_gflops", "matmul_gflops", "bound_ms"):
        assert rows[0][key] > 0, key
    costs = table2_costs(channels=64, batch=1, size=4, repeats=1, device="cpu", echo=lines.append)
    assert [r["case"] for r in costs] == list(range(1, 8))
    assert all(r["exact"] > 0 and r["layer_ms"] > 0 for r in costs)
    assert any("644" in line and "544" in line for line in lines)


def test_bench_involution_command_and_its_parameter_errors():
    from click.testing import CliRunner
    from stabgan.cli import cli

    tiny = ["bench", "involution", "--size", "6", "--kernel-size", "3", "--groups", "2",
            "--batch-size", "2", "--channels", "4", "--repeats", "1"]
    result = CliRunner().invoke(cli, tiny)
    assert result.exit_code == 0, result.output
    assert re.search(r"^ 6x6 +3 +2 \|.*x \|", result.output, flags=re.M), result.output
    assert "seed Table 2 at C=64" in result.output
    for flag, value, message in (("--kernel-size", "4", "4 is even"),
                                 ("--groups", "3", "3 does not divide --channels 4")):
        bad = CliRunner().invoke(cli, [*tiny, flag, value])
        assert bad.exit_code == 2 and message in bad.output, bad.output

"""CUDA kernels: registration (runs on any CUDA build), and on a GPU their
agreement with the CPU op and a float64 reference, autograd, streams, graphs,
devices, reproducibility and 64-bit indexing."""
import pytest
import torch

import sqish_ext  # noqa: F401  (registers the ops)
from sqish_ext import _build_info
from sqish_ext.reference import along_channels, sqish_partials, sqish_reference
from sqish_ext.testing import make_params, opcheck_samples

OPS = ("sqish::sqish", "sqish::sqish.float", "sqish::sqish_", "sqish::sqish_.float", "sqish::sqish_backward",
       "sqish::sqish_backward.float")

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws its random inputs from a fixed seed, so a failure reproduces."""
    torch.manual_seed(0)


# Tolerance of an output against the float64 reference, by x's dtype: float64 and
# float32 arithmetic error, one rounding step of bfloat16 and float16.
TOLERANCE = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=2e-5, atol=1e-6),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-3),
    torch.float16: dict(rtol=2e-3, atol=1e-4),
}
# Relative error of a parameter gradient (a sum over elements) against the sum of
# its terms' magnitudes: float64 sums, or float32 sums of float32 terms.
SUM_TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-5, torch.float16: 2e-5}


def test_cuda_build_registers_cuda_kernels():
    """A build that found a CUDA toolkit must register CUDA kernels: a build that
    silently fell back to CPU only fails here, also on machines without a GPU."""
    if _build_info.CUDA_VERSION is None:
        pytest.skip("CPU-only build (no CUDA toolkit, or SQISH_CPU_ONLY=1)")
    missing = [op for op in OPS if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
    assert not missing, f"built with CUDA {_build_info.CUDA_VERSION} but no CUDA kernel for {missing}"


# ---- helpers --------------------------------------------------------------------


def reference(x, params, grad=None):
    """float64 CPU reference: the output, and with grad, grad_input, the three
    parameter gradients, and the sums of their terms' magnitudes."""
    x64 = x.detach().cpu().double().requires_grad_(grad is not None)
    p64 = [along_channels(p.detach().cpu().double(), x64) for p in params]
    if grad is None:
        return sqish_reference(x64, *p64)
    # Parameters expanded to x's shape give every element's term separately.
    expanded = [p.expand(x.shape).clone().requires_grad_() for p in p64]
    y = sqish_reference(x64, *expanded)
    g64 = grad.detach().cpu().double()
    grads = torch.autograd.grad(y, [x64, *expanded], g64)
    dims = [d for d in range(x.dim()) if d != 1] if x.dim() >= 2 else list(range(x.dim()))

    def reduce(term, p):
        return term.sum(dims) if p.dim() == 1 else term.sum()

    param_grads = [reduce(t, p) for t, p in zip(grads[1:], params)]
    scales = [reduce(t.abs(), p) for t, p in zip(grads[1:], params)]
    return y.detach(), grads[0], param_grads, scales


def assert_close_to(got, expected, dtype):
    torch.testing.assert_close(got.cpu().double(), expected.double(), equal_nan=True, **TOLERANCE[dtype])


def assert_param_grads_close(got, expected, scales, dtype):
    """Within the sum's tolerance of its terms' magnitudes, and the rounding to the
    parameter's dtype."""
    tol = SUM_TOLERANCE[dtype]
    for g, e, s in zip(got, expected, scales):
        rtol = max(tol, torch.finfo(g.dtype).eps)
        torch.testing.assert_close(g.cpu().double(), e, rtol=rtol, atol=tol * float(s.max()) + 1e-30)


# x's layouts: (shape, how to lay it out). Each per-channel layout reaches one
# of the kernels' tilings and vector widths.
LAYOUTS = {
    "1-D": ((4097 * 3 + 1,), lambda t: t),
    "1-D misaligned": ((1000,), lambda t: torch.cat([t.new_zeros(1), t.flatten()])[1:]),
    "empty": ((0, 3), lambda t: t),
    "NCHW 7x7": ((4, 6, 7, 7), lambda t: t),
    "NCHW 8x8": ((3, 5, 8, 8), lambda t: t),
    "NCHW wide rows": ((2, 3, 40, 70), lambda t: t),
    "channels_last": ((4, 16, 5, 7), lambda t: t.contiguous(memory_format=torch.channels_last)),
    "channels_last odd C": ((4, 3, 5, 7), lambda t: t.contiguous(memory_format=torch.channels_last)),
    "(N, C)": ((65, 24), lambda t: t),
    "(N, C) odd": ((33, 17), lambda t: t),
    "(N, C) many channels": ((3, 4100), lambda t: t),
    "(N, C, L)": ((5, 12, 64), lambda t: t),
    "strided view": ((6, 10, 9), lambda t: t[:, ::2, 1:]),
    "channels outermost": ((3, 5, 6), lambda t: t.permute(1, 0, 2).contiguous().permute(1, 0, 2)),
}
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def sample_x(layout, dtype, scale=3.0):
    shape, arrange = LAYOUTS[layout]
    return arrange((torch.randn(shape, dtype=torch.float64) * scale).to(device="cuda", dtype=dtype))


def channels_of(x):
    return x.shape[1] if x.dim() >= 2 else 1


# ---- agreement with the CPU op and the float64 reference ---------------------------


@requires_cuda
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("per_channel", [(False,) * 3, (True,) * 3, (True, False, True)], ids=["scalar", "per-channel", "mixed"])
def test_forward_and_backward_match(layout, dtype, per_channel):
    x = sample_x(layout, dtype)
    if any(per_channel) and x.dim() < 2:
        pytest.skip("per-channel parameters need a channel dimension")
    params = make_params(channels_of(x), per_channel, dtypes=(torch.float64, torch.float32, torch.float32))
    g = torch.randn(x.shape, dtype=torch.float64).to(device="cuda", dtype=dtype)

    y = torch.ops.sqish.sqish(x, *params)
    assert y.dtype == dtype and y.shape == x.shape
    y_ref, gx_ref, grads_ref, scales = reference(x, params, g)
    assert_close_to(y, y_ref, dtype)
    cpu_params = [p.cpu() for p in params]
    assert_close_to(y, torch.ops.sqish.sqish(x.cpu(), *cpu_params), dtype)

    gx, *grads = torch.ops.sqish.sqish_backward(g, x, *params, True)
    assert_close_to(gx, gx_ref, dtype)
    assert [t.dtype for t in grads] == [p.dtype for p in params]
    assert_param_grads_close(grads, grads_ref, scales, dtype)
    gx_only = torch.ops.sqish.sqish_backward(g, x, *params, False)[0]
    assert torch.equal(gx_only, gx)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_inplace_matches(dtype):
    x = sample_x("channels_last", dtype)
    params = make_params(x.shape[1], (True, True, False))
    expected = torch.ops.sqish.sqish(x, *params)
    assert torch.ops.sqish.sqish_(x, *params) is x
    assert torch.equal(x, expected)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values_match_cpu(dtype):
    values = [float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0, 1e4, -1e4]
    x = torch.tensor(values * 3, dtype=dtype, device="cuda")
    for alpha in (0.0, 0.2):
        params = [torch.tensor(v, device="cuda") for v in (alpha, 1.0, 1.0)]
        cpu_params = [p.cpu() for p in params]
        assert_close_to(torch.ops.sqish.sqish(x, *params), torch.ops.sqish.sqish(x.cpu(), *cpu_params), dtype)
        g = torch.ones_like(x)
        got = torch.ops.sqish.sqish_backward(g, x, *params, False)[0]
        expected = torch.ops.sqish.sqish_backward(g.cpu(), x.cpu(), *cpu_params, False)[0]
        assert_close_to(got, expected, dtype)


@requires_cuda
def test_nan_parameters_propagate():
    x = torch.randn(3, 4, 5, device="cuda")
    params = make_params(4, (True, True, True))
    params[1][2] = float("nan")
    y = torch.ops.sqish.sqish(x, *params)
    assert y[:, 2].isnan().all() and not y[:, [0, 1, 3]].isnan().any()
    _, ga, gb, gc = torch.ops.sqish.sqish_backward(torch.ones_like(x), x, *params, True)
    for grad in (ga, gb, gc):
        assert grad[2].isnan() and not grad[[0, 1, 3]].isnan().any()


# ---- autograd and op checks on CUDA ------------------------------------------------


@requires_cuda
@pytest.mark.parametrize("per_channel", [(False,) * 3, (True,) * 3, (False, True, False)], ids=["scalar", "per-channel", "mixed"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["NCHW", "NHWC"])
def test_gradcheck(per_channel, memory_format):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, device="cuda").contiguous(memory_format=memory_format)
    x.requires_grad_()
    params = make_params(3, per_channel, dtypes=(torch.float64,) * 3, requires_grad=True)
    assert torch.autograd.gradcheck(torch.ops.sqish.sqish, (x, *params))
    assert torch.autograd.gradgradcheck(torch.ops.sqish.sqish, (x, *params))


@requires_cuda
def test_opcheck():
    for op, args, test_utils in opcheck_samples():
        torch.library.opcheck(op, args, test_utils=test_utils)


@requires_cuda
def test_compile_reduce_overhead():
    model = sqish_ext.Sqish(learnable=True, num_parameters=8).cuda()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # warm-up, recording, replay
        x = torch.randn(4, 8, 6, 6, device="cuda", requires_grad=True)
        y = compiled(x)
        y.backward(torch.ones_like(y))
        got = (y.detach().clone(), x.grad.clone(), model.alpha.grad.clone())
        model.zero_grad()
        x_eager = x.detach().requires_grad_()
        y_eager = model(x_eager)
        y_eager.backward(torch.ones_like(y_eager))
        torch.testing.assert_close(got[0], y_eager)
        torch.testing.assert_close(got[1], x_eager.grad)
        torch.testing.assert_close(got[2], model.alpha.grad)
        model.zero_grad()


# ---- streams, graphs, devices -----------------------------------------------------


@requires_cuda
def test_runs_on_the_current_stream():
    src = torch.randn(8, 16, 32, 32, device="cuda")
    g_src = torch.randn_like(src)
    params = make_params(16, (True, False, True))
    expected = torch.ops.sqish.sqish(src, *params)
    expected_grads = torch.ops.sqish.sqish_backward(g_src, src, *params, True)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        # A kernel launched on any other stream would run before these inputs exist.
        torch.cuda._sleep(20_000_000)
        x, g = src * 1, g_src * 1
        y = torch.ops.sqish.sqish(x, *params)
        grads = torch.ops.sqish.sqish_backward(g, x, *params, True)
    torch.cuda.synchronize()
    assert torch.equal(y, expected)
    for got, want in zip(grads, expected_grads):
        assert torch.equal(got, want)


@requires_cuda
@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per-channel"])
def test_cuda_graph_capture(per_channel):
    shape, channels = (4, 32, 9, 9), 32
    params = make_params(channels, (per_channel,) * 3)
    static_x = torch.randn(shape, device="cuda")
    static_g = torch.randn(shape, device="cuda")

    def step():
        y = torch.ops.sqish.sqish(static_x, *params)
        return (y, *torch.ops.sqish.sqish_backward(static_g, static_x, *params, True))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up outside capture, as torch.cuda.graph asks
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()

    for _ in range(2):
        static_x.copy_(torch.randn(shape, device="cuda"))
        static_g.copy_(torch.randn(shape, device="cuda"))
        graph.replay()
        for got, want in zip(captured, step()):
            assert torch.equal(got, want)


@requires_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_second_device():
    with torch.cuda.device(0):
        x = torch.randn(4, 8, 5, 5, device="cuda:1")
        params = make_params(8, (True,) * 3, device="cuda:1")
        g = torch.randn_like(x)
        y = torch.ops.sqish.sqish(x, *params)
        gx, *grads = torch.ops.sqish.sqish_backward(g, x, *params, True)
    assert y.device == x.device and gx.device == x.device
    y_ref, gx_ref, grads_ref, scales = reference(x, params, g)
    assert_close_to(y, y_ref, torch.float32)
    assert_close_to(gx, gx_ref, torch.float32)
    assert_param_grads_close(grads, grads_ref, scales, torch.float32)


# ---- reproducibility and size ------------------------------------------------------


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["1-D", "NCHW", "NHWC"])
def test_parameter_gradients_are_bitwise_reproducible(dtype, layout):
    shape = {"1-D": (3 << 20,), "NCHW": (16, 64, 28, 28), "NHWC": (16, 64, 28, 28)}[layout]
    x = torch.randn(shape, device="cuda", dtype=dtype)
    if layout == "NHWC":
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(x)
    params = make_params(channels_of(x), (layout != "1-D",) * 3)
    first = torch.ops.sqish.sqish_backward(g, x, *params, True)
    for _ in range(3):
        again = torch.ops.sqish.sqish_backward(g, x, *params, True)
        for a, b in zip(first, again):
            assert torch.equal(a, b)


@requires_cuda
def test_more_than_2_31_elements_half():
    numel = (1 << 31) + (1 << 20) + 3  # past int32, with a partial last vector
    needed = 4 * numel * 2 + (1 << 30)  # x, grad, grad_input, output, slack
    if torch.cuda.mem_get_info()[0] < needed:
        pytest.skip(f"needs {needed / 2**30:.0f} GiB of free GPU memory")
    params = make_params(1, (False,) * 3)
    x = torch.randn(numel, device="cuda", dtype=torch.float16)
    g = torch.randn_like(x)
    chunk = 1 << 28
    starts = range(0, numel, chunk)

    y = torch.ops.sqish.sqish(x, *params)
    for s in starts:
        assert torch.equal(y[s:s + chunk], torch.ops.sqish.sqish(x[s:s + chunk], *params))
    del y

    gx, *grads = torch.ops.sqish.sqish_backward(g, x, *params, True)
    totals = [torch.zeros((), dtype=torch.float64, device="cuda") for _ in grads]
    squares = [torch.zeros((), dtype=torch.float64, device="cuda") for _ in grads]
    for s in starts:
        xs, gs = x[s:s + chunk], g[s:s + chunk]
        part_gx, *part = torch.ops.sqish.sqish_backward(gs, xs, *params, True)
        assert torch.equal(gx[s:s + chunk], part_gx)
        partials = sqish_partials(xs.float(), *params)[1:]
        for total, square, p, partial in zip(totals, squares, part, partials):
            total += p.double()
            square += (gs.float() * partial).double().square().sum()
    # The terms g·∂f/∂p have mean about 0, so each sum is about √n·rms: a tolerance
    # relative to it would fail by chance. Rounding the float32 partial sums moves a
    # sum by a few float32 ulps of √n·rms (each ~0.006·rms here); 1e-3·√n·rms
    # (~46·rms) is far above that and far below what the smallest wrong chunk (the
    # last one, 2^20 + 3 elements dropped or counted twice: ~1024·rms) would make.
    for got, total, square in zip(grads, totals, squares):
        root_n_rms = float(square.sqrt())
        torch.testing.assert_close(got.double(), total, rtol=0, atol=1e-3 * root_n_rms)


# ---- no host synchronisation, from the user's API -----------------------------------


class EverySqish(torch.nn.Module):
    """Fixed (floats), learnable scalar and learnable per-channel Sqish in one model."""

    def __init__(self, channels):
        super().__init__()
        self.fixed = sqish_ext.Sqish(0.1, 1.5, 0.7)
        self.scalar = sqish_ext.Sqish(learnable=True)
        self.per_channel = sqish_ext.Sqish(learnable=True, num_parameters=channels)

    def forward(self, x):
        return self.per_channel(self.scalar(self.fixed(x))) + sqish_ext.sqish(x, 0.2, 0.5, 1.0)


@requires_cuda
def test_training_step_never_synchronizes_with_the_host():
    model = EverySqish(16).cuda()
    x = torch.randn(4, 16, 8, 8, device="cuda", requires_grad=True)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(x).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(p.grad is not None for p in model.parameters())


@requires_cuda
def test_training_step_captures_and_replays_in_a_cuda_graph():
    model = EverySqish(16).cuda()
    static_x = torch.randn(4, 16, 8, 8, device="cuda", requires_grad=True)

    def step():
        model(static_x).square().sum().backward()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside capture, as torch.cuda.graph asks
            step()
    torch.cuda.current_stream().wait_stream(side)
    for t in (static_x, *model.parameters()):
        t.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    for _ in range(2):
        with torch.no_grad():
            static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        captured = [t.grad.clone() for t in (static_x, *model.parameters())]
        x = static_x.detach().clone().requires_grad_()
        params = list(model.parameters())
        eager = torch.autograd.grad(model(x).square().sum(), [x, *params])
        for got, want in zip(captured, eager):
            torch.testing.assert_close(got, want)

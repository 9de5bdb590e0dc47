"""The ops called from many Python threads at once, and in a forked worker after
the parent has used them. The CPU kernels split work by numel, layout and thread
count only, never by timing, so concurrent calls give the serial results bit for bit."""
import io
import threading

import torch
import torch.multiprocessing as mp

import sqish_ext

THREADS = 8
SHAPE = (4, 16, 9, 11)  # per-channel parameters over 16 channels; 6,336 elements, several parallel tasks


def module():
    torch.manual_seed(0)
    m = sqish_ext.Sqish(learnable=True, num_parameters=SHAPE[1])
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(torch.empty_like(p).uniform_(0.5, 1.5))
    return m


def inputs(seed):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)) * 4


def step(m, x):
    """Forward and backward: the output and every gradient."""
    x = x.clone().requires_grad_()
    y = m(x)
    grads = torch.autograd.grad(y, [x, *m.parameters()], torch.ones_like(y) * x.detach().cos())
    return [y.detach(), *grads]


def run_in_threads(m, xs):
    results = [None] * len(xs)
    errors = []
    start = threading.Barrier(len(xs))

    def work(i):
        try:
            start.wait(timeout=60)
            results[i] = step(m, xs[i])
        except Exception as error:  # noqa: BLE001  (re-raised below, in the test's thread)
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def assert_bitwise_equal(got, want):
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_threads_with_different_inputs_match_serial_calls_bitwise():
    m = module()
    xs = [inputs(seed) for seed in range(THREADS)]
    serial = [step(m, x) for x in xs]
    for got, want in zip(run_in_threads(m, xs), serial):
        assert_bitwise_equal(got, want)


def test_threads_with_the_same_input_match_a_serial_call_bitwise():
    m = module()
    x = inputs(0)
    serial = step(m, x)
    for got in run_in_threads(m, [x] * THREADS):
        assert_bitwise_equal(got, serial)


def kernels_only(m, x):
    """The forward and backward ops called directly: autograd's engine itself cannot run
    in a forked child once the parent has started its worker threads (a torch rule)."""
    with torch.no_grad():
        params = (m.alpha, m.log_beta.exp(), m.gamma)
        grad_output = x.cos()
        return [torch.ops.sqish.sqish(x, *params),
                *torch.ops.sqish.sqish_backward(grad_output, x, *params, True)]


def _worker(queue):
    try:
        torch.set_num_threads(1)
        # As bytes: a tensor sent through torch's queue lives in shared memory that the
        # child's exit can take away before the parent opens it.
        buffer = io.BytesIO()
        torch.save(kernels_only(module(), inputs(1)), buffer)
        queue.put(("ok", buffer.getvalue()))
    except Exception as error:  # noqa: BLE001  (reported to the parent, which fails the test)
        queue.put(("error", repr(error)))


def test_forked_worker_runs_the_ops_after_the_parent_used_them():
    # The parent's calls start torch's intra-op thread pool and pick the CPU kernels; a
    # forked child inherits both and must still compute the same values.
    step(module(), inputs(0))
    context = mp.get_context("fork")
    queue = context.Queue()
    worker = context.Process(target=_worker, args=(queue,))
    worker.start()
    status, payload = queue.get(timeout=120)
    worker.join(timeout=60)
    assert status == "ok", payload
    assert worker.exitcode == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = kernels_only(module(), inputs(1))
    finally:
        torch.set_num_threads(threads)
    assert_bitwise_equal(torch.load(io.BytesIO(payload)), want)

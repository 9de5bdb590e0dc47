"""Distributed training (DDP, FSDP2) and DTensor, on two gloo processes on this machine.

Starting the processes costs more than all the checks together, so one group of two
runs every check (a function marked @check) once for this module, in the
`group_results` fixture, and test_on_two_ranks[check] asserts its outcome on both.
"""
import os
import queue
import sys
import time
import traceback
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

if not dist.is_available():
    pytest.skip("this torch is built without torch.distributed", allow_module_level=True)

# The workers import this module afresh, the rank that the fixture gives this
# variable with torch.distributed.tensor loaded before sqish_ext and the other with
# it loaded after: the sharding rules must register in either order. The first
# rank also shows that `import sqish_ext` alone does not load DTensor (0.7 s).
DTENSOR_FIRST_VARIABLE = "SQISH_TEST_IMPORT_DTENSOR_FIRST"
DTENSOR_IMPORTED_FIRST = os.environ.get(DTENSOR_FIRST_VARIABLE) == "1"
if DTENSOR_IMPORTED_FIRST:
    import torch.distributed.tensor  # noqa: F401

import sqish_ext  # noqa: E402

DTENSOR_LOADED_BY_SQISH_EXT = not DTENSOR_IMPORTED_FIRST and "torch.distributed.tensor" in sys.modules

WORLD_SIZE = 2
DTENSOR_FIRST_RANK = 1
# A failing check can leave the other rank waiting in a collective: the group's
# timeout ends that wait, and the fixture's deadline ends the group.
COLLECTIVE_TIMEOUT = timedelta(seconds=30)
GROUP_DEADLINE_S = 120

EPS = torch.finfo(torch.float64).eps
# Elementwise results come from the same kernel on the same values whichever rank
# computes them; only a vector body and its tail may round differently.
ELEMENTWISE = dict(rtol=4 * EPS, atol=0.0)


def summed(terms, term_bound):
    """Tolerance for a sum of `terms` float64 terms, each at most term_bound in size,
    taken in another order (per shard, then across ranks): each addition rounds by at
    most eps of the partial sum, so the difference is within terms·eps·Σ|term|."""
    return dict(rtol=terms * EPS, atol=terms * EPS * terms * term_bound)


# Training runs in float64: DDP and FSDP2 differ from one process only in the order
# of the batch sums (8 samples × 64 positions, ≤ 512·eps ≈ 1e-13 relative per step),
# which three steps compound to far below 1e-10; a gradient from half the batch (a
# missing all-reduce) moves them by about 0.1 (the check below shows it).
TRAINING = dict(rtol=1e-10, atol=1e-10)

CHECKS = {}


def check(fn):
    """Registers fn(mesh) as a check that every rank runs."""
    CHECKS[fn.__name__] = fn
    return fn


# ---- the group of processes -------------------------------------------------------


def _worker(rank, store_port, results):
    # Both ranks share two cores: one thread each keeps them from oversubscribing.
    torch.set_num_threads(1)
    # The ranks connect over loopback, not the address the host name resolves to.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    store = dist.TCPStore("127.0.0.1", store_port, WORLD_SIZE, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD_SIZE, timeout=COLLECTIVE_TIMEOUT)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    for name, fn in CHECKS.items():
        try:
            fn(mesh)
            results.put((rank, name, None))
        except Exception:  # noqa: BLE001  (reported to the test that asserts this check)
            results.put((rank, name, traceback.format_exc()))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def group_results():
    """{check name: {rank: None if it passed, else its traceback}}."""
    context = mp.get_context("spawn")
    results = context.Queue()
    # The store lives in this process, on a port the system picks: no port to guess.
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    workers = [context.Process(target=_worker, args=(rank, store.port, results)) for rank in range(WORLD_SIZE)]
    for rank, worker in enumerate(workers):
        with pytest.MonkeyPatch.context() as patch:  # a spawned process starts with this environment
            patch.setenv(DTENSOR_FIRST_VARIABLE, str(int(rank == DTENSOR_FIRST_RANK)))
            worker.start()
    outcomes = {name: {} for name in CHECKS}
    deadline = time.monotonic() + GROUP_DEADLINE_S
    try:
        for _ in range(WORLD_SIZE * len(CHECKS)):
            rank, name, error = results.get(timeout=max(deadline - time.monotonic(), 0.1))
            outcomes[name][rank] = error
    except queue.Empty:
        pass
    for worker in workers:
        worker.join(timeout=max(deadline - time.monotonic(), 5))
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=5)
    outcomes["exit codes"] = [worker.exitcode for worker in workers]
    return outcomes


def assert_passed(group_results, name):
    outcome = group_results[name]
    for rank in range(WORLD_SIZE):
        if rank not in outcome:
            pytest.fail(f"rank {rank} reported nothing for {name} (workers' exit codes: "
                        f"{group_results['exit codes']})")
        if outcome[rank] is not None:
            pytest.fail(f"rank {rank}:\n{outcome[rank]}", pytrace=False)


# ---- training -----------------------------------------------------------------------

CNN_CHANNELS = 4
GLOBAL_BATCH = 8
STEPS = 3


def _cnn(second_sqish_parameters):
    """A small CNN with learnable Sqish, per channel then with second_sqish_parameters
    (1: shared values), parameters moved off their defaults and apart per channel so
    that a lost or mixed-up one shows."""
    torch.manual_seed(0)
    per_channel = sqish_ext.Sqish(alpha=0.1, beta=0.5, gamma=1.5, learnable=True, num_parameters=CNN_CHANNELS)
    with torch.no_grad():
        per_channel.alpha.copy_(torch.linspace(0.0, 0.3, CNN_CHANNELS))
        per_channel.gamma.copy_(torch.linspace(0.5, 2.0, CNN_CHANNELS))
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, CNN_CHANNELS, 3, padding=1),
        per_channel,
        torch.nn.Conv2d(CNN_CHANNELS, CNN_CHANNELS, 3, padding=1),
        sqish_ext.Sqish(alpha=0.2, beta=2.0, gamma=0.8, learnable=True, num_parameters=second_sqish_parameters),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(CNN_CHANNELS, 2),
    ).double()


def _global_batch():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(GLOBAL_BATCH, 3, 8, 8, generator=generator, dtype=torch.float64)
    targets = torch.randn(GLOBAL_BATCH, 2, generator=generator, dtype=torch.float64)
    return inputs, targets


def _local_batch():
    return [part.chunk(WORLD_SIZE)[dist.get_rank()] for part in _global_batch()]


def _train(model, inputs, targets):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        optimizer.step()
    return model


def _parameters(model):
    """name -> full value: sharded (FSDP2) parameters gathered."""
    return {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach()
            for name, p in model.named_parameters()}


def _one_process_parameters(model):
    return _parameters(_train(model, *_global_batch()))


def _strip_wrapper_prefix(params):
    return {name.removeprefix("module."): value for name, value in params.items()}


@check
def ddp_training_matches_one_process_on_the_global_batch(mesh):
    from torch.nn.parallel import DistributedDataParallel

    ddp = _train(DistributedDataParallel(_cnn(1)), *_local_batch())
    torch.testing.assert_close(_strip_wrapper_prefix(_parameters(ddp)), _one_process_parameters(_cnn(1)), **TRAINING)


@check
def training_on_half_the_batch_differs_so_the_training_checks_can_fail(mesh):
    # What DDP would give without its all-reduce: the training checks must see it.
    alone = _parameters(_train(_cnn(1), *_local_batch()))
    reference = _one_process_parameters(_cnn(1))
    difference = max((alone[name] - reference[name]).abs().max().item() for name in reference)
    assert difference > 1e3 * TRAINING["atol"], difference


@check
def fsdp2_training_matches_one_process_on_the_global_batch(mesh):
    from torch.distributed.fsdp import fully_shard

    # fully_shard refuses 0-dim parameters, so both Sqish layers have one per channel.
    model = _cnn(CNN_CHANNELS)
    fully_shard(model, mesh=mesh)
    _train(model, *_local_batch())
    torch.testing.assert_close(_parameters(model), _one_process_parameters(_cnn(CNN_CHANNELS)), **TRAINING)


# ---- DTensor ------------------------------------------------------------------------

# Uneven shards on two ranks along every dimension: 3 + 2 samples, 2 + 1 channels.
SHAPE = (5, 3, 4)


def _inputs(per_channel=True):
    """x and (alpha, beta, gamma), the same on every rank: per-channel values differ
    per channel, so that a shard given another shard's parameters shows."""
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    if not per_channel:
        return x, [torch.tensor(v, dtype=torch.float64) for v in (0.1, 1.5, 0.7)]
    values = ([0.05, 0.1, 0.3], [0.5, 1.0, 2.0], [0.7, 1.0, 1.5])
    return x, [torch.tensor(v, dtype=torch.float64) for v in values]


def _distribute(mesh, tensors, placement, requires_grad=False):
    from torch.distributed.tensor import distribute_tensor

    return [distribute_tensor(t, mesh, [placement]).requires_grad_(requires_grad) for t in tensors]


def _without_communication(fn, *args):
    from torch.distributed.tensor.debug import CommDebugMode

    with CommDebugMode() as comms:
        result = fn(*args)
    assert comms.get_total_counts() == 0, f"communicated: {comms.get_comm_counts()}"
    return result


def _chunk(tensor):
    """This rank's part of tensor, as Shard(0) splits it."""
    return tensor.chunk(WORLD_SIZE)[dist.get_rank()]


def _check_forward_runs_locally(mesh, x_placement, param_placement):
    x, params = _inputs()
    (dx,), dparams = _distribute(mesh, [x], x_placement), _distribute(mesh, params, param_placement)
    y = _without_communication(torch.ops.sqish.sqish, dx, *dparams)
    assert y.placements == (x_placement,), y.placements
    # This rank's shard, from this rank's channels' parameters when x is split by channel.
    local_params = [_chunk(p) for p in params] if x_placement.is_shard(1) else params
    torch.testing.assert_close(y.to_local(), torch.ops.sqish.sqish(dx.to_local(), *local_params), **ELEMENTWISE)
    torch.testing.assert_close(y.full_tensor(), torch.ops.sqish.sqish(x, *params), **ELEMENTWISE)


@check
def batch_sharded_forward_runs_on_the_local_shard(mesh):
    from torch.distributed.tensor import Replicate, Shard

    _check_forward_runs_locally(mesh, Shard(0), Replicate())


@check
def channel_sharded_forward_runs_on_the_local_shard_with_sharded_parameters(mesh):
    from torch.distributed.tensor import Shard

    _check_forward_runs_locally(mesh, Shard(1), Shard(0))


@check
def channel_sharded_forward_slices_replicated_parameters_without_moving_x(mesh):
    from torch.distributed.tensor import Replicate, Shard

    _check_forward_runs_locally(mesh, Shard(1), Replicate())


@check
def float_overload_keeps_any_placement_of_x(mesh):
    from torch.distributed.tensor import Replicate, Shard

    x, _ = _inputs()
    for placement in (Replicate(), Shard(0), Shard(1), Shard(2)):
        (dx,) = _distribute(mesh, [x], placement)
        y = _without_communication(torch.ops.sqish.sqish.float, dx, 0.1, 1.5, 0.7)
        assert y.placements == (placement,), (placement, y.placements)
        torch.testing.assert_close(y.full_tensor(), torch.ops.sqish.sqish.float(x, 0.1, 1.5, 0.7), **ELEMENTWISE)


@check
def partial_x_is_reduced_before_the_nonlinearity(mesh):
    # Sqish of a sum is not the sum of Sqish: no rule may pass a Partial x through.
    from torch.distributed.tensor import DTensor, Partial, Replicate

    x, params = _inputs()
    dx = DTensor.from_local(x / WORLD_SIZE, mesh, [Partial()])
    y = torch.ops.sqish.sqish(dx, *_distribute(mesh, params, Replicate()))
    assert not y.placements[0].is_partial()
    torch.testing.assert_close(y.full_tensor(), torch.ops.sqish.sqish(x, *params), **ELEMENTWISE)


# The parameters' gradients are sums over x's elements (SHAPE's 60 at most) of
# grad_output·∂f/∂p, each under 10 in size for these inputs (9.6 at most).
PARAMETER_GRADS = summed(60, term_bound=10.0)


def _weight():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def _reference_grads(x, params):
    leaves = [t.detach().requires_grad_() for t in (x, *params)]
    (sqish_ext.sqish(*leaves) * _weight()).sum().backward()
    return [t.grad for t in leaves]


def _check_autograd(mesh, x, params, x_placement, param_placement, want_grad_placements):
    """The backward of sqish_ext.sqish on DTensors (its eager autograd.Function)
    against one process's, and where each parameter's gradient lies."""
    (dx,) = _distribute(mesh, [x], x_placement, requires_grad=True)
    dparams = _distribute(mesh, params, param_placement, requires_grad=True)
    (dweight,) = _distribute(mesh, [_weight()], x_placement)
    (sqish_ext.sqish(dx, *dparams) * dweight).sum().backward()
    want_x, *want_params = _reference_grads(x, params)
    assert dx.grad.placements == (x_placement,), dx.grad.placements
    torch.testing.assert_close(dx.grad.full_tensor(), want_x, **ELEMENTWISE)
    assert [p.grad.placements for p in dparams] == [(want_grad_placements,)] * 3, [p.grad.placements for p in dparams]
    for p, want in zip(dparams, want_params):
        torch.testing.assert_close(p.grad.full_tensor(), want, **PARAMETER_GRADS)


@check
def batch_sharded_backward_gives_partial_parameter_gradients(mesh):
    from torch.distributed.tensor import Partial, Replicate, Shard

    _check_autograd(mesh, *_inputs(), Shard(0), Replicate(), Partial())


@check
def channel_sharded_backward_gives_sharded_parameter_gradients(mesh):
    from torch.distributed.tensor import Shard

    _check_autograd(mesh, *_inputs(), Shard(1), Shard(0), Shard(0))


@check
def channel_sharded_backward_gives_partial_gradients_for_0_dim_parameters(mesh):
    from torch.distributed.tensor import Partial, Replicate, Shard

    _check_autograd(mesh, *_inputs(per_channel=False), Shard(1), Replicate(), Partial())


@check
def backward_op_runs_on_the_local_shard(mesh):
    from torch.distributed.tensor import Partial, Replicate, Shard

    x, params = _inputs()
    cases = [(Shard(0), Replicate(), Partial()), (Shard(1), Shard(0), Shard(0)), (Shard(2), Replicate(), Partial())]
    for x_placement, param_placement, grad_placement in cases:
        dgrad, dx = _distribute(mesh, [_weight(), x], x_placement)
        dparams = _distribute(mesh, params, param_placement)
        grads = _without_communication(torch.ops.sqish.sqish_backward, dgrad, dx, *dparams, True)
        assert [g.placements for g in grads] == [(x_placement,)] + [(grad_placement,)] * 3
        # Without parameter gradients, after the same placements' rule was cached above.
        grad_x, *none = _without_communication(torch.ops.sqish.sqish_backward, dgrad, dx, *dparams, False)
        assert none == [None] * 3 and grad_x.placements == (x_placement,)
        torch.testing.assert_close(grad_x.to_local(), grads[0].to_local(), rtol=0, atol=0)


@check
def float_backward_op_runs_on_the_local_shard(mesh):
    from torch.distributed.tensor import Shard

    x, _ = _inputs()
    for placement in (Shard(0), Shard(1)):
        dgrad, dx = _distribute(mesh, [_weight(), x], placement)
        grad_x = _without_communication(torch.ops.sqish.sqish_backward.float, dgrad, dx, 0.1, 1.5, 0.7)
        assert grad_x.placements == (placement,)
        want = torch.ops.sqish.sqish_backward.float(_weight(), x, 0.1, 1.5, 0.7)
        torch.testing.assert_close(grad_x.full_tensor(), want, **ELEMENTWISE)


@check
def partial_grad_output_gives_partial_gradients_without_communication(mesh):
    # The backward is linear in grad_output: each rank's part maps to its part of
    # every gradient.
    from torch.distributed.tensor import DTensor, Partial, Replicate

    x, params = _inputs()
    grad_output = DTensor.from_local(_weight() * (dist.get_rank() + 1), mesh, [Partial()])
    (dx,), dparams = _distribute(mesh, [x], Replicate()), _distribute(mesh, params, Replicate())
    grads = _without_communication(torch.ops.sqish.sqish_backward, grad_output, dx, *dparams, True)
    assert all(g.placements == (Partial(),) for g in grads), [g.placements for g in grads]
    wants = torch.ops.sqish.sqish_backward(grad_output.full_tensor(), x, *params, True)
    for got, want in zip(grads, wants):
        torch.testing.assert_close(got.full_tensor(), want, **PARAMETER_GRADS)


@check
def inplace_op_overwrites_the_local_shard(mesh):
    from torch.distributed.tensor import Replicate, Shard

    x, params = _inputs()
    for x_placement, param_placement in ((Shard(0), Replicate()), (Shard(1), Shard(0))):
        (dx,), dparams = _distribute(mesh, [x], x_placement), _distribute(mesh, params, param_placement)
        local = dx.to_local()
        result = _without_communication(torch.ops.sqish.sqish_, dx, *dparams)
        assert result is dx and dx.placements == (x_placement,) and dx.to_local().data_ptr() == local.data_ptr()
        torch.testing.assert_close(dx.full_tensor(), torch.ops.sqish.sqish(x, *params), **ELEMENTWISE)
    (dx,) = _distribute(mesh, [x], Shard(1))
    with torch.no_grad():
        sqish_ext.Sqish(0.1, 1.5, 0.7, inplace=True)(dx)
    torch.testing.assert_close(dx.full_tensor(), torch.ops.sqish.sqish.float(x, 0.1, 1.5, 0.7), **ELEMENTWISE)


@check
def distributed_sqish_module_trains_on_a_batch_sharded_input(mesh):
    from torch.distributed.tensor import Partial, Shard, distribute_module

    x, params = _inputs()
    local = sqish_ext.Sqish(learnable=True, num_parameters=SHAPE[1]).double()
    alpha, beta, gamma = params
    with torch.no_grad():
        local.alpha.copy_(alpha)
        local.log_beta.copy_(beta.log())
        local.gamma.copy_(gamma)
    module = distribute_module(local, mesh)  # its parameters replicated
    grad_alpha, grad_beta, grad_gamma = _reference_grads(x, params)[1:]
    # log_beta's gradient is β·∂L/∂β, through β = e^log_beta.
    want = {"alpha": grad_alpha, "log_beta": beta * grad_beta, "gamma": grad_gamma}
    (dx,) = _distribute(mesh, [x], Shard(0), requires_grad=True)
    (dweight,) = _distribute(mesh, [_weight()], Shard(0))
    y = module(dx)
    assert y.placements == (Shard(0),)
    (y * dweight).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad.placements == (Partial(),)
        torch.testing.assert_close(p.grad.full_tensor(), want[name], **PARAMETER_GRADS)


@check
def numbers_beside_dtensor_parameters_are_replicated(mesh):
    # The functional form makes 0-dim tensors of them, which DTensor replicates.
    from torch.distributed.tensor import Replicate, Shard

    x, params = _inputs()
    (dx,), (dbeta,) = _distribute(mesh, [x], Shard(1)), _distribute(mesh, [params[1]], Replicate())
    y = _without_communication(sqish_ext.sqish, dx, 0.1, dbeta, 0.7)
    assert y.placements == (Shard(1),)
    torch.testing.assert_close(y.full_tensor(), sqish_ext.sqish(x, 0.1, params[1], 0.7), **ELEMENTWISE)


@check
def import_of_sqish_ext_leaves_dtensor_unloaded(mesh):
    assert not DTENSOR_LOADED_BY_SQISH_EXT


@check
def rules_register_whichever_of_dtensor_and_sqish_ext_is_imported_first(mesh):
    from torch.distributed.tensor import Shard

    assert DTENSOR_IMPORTED_FIRST == (dist.get_rank() == DTENSOR_FIRST_RANK)
    (dx,) = _distribute(mesh, [_inputs()[0]], Shard(1))
    assert torch.ops.sqish.sqish.float(dx, 0.1, 1.5, 0.7).placements == (Shard(1),)


# ---- the tests: one per check -----------------------------------------------------


@pytest.mark.parametrize("name", list(CHECKS))
def test_on_two_ranks(group_results, name):
    assert_passed(group_results, name)

"""The PU optimizer's per-PU clip and the gradient guard of paper 6.1."""
import torch
from torch import nn

from inet.config import PUOptimConfig
from inet.pu_optim import PUOptimizer


def make(**cfg) -> tuple:
    pus = nn.ModuleDict({"a": nn.Linear(3, 1, bias=False), "b": nn.Linear(3, 1, bias=False)})
    return pus, PUOptimizer(pus, PUOptimConfig(**cfg), {"a": None, "b": 1e-2})


def set_grad(pu: nn.Module, norm: float) -> None:
    pu.weight.grad = torch.full_like(pu.weight, norm / 3 ** 0.5)  # a gradient of exactly this norm


def test_per_pu_lr_falls_back_to_the_default():
    _, opt = make(lr=3e-4)
    assert [g["lr"] for g in opt.adam.param_groups] == [3e-4, 1e-2]


def test_guard_damps_a_spike_to_k_times_the_running_norm_and_only_the_spike():
    pus, opt = make(guard=3.0, guard_beta=0.9)
    for _ in range(20):  # a steady history of norm 1
        set_grad(pus["a"], 1.0)
        grads = [pus["a"].weight.grad]
        opt._limit("a", grads, nn.utils.get_total_norm(grads).item())
    assert opt.guarded == 0 and abs(opt.grad_ema["a"] - 1.0) < 1e-6
    set_grad(pus["a"], 100.0)  # wrongful use: 100x the usual gradient
    grads = [pus["a"].weight.grad]
    opt._limit("a", grads, nn.utils.get_total_norm(grads).item())
    assert opt.guarded == 1
    assert abs(torch.linalg.vector_norm(grads[0]).item() - 3.0) < 1e-5  # damped to guard x running norm
    assert abs(opt.grad_ema["a"] - (0.9 + 0.1 * 3.0)) < 1e-6  # the average learns the damped norm


def test_clip_applies_per_pu_and_without_guard_nothing_is_counted():
    """At Adam's step, a (norm 2) is clipped to norm 0.5 in its own direction and b (norm 0.1) is bitwise unchanged."""
    pus, opt = make(clip_grad_norm=0.5)
    set_grad(pus["a"], 2.0)
    set_grad(pus["b"], 0.1)
    a_set, b_set = pus["a"].weight.grad.clone(), pus["b"].weight.grad.clone()
    seen = {}
    adam_step = opt.adam.step

    def spy(*args, **kwargs):
        seen.update({n: pu.weight.grad.clone() for n, pu in pus.items()})
        return adam_step(*args, **kwargs)

    opt.adam.step = spy
    opt.step()
    assert abs(torch.linalg.vector_norm(seen["a"]).item() - 0.5) < 1e-6
    torch.testing.assert_close(seen["a"], a_set * 0.25, rtol=1e-6, atol=0)
    assert torch.equal(seen["b"], b_set)
    assert opt.guarded == 0 and not opt.grad_ema
    assert pus["a"].weight.grad is None and pus["b"].weight.grad is None


def test_guard_state_round_trips():
    pus, opt = make(guard=3.0)
    set_grad(pus["a"], 1.0)
    set_grad(pus["b"], 2.0)
    opt.step()
    _, fresh = make(guard=3.0)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.grad_ema == opt.grad_ema and fresh.guarded == opt.guarded

"""Supervised pre-training of a PU before the IN starts (paper 5.1.4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import PretrainConfig
from .pus import import_object, run_pu


def pretrain(name: str, pu: nn.Module, cfg: PretrainConfig, generator: torch.Generator,
             device: torch.device) -> float:
    """Train `pu` with Adam on MSE for `cfg.steps` batches from `cfg.data`; return the last loss."""
    data = import_object(cfg.data, f"pus.{name}.pretrain.data")
    params = [p for p in pu.parameters() if p.requires_grad]
    if not params:
        return float("nan")
    opt = torch.optim.Adam(params, lr=cfg.lr)
    loss = torch.tensor(float("nan"))
    for _ in range(cfg.steps):
        inputs, targets = data(cfg.batch_size, generator)
        outs = run_pu(pu, [x.to(device) for x in inputs], cfg.batch_size)
        loss = sum(F.mse_loss(o, t.to(device)) for o, t in zip(outs, targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())

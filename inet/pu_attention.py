"""An attention decoder PU (paper 3.4, Fig. 6): it reads an accumulating node of encodings as a batch.

Used as a `custom` PU (`_target_: inet.pu_attention.AttentionDecoder`). Inputs: the
encodings (an accumulating node: entries [n, S, d] oldest first, and their mask [n, S])
and the decoder state [n, h]; outputs: one output item and the new state. Keys carry
two learned position embeddings, counted from the first and from the last filled
entry, so the query can address "the j-th item" or "the j-th from the end".
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class AttentionDecoder(nn.Module):
    """(encodings, mask, state) -> (output, new state): dot-product attention, then a GRU cell on the context."""

    accepts_batch = True  # may read an accumulating node (entries and mask)

    def __init__(self, in_shapes: List[tuple], out_shapes: List[tuple], hidden: int = 32):
        super().__init__()
        if len(in_shapes) != 3 or len(in_shapes[0]) != 2 or len(in_shapes[2]) != 1:
            raise ValueError("an attention decoder reads an accumulating node of vectors and a state vector")
        (slots, d), (h,) = in_shapes[0], in_shapes[2]
        if len(out_shapes) != 2 or tuple(out_shapes[1]) != (h,) or len(out_shapes[0]) != 1:
            raise ValueError(f"an attention decoder writes an output vector and the state ({h})")
        self.scale = 1.0 / math.sqrt(hidden)
        self.from_start = nn.Parameter(torch.randn(slots, hidden) * 0.1)
        self.from_end = nn.Parameter(torch.randn(slots, hidden) * 0.1)
        self.key = nn.Linear(d, hidden, bias=False)  # a key bias shifts every score equally: no gradient
        self.value = nn.Linear(d, hidden)
        self.query = nn.Linear(h, hidden)
        self.cell = nn.GRUCell(hidden, h)
        self.out = nn.Linear(hidden + h, out_shapes[0][0])

    def forward(self, entries: torch.Tensor, mask: torch.Tensor, state: torch.Tensor) -> tuple:
        slots = entries.shape[1]
        filled = mask.sum(1, keepdim=True).long()
        back = (filled - 1 - torch.arange(slots, device=entries.device)).clamp(min=0)
        keys = self.key(entries) + self.from_start + self.from_end[back]
        scores = torch.einsum("nsk,nk->ns", keys, self.query(state)) * self.scale
        weights = F.softmax(scores.masked_fill(mask <= 0, -1e9), 1)
        context = torch.einsum("ns,nsk->nk", weights, self.value(entries))
        new_state = self.cell(context, state)
        return self.out(torch.cat([context, new_state], 1)), new_state

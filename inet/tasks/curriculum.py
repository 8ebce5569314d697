"""A curriculum on the task length (paper 5.2.2.2): promote after k successes in a row, demote after m failures."""
from __future__ import annotations

from typing import Iterable

from ..config import CurriculumConfig


class Curriculum:
    """The current length, its streaks and the highest length reached so far."""

    def __init__(self, cfg: CurriculumConfig):
        self.cfg = cfg
        self.length = cfg.start_length
        self.max_reached = cfg.start_length
        self.successes = 0  # successes in a row at the current length
        self.failures = 0  # failures in a row at the current length
        self.hold = 0  # task instances still ignored after the last change (hysteresis)
        self.promotions = 0
        self.demotions = 0

    def update(self, outcomes: Iterable[bool]) -> None:
        """Account finished task instances in order (True = success)."""
        c = self.cfg
        for ok in outcomes:
            if self.hold > 0:
                self.hold -= 1
                continue
            if ok:
                self.successes, self.failures = self.successes + 1, 0
            else:
                self.successes, self.failures = 0, self.failures + 1
            if self.successes >= c.promote_after and self.length < c.max_length:
                grown = self.length * 2 if c.mode == "double" else self.length + c.step
                self._set(min(grown, c.max_length))
                self.promotions += 1
            elif self.failures >= c.demote_after and self.length > c.min_length:
                shrunk = self.length // 2 if c.mode == "double" else self.length - c.step
                self._set(max(shrunk, c.min_length))
                self.demotions += 1

    def _set(self, length: int) -> None:
        self.length = length
        self.max_reached = max(self.max_reached, length)
        self.successes = self.failures = 0
        self.hold = self.cfg.hysteresis

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in
                ("length", "max_reached", "successes", "failures", "hold", "promotions", "demotions")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

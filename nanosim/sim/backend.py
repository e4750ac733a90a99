"""SimBackend: a Backend whose steps take the time a cost model predicts (no tokens), times a
drawn step-time jitter factor when one is given (nanosim/sim/jitter.py)."""
from __future__ import annotations

import math
from operator import mul

from nanosim.core.batch import PACKED, BackendCaps, CostModel, ScheduledBatch, StepResult


class SimBackend:
    # no tokens (the scheduler need not list decode sequences each step); runs priced at once
    caps = BackendCaps(needs_tokens=False, decode_runs=True)

    def __init__(self, cost_model: CostModel, jitter=None) -> None:
        self.cost_model = cost_model
        self.jitter = jitter  # StepJitter or None (steps take the predicted medians)

    @classmethod
    def for_cost(cls, cost_model: CostModel, step_jitter: bool = True,
                 seed: int | list[int] = 0) -> "SimBackend":
        """With the step jitter its profile recorded, if any and step_jitter; seed: an int or
        a list of ints (numpy SeedSequence entropy, e.g. [run seed, replica index])."""
        from nanosim.sim.jitter import StepJitter

        return cls(cost_model, StepJitter.of(cost_model, seed) if step_jitter else None)

    def execute(self, batch: ScheduledBatch) -> StepResult:
        t = self.cost_model.step_time_s(batch.shape)
        j = self.jitter
        if j is None:
            return StepResult(t)
        buf = j._buf  # StepJitter.draw()'s single draw, inlined while its buffer lasts
        return StepResult(t * (buf.pop() if buf else j.draw()))

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0, first_path: str = PACKED, start_s: float = 0.0,
                     until_s: float = math.inf) -> list[float]:
        """The cost model's decode_run_s times one drawn factor per step, as a list of floats
        (the engine sums them one by one; a short run costs less in Python floats than in
        numpy calls, and a cost model with decode_run_list prices it so too). num_steps
        factors are drawn whatever is priced. until_s: the list may stop after the first
        step that starts at or after it (starts summed from start_s, left to right): the
        steps after an arrival need no price (a cost model with decode_run_list skips them)."""
        cm = self.cost_model
        f = None if self.jitter is None or num_steps == 0 else self.jitter.draw_list(num_steps)
        as_list = getattr(cm, "decode_run_list", None)
        if as_list is not None:
            return as_list(num_seqs, context_tokens, num_steps, max_context_tokens, first_path,
                           f, start_s, until_s)
        t = cm.decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens, first_path).tolist()
        return t if f is None else list(map(mul, t, f))  # x * f, step by step

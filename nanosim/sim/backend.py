"""SimBackend: a Backend whose steps take the time a cost model predicts (no tokens)."""
from __future__ import annotations

from nanosim.core.batch import CostModel, ScheduledBatch, StepResult


class SimBackend:
    needs_tokens = False  # the scheduler need not list decode sequences each step

    def __init__(self, cost_model: CostModel) -> None:
        self.cost_model = cost_model

    def execute(self, batch: ScheduledBatch) -> StepResult:
        return StepResult(self.cost_model.step_time_s(batch.shape))

    def decode_run_s(self, num_seqs: int, context_tokens: int, num_steps: int,
                     max_context_tokens: int = 0):
        return self.cost_model.decode_run_s(num_seqs, context_tokens, num_steps, max_context_tokens)

"""Pure-Python core: requests, block manager, scheduler, engine, metrics (no torch, no simpy)."""
from nanosim.core.batch import Backend, CostModel, PrefillChunk, ScheduledBatch, StepResult, StepShape
from nanosim.core.block_manager import BlockManager
from nanosim.core.engine import Engine, NoProgressError
from nanosim.core.request import Request
from nanosim.core.scheduler import Scheduler
from nanosim.core.sequence import Sequence, Status

__all__ = ["Backend", "BlockManager", "CostModel", "Engine", "NoProgressError", "PrefillChunk",
           "Request", "ScheduledBatch", "Scheduler", "Sequence", "Status", "StepResult", "StepShape"]

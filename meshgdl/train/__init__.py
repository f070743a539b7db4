"""Training: the loop (:mod:`.loop`), checkpoints (:mod:`.checkpoint`), metrics
(:mod:`.metrics`) and multi-process data parallelism (:mod:`.distributed`).

Heavy modules (torch) are imported by the submodules, not here.
"""

from meshgdl.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: F401
from meshgdl.train.loop import TrainConfig, evaluate, train  # noqa: F401

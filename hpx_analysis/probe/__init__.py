"""The global-context probe: a synthetic task (:mod:`.task`), training (:mod:`.train`),
evaluation against distance (:mod:`.evaluate`) with Wilson intervals and measured reach
(:mod:`.intervals`), the probe as an image source for the
analyses (:mod:`.analysis`) and the bundled trained checkpoints (:mod:`.bundled`)."""

from .bundled import bundled_models, bundled_path, bundled_record, snapshot_paths
from .evaluate import (
    accuracy_by_distance,
    bin_accuracy,
    distance_bins,
    far_quarter_accuracy,
    fixed_test_split,
    iter_test_split,
    probe_record,
)
from .intervals import measured_reach, reach_level, wilson_interval
from .task import ProbeBatch, ProbeTask, probe_task_for
from .train import TrainConfig, TrainResult, train_probe

__all__ = [
    "ProbeTask",
    "ProbeBatch",
    "probe_task_for",
    "TrainConfig",
    "TrainResult",
    "train_probe",
    "accuracy_by_distance",
    "bin_accuracy",
    "distance_bins",
    "fixed_test_split",
    "iter_test_split",
    "far_quarter_accuracy",
    "wilson_interval",
    "measured_reach",
    "reach_level",
    "probe_record",
    "bundled_models",
    "bundled_path",
    "bundled_record",
    "snapshot_paths",
]

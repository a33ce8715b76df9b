"""The global-context probe: a synthetic task (:mod:`.task`), training (:mod:`.train`),
evaluation against distance (:mod:`.evaluate`), the probe as an image source for the
analyses (:mod:`.analysis`) and the bundled trained checkpoints (:mod:`.bundled`)."""

from .bundled import bundled_models, bundled_path, bundled_record, snapshot_paths
from .evaluate import accuracy_by_distance, bin_accuracy, distance_bins, fixed_test_split, probe_record
from .task import ProbeBatch, ProbeTask
from .train import TrainConfig, TrainResult, train_probe

__all__ = [
    "ProbeTask",
    "ProbeBatch",
    "TrainConfig",
    "TrainResult",
    "train_probe",
    "accuracy_by_distance",
    "bin_accuracy",
    "distance_bins",
    "fixed_test_split",
    "probe_record",
    "bundled_models",
    "bundled_path",
    "bundled_record",
    "snapshot_paths",
]

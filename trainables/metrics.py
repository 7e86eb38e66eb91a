"""The names of what a training run reports each epoch, and of the files it writes, defined once
for the core and for everything above it (``study.vocabulary`` builds on them). No torch import:
a process that only names metrics stays light."""

EPOCH = "epoch"
LOSS = "loss"
KNN_TOP1 = "knn_top1"
KNN_TOP5 = "knn_top5"
Z_STD = "z_std"
"""Per-dimension std of the L2-normalised projector outputs (:mod:`trainables.health`)."""
FLOOR_ACTIVE = "floor_active"
"""The fraction of pairs whose loss the margin floor held up."""
MARGIN_MEAN = "margin_mean"
IMAGES_PER_S = "images_per_s"
LR = "lr"
SKIPPED_IMAGES = "skipped_images"
"""Images a folder dataset could not decode, so far."""

PAIR_STATS = ("overlap", "distance", "phi")
VIEW_STATS_PER_VIEW = ("crop_area", "crop_aspect")
LOGGED_STATS = (*PAIR_STATS, *VIEW_STATS_PER_VIEW)
"""Every realised statistic with a ``<name>_mean`` and ``<name>_std`` metric per epoch."""
REALISED_METRICS = tuple(f"{name}_{moment}" for name in LOGGED_STATS for moment in ("mean", "std"))
OVERLAP_MEAN, DISTANCE_MEAN, PHI_MEAN = "overlap_mean", "distance_mean", "phi_mean"

CHECKPOINT_FILE = "checkpoint.pt"
VIEW_STATS_FILE = "view_stats.json"

"""Exception types shared by every layer (no heavy imports here)."""


class MeshError(ValueError):
    """A mesh that cannot be used: missing/unreadable file, no faces, NaNs, bad indices."""


class CheckpointError(ValueError):
    """A model file that is not a meshgdl checkpoint, or is corrupt/incomplete."""


class DatasetError(ValueError):
    """A dataset folder that is missing, empty or has inconsistent labels."""


class UsageError(ValueError):
    """A bad command-line value (``-k 0``, wrong output extension, bad source index)."""

"""Model files shipped with meshgdl (package data, loaded by :mod:`meshgdl.segmentation`).

``figure_parts.safetensors`` + ``figure_parts.json``: a 10-part humanoid segmentation
GEM-CNN trained by ``tools/train_pretrained.py`` on the project's procedural capsule
figures (not real human scans; see ``trained_on`` in the JSON). Load it with
:func:`meshgdl.segmentation.load_segmenter` (it goes through
:func:`meshgdl.train.checkpoint.load_checkpoint`: safetensors, no pickle).
"""

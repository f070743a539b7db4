"""Datasets, transforms and procedural shapes (``meshgdl.data.synthetic``)."""

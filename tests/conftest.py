import os
import sys

# Tests import the shared mesh helpers (tests/meshes.py) by module name; the gauge-equivariance
# checks are public API in meshgdl.testing.
sys.path.insert(0, os.path.dirname(__file__))
# Two cores in CI: keep torch from oversubscribing when pytest runs several heavy tests.
os.environ.setdefault("OMP_NUM_THREADS", "2")

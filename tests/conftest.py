import os
import sys

# Tests import the shared helpers (tests/meshes.py, tests/equivariance.py) by module name.
sys.path.insert(0, os.path.dirname(__file__))
# Two cores in CI: keep torch from oversubscribing when pytest runs several heavy tests.
os.environ.setdefault("OMP_NUM_THREADS", "2")

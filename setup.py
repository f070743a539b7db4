"""Package list for setuptools; all other metadata is in pyproject.toml.

The viewer's source stays in the top-level ``viewer/`` folder but installs as
``meshgdl_viewer``: a top-level package named ``viewer`` would clash with other
distributions. pyproject.toml cannot combine ``packages.find`` with a renamed package,
so the list is built here: every ``meshgdl`` (sub)package found on disk, so new
subpackages install without an edit, plus ``viewer`` and its subpackages renamed.
"""

from setuptools import find_packages, setup

VIEWER_SRC, VIEWER_PKG = "viewer", "meshgdl_viewer"

setup(
    packages=find_packages(include=["meshgdl", "meshgdl.*"])
    + [VIEWER_PKG + p[len(VIEWER_SRC):] for p in find_packages(include=[VIEWER_SRC, VIEWER_SRC + ".*"])],
    package_dir={VIEWER_PKG: VIEWER_SRC},
)

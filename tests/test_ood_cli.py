"""Calibrated probabilities and the out-of-distribution warning in ``segment`` and
``classify`` (issue 21): the temperature and thresholds a model description carries,
the JSON fields, the stderr warning, ``--reject-ood`` (exit 3, nothing written), and the
shipped models' own thresholds on a clearly foreign mesh and on a training-like one.

The mechanics use copies of the shipped models whose descriptions are edited (a
threshold every mesh exceeds, or none does); the verdicts of the shipped thresholds use
the shipped descriptions as they are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from meshgdl.cli import main
from meshgdl.pretrained import PRETRAINED_DIR, names
from meshgdl.train.metrics import temper

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_meshes"


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def model_copy(tmp_path: Path, name: str, **updates) -> Path:
    """A copy of shipped model ``name`` whose description has ``updates`` (None: key removed)."""
    dst = tmp_path / f"{name}_copy.safetensors"
    shutil.copyfile(PRETRAINED_DIR / f"{name}.safetensors", dst)
    info = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())
    for k, v in updates.items():
        if v is None:
            info.pop(k, None)
        else:
            info[k] = v
    dst.with_suffix(".json").write_text(json.dumps(info))
    return dst


def always(flag: bool) -> dict:
    """An OOD entry that flags every mesh (``flag``) or none."""
    return {"score": "max_prob", "threshold": -1.0 if flag else 2.0, "part_threshold": -1.0 if flag else 2.0}


def test_classifier_probabilities_are_tempered_by_the_description(tmp_path):
    from meshgdl.api import classify

    raw = classify(SAMPLES / "figure.ply", model_copy(tmp_path, "shrec11", calibration=None, ood=None))
    hot = classify(SAMPLES / "figure.ply", model_copy(tmp_path, "shrec11", calibration={"temperature": 2.5}))
    np.testing.assert_allclose(hot.probabilities, temper(raw.probabilities, 2.5), atol=1e-6)
    assert hot.label == raw.label and hot.probabilities.max() < raw.probabilities.max()
    # no threshold: a score, no verdict
    assert raw.in_distribution is None and raw.ood_threshold is None
    assert raw.ood_score == pytest.approx(1 - raw.probabilities.max())


def test_classify_warning_json_fields_and_reject_ood(tmp_path, capsys):
    flagged = model_copy(tmp_path, "shrec11", ood=always(True))
    rc, out, err = run(["classify", SAMPLES / "figure.ply", SAMPLES / "torus.off", "--model", flagged,
                        "--format", "json", "-q"], capsys)
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if ln.startswith("meshgdl: warning: ")]
    assert len(warnings) == 2 and "figure.ply" in warnings[0] and "threshold -1.000" in warnings[0]
    docs = json.loads(out)["results"]
    assert [d["in_distribution"] for d in docs] == [False, False]
    assert all(d["ood_threshold"] == -1.0 and 0 <= d["ood_score"] <= 1 for d in docs)
    rc, out, err = run(["classify", SAMPLES / "figure.ply", "--model", flagged, "--reject-ood", "-q"], capsys)
    assert rc == 3 and out.startswith(f"{SAMPLES / 'figure.ply'}: ")  # the answer is still printed
    # a mesh that is not flagged: no warning, exit 0 even with --reject-ood
    rc, out, err = run(["classify", SAMPLES / "figure.ply", "--model", model_copy(tmp_path, "shrec11", ood=always(False)),
                        "--reject-ood", "--format", "json"], capsys)
    assert rc == 0 and "warning" not in err and json.loads(out)["results"][0]["in_distribution"] is True
    # an error wins over a flag: exit 2
    rc, _, err = run(["classify", SAMPLES / "figure.ply", tmp_path / "missing.obj", "--model", flagged,
                      "--reject-ood", "-q"], capsys)
    assert rc == 2


def test_segment_warning_json_fields_and_reject_ood(tmp_path, capsys):
    flagged = model_copy(tmp_path, "figure_parts", ood=always(True))
    out_ply = tmp_path / "seg.ply"
    rc, out, err = run(["segment", SAMPLES / "figure.ply", "--model", flagged, "-o", out_ply, "--format", "json",
                        "-q"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["in_distribution"] is False and doc["ood_threshold"] == -1.0 and doc["ood_score_kind"] == "max_prob"
    assert doc["ood_parts"] and all(p["in_distribution"] in (False, None) for p in doc["ood_parts"])
    assert sum(p["area_share"] for p in doc["ood_parts"]) == pytest.approx(1.0)
    assert {p["name"] for p in doc["ood_parts"]} <= set(doc["model"]["class_names"])
    assert err.strip().startswith("meshgdl: warning: ") and len(err.strip().splitlines()) == 1
    assert out_ply.is_file()
    # --reject-ood: exit 3, the warning says nothing was written, nothing is
    out2 = tmp_path / "rejected.ply"
    rc, out, err = run(["segment", SAMPLES / "figure.ply", "--model", flagged, "-o", out2, "--reject-ood", "-q"],
                       capsys)
    assert rc == 3 and "no output written" in err and "OUT OF DISTRIBUTION" in out
    assert not list(tmp_path.glob("rejected*"))
    # not flagged: exit 0 with --reject-ood, outputs written
    rc, out, err = run(["segment", SAMPLES / "figure.ply", "--model", model_copy(tmp_path, "figure_parts",
                                                                                   ood=always(False)),
                        "-o", out2, "--reject-ood", "-q"], capsys)
    assert rc == 0 and "in distribution" in out and out2.is_file() and "warning" not in err


def test_segment_calibration_changes_probabilities_not_labels(tmp_path):
    from meshgdl.api import segment

    a = segment(SAMPLES / "figure.ply", model_copy(tmp_path, "figure_parts", calibration=None))
    b = segment(SAMPLES / "figure.ply", model_copy(tmp_path, "figure_parts", calibration={"temperature": 3.0}))
    np.testing.assert_array_equal(a.detail.working_labels, b.detail.working_labels)
    assert b.ood_score > a.ood_score  # hotter: less confident


@pytest.mark.parametrize("cal, fragment", [({"temperature": -1}, "must be > 0"), ({"t": 1}, "numeric 'temperature'")])
def test_bad_calibration_is_a_one_line_error(tmp_path, capsys, cal, fragment):
    rc, _, err = run(["classify", SAMPLES / "figure.ply", "--model", model_copy(tmp_path, "shrec11", calibration=cal)],
                     capsys)
    assert rc == 2 and err.startswith("meshgdl: error: ") and fragment in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the shipped thresholds


@pytest.mark.parametrize("model", [m for m in ("human_parts", "figure_parts", "rna_surface") if m in names()])
def test_shipped_segmenters_flag_a_torus_and_not_a_figure(model):
    from meshgdl.api import segment
    from meshgdl.pretrained import describe

    info = describe(model)
    assert info["calibration"]["temperature"] > 0 and info["ood"]["score"] == "max_prob"
    torus = segment(SAMPLES / "torus.off", model)
    assert torus.in_distribution is False and torus.ood_score > info["ood"]["threshold"]
    if model != "rna_surface":  # a human figure is what the body-part models know
        figure = segment(SAMPLES / "figure.ply", model)
        assert figure.in_distribution is True


def test_a_feature_score_is_refused_for_a_segmenter(tmp_path, capsys):
    ref = json.loads((PRETRAINED_DIR / "shrec11.json").read_text())["ood"]
    model = model_copy(tmp_path, "figure_parts", ood={k: ref[k] for k in ("score", "threshold", "reference")})
    rc, _, err = run(["segment", SAMPLES / "figure.ply", "--model", model, "-o", tmp_path / "x.ply"], capsys)
    assert rc == 2 and "is for classifiers" in err and not list(tmp_path.glob("x*"))


def test_shipped_classifier_warns_on_a_torus_with_its_feature_distance(tmp_path):
    from meshgdl.api import classify
    from meshgdl.pretrained import describe

    ood = describe("shrec11")["ood"]
    assert ood["score"] == "knn" and len(ood["reference"]["X"]) >= 30 * 10
    res = classify(SAMPLES / "torus.off", "shrec11")
    assert res.in_distribution is False and res.ood_score > ood["threshold"]
    # the feature pass gives the same calibrated probabilities as the plain predict path
    plain = classify(SAMPLES / "torus.off", model_copy(tmp_path, "shrec11", ood={"score": "max_prob", "threshold": 2.0}))
    np.testing.assert_allclose(res.probabilities, plain.probabilities, atol=1e-9)

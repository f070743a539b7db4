"""``meshgdl models [--format text|json]``: the shipped models, what they do and what they were trained on."""

from __future__ import annotations

import json
import textwrap


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the shipped models (task, classes, training data, metrics, licence)",
        description="List the models shipped with meshgdl: their name (for --model), task, class "
        "names, what they were trained on, their measured metrics and the licence of their "
        "training data.",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=run)


def _metric_line(metrics: dict) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            parts.append(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}")
    return ", ".join(parts)


def run(args) -> int:
    from meshgdl.errors import CheckpointError
    from meshgdl.pretrained import DEFAULTS, default_model, list_models

    models = list_models()
    defaults = set()
    for task in DEFAULTS:
        try:
            defaults.add(default_model(task))
        except CheckpointError:
            pass
    if args.format == "json":
        keep = ("name", "task", "description", "class_names", "trained_on", "licence", "metrics", "evaluation",
                "working_vertices", "calibration", "ood", "label_prior", "boundary_refinement", "path")
        docs = [{k: m[k] for k in keep if k in m} for m in models]
        for d in docs:  # the feature reference (hundreds of KB of numbers) stays in the model's own JSON
            if isinstance(d.get("ood"), dict) and "reference" in d["ood"]:
                d["ood"] = {k: v for k, v in d["ood"].items() if k != "reference"}
        print(json.dumps(docs, indent=1))
        return 0
    if not models:
        print("no shipped models in this installation")
        return 0
    wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="    ")
    for m in models:
        tag = " (default)" if m["name"] in defaults else ""
        print(f"{m['name']}{tag}: {m.get('task', '?')}, {len(m.get('class_names') or [])} classes")
        if m.get("description"):
            print(wrap.fill(m["description"]))
        print(wrap.fill("classes: " + ", ".join(m.get("class_names") or [])))
        if m.get("trained_on"):
            print(wrap.fill("trained on: " + m["trained_on"]))
        metrics = m.get("metrics") or m.get("evaluation")
        if isinstance(metrics, dict) and _metric_line(metrics):
            print(wrap.fill("metrics: " + _metric_line(metrics)))
        cal, ood = m.get("calibration") or {}, m.get("ood") or {}
        if cal or ood:
            bits = []
            if cal:
                bits.append(f"probabilities calibrated with temperature {cal.get('temperature', 1.0):.3f}")
            if ood:
                bits.append(f"out-of-distribution warning when {ood.get('score')} > {ood.get('threshold', float('nan')):.3f}"
                            + (f" (AUROC {ood['auroc']:.3f})" if isinstance(ood.get("auroc"), float) else ""))
            print(wrap.fill("confidence: " + "; ".join(bits)))
        lp = m.get("label_prior")
        if isinstance(lp, dict) and "tau" in lp:
            print(wrap.fill(f"labels: argmax of the probabilities / part prior ** {lp['tau']:g} (logit adjustment, "
                            "tau chosen on validation meshes)"))
        br = m.get("boundary_refinement")
        if isinstance(br, dict) and "smoothness" in br:
            print(wrap.fill(f"boundaries: refined on the input mesh by a graph cut, smoothness {br['smoothness']:g} "
                            "(chosen on validation meshes; meshgdl segment --refine overrides it)"))
        print(wrap.fill("data licence: " + m.get("licence", "not stated")))
    return 0

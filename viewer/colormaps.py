"""Colour maps and the colour-bar / label legends.

Everything here is numpy + Pillow (no Open3D), so it is cheap to import and test.
Label colours come from :mod:`meshgdl.colors` (one palette for segment output and viewer).
Colours are sRGB floats in [0, 1]; images are ``(H, W, 3) uint8``.
"""

from __future__ import annotations

import numpy as np

from meshgdl.colors import label_colors

# Sequential and diverging maps as sRGB anchor colours, interpolated linearly.
# Viridis anchors are its 10 evenly spaced published samples; "coolwarm" follows
# Moreland's blue-grey-red diverging map (grey centre = zero of a signed feature).
_ANCHORS = {
    "viridis": [
        "#440154", "#482878", "#3e4989", "#31688e", "#26828e",
        "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725",
    ],
    "coolwarm": [
        "#3b4cc0", "#6282ea", "#8db0fe", "#b8d0f9", "#dddddd",
        "#f5c4ad", "#f49a7b", "#de604d", "#b40426",
    ],
    "gray": ["#000000", "#ffffff"],
}

NAN_COLOR = np.array([0.55, 0.55, 0.55])


def _hex(c: str) -> np.ndarray:
    c = c.lstrip("#")
    return np.array([int(c[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255.0


def colormap_names() -> list[str]:
    return sorted(_ANCHORS)


def colormap_lut(name: str = "viridis", n: int = 256) -> np.ndarray:
    """``(n, 3)`` float64 sRGB table of colour map ``name`` sampled at ``linspace(0, 1, n)``."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {', '.join(colormap_names())}")
    anchors = np.stack([_hex(c) for c in _ANCHORS[name]])
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, x, anchors[:, k]) for k in range(3)], axis=1)


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, name: str = "viridis") -> np.ndarray:
    """Map ``values (n,)`` to ``(n, 3)`` sRGB colours; ``vmin``/``vmax`` map to the two ends.

    Values outside the range are clamped; NaN/inf values get a neutral grey (never an
    exception: a feature with a hole is still worth seeing). ``vmin == vmax`` maps
    everything to the middle of the map.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lut = colormap_lut(name, 256)
    span = float(vmax) - float(vmin)
    finite = np.isfinite(v)
    if span > 0 and np.isfinite(span):
        t = np.clip((np.where(finite, v, vmin) - vmin) / span, 0.0, 1.0)
    else:
        t = np.full(v.shape, 0.5)
    out = lut[np.rint(t * 255).astype(np.int64)]
    out[~finite] = NAN_COLOR
    return out


def label_rgb(labels: np.ndarray) -> np.ndarray:
    """``(n, 3)`` sRGB floats in [0, 1] for integer labels ``(n,)`` (any shape is flattened).

    The colour of a label *value*, from :func:`meshgdl.colors.label_colors` -- the palette
    ``meshgdl segment`` writes into its coloured PLY -- so a label looks the same in the
    viewer, its legend and segment output, whichever other labels are present.
    """
    return label_colors(np.asarray(labels).ravel()).astype(np.float64) / 255.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear light (the renderer's lit pipeline re-encodes)."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def format_tick(x: float) -> str:
    """Short, exact-enough tick text: 3 significant digits, scientific for tiny/huge."""
    if not np.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e4 or ax < 1e-2:
        return f"{x:.2e}"
    return f"{x:.3g}"


# --------------------------------------------------------------------------- legends
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _ink(background: np.ndarray) -> tuple[int, int, int]:
    """Text colour readable on ``background`` (sRGB float triple)."""
    return (20, 20, 20) if float(np.mean(background)) > 0.5 else (235, 235, 235)


def legend_width(width: int) -> int:
    """Pixels reserved on the right of a ``width``-wide image for the legend panel."""
    return int(min(max(72, round(0.16 * width)), max(72, width // 2)))


def labels_legend_width(width: int, height: int, names: list[str]) -> int:
    """A legend width (pixels) wide enough for ``"7 lower_leg"`` rows of the label
    panel of a ``width x height`` image (at most half the image)."""
    from PIL import Image, ImageDraw

    fs = max(9, min(16, height // 28))
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text = max((draw.textlength(f"{len(names)} {n}", font=_font(fs)) for n in names), default=0.0)
    need = int(np.ceil(text)) + fs + 8
    # labels_panel indents by width // 8: solve w - w // 8 >= need
    return int(min(max(legend_width(width), int(np.ceil(need * 8 / 7)) + 2), max(72, width // 2)))


def colorbar_panel(
    height: int,
    width: int,
    vmin: float,
    vmax: float,
    cmap: str = "viridis",
    title: str = "",
    background=(1.0, 1.0, 1.0),
    levels: np.ndarray | None = None,
) -> np.ndarray:
    """A ``(height, width, 3) uint8`` legend panel: a vertical colour bar (max at the
    top) with min/max (and zero, for ranges that straddle it) tick labels, and a title.

    ``levels`` draws a dark tick across the bar at each isoline value, so the
    isolines on the mesh can be read off the bar.

    Geometry of the bar (returned pixel box) is exposed by :func:`colorbar_box` so
    tests and callers can sample it.
    """
    from PIL import Image, ImageDraw

    bg = np.asarray(background, dtype=np.float64)
    img = Image.new("RGB", (width, height), tuple(int(round(255 * c)) for c in bg))
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = colorbar_box(height, width)
    lut = colormap_lut(cmap, 256)
    rows = np.linspace(1.0, 0.0, y1 - y0)  # top row = max
    bar = (lut[np.rint(rows * 255).astype(int)] * 255).round().astype(np.uint8)
    arr = np.asarray(img).copy()
    arr[y0:y1, x0:x1] = bar[:, None, :]
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    ink = _ink(bg)
    draw.rectangle([x0 - 1, y0 - 1, x1, y1], outline=ink)
    fs = max(9, min(16, height // 28))
    font = _font(fs)
    span = vmax - vmin
    ticks = [(vmax, y0), (vmin, y1 - 1)]
    if span > 0 and vmin < 0 < vmax:
        ticks.append((0.0, y0 + int(round((vmax - 0.0) / span * (y1 - y0 - 1)))))
    if levels is not None and span > 0:
        for lv in np.asarray(levels, dtype=np.float64):
            y = y0 + int(round((vmax - lv) / span * (y1 - y0 - 1)))
            draw.line([x0, y, x1 - 1, y], fill=(25, 25, 25))
    for val, y in ticks:
        draw.line([x1, y, x1 + 4, y], fill=ink)
        draw.text((x1 + 6, y), format_tick(val), fill=ink, font=font, anchor="lm")
    _draw_title(draw, title, font, fs, width, y0, ink)
    return np.asarray(img)


def _draw_title(draw, title: str, font, fs: int, width: int, top: int, ink) -> None:
    """Title above a legend: one line, or two (split at a space) when it is too wide."""
    if not title:
        return
    lines = [title]
    if draw.textlength(title, font=font) > width - 4 and " " in title:
        cut = title.rfind(" ", 0, max(1, len(title) // 2 + 4))
        cut = cut if cut > 0 else title.find(" ")
        lines = [title[:cut], title[cut + 1:]]
    y = max(2, top - len(lines) * (fs + 3) - 4)
    for i, line in enumerate(lines):
        draw.text((width // 2, y + i * (fs + 3)), _fit_text(draw, line, font, width - 4), fill=ink,
                  font=font, anchor="mt")


def colorbar_box(height: int, width: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` pixel box (exclusive end) of the bar inside a legend panel."""
    bar_w = max(8, min(22, width // 5))
    x0 = max(4, width // 8)
    y0 = max(30, int(0.18 * height))
    y1 = max(y0 + 8, int(0.84 * height))
    return x0, y0, x0 + bar_w, y1


def labels_panel(
    height: int,
    width: int,
    classes: np.ndarray,
    title: str = "labels",
    background=(1.0, 1.0, 1.0),
    max_rows: int | None = None,
    names: list | None = None,
) -> np.ndarray:
    """A ``(height, width, 3) uint8`` legend of colour swatches, one per label value in
    ``classes (k,)`` (``"value name"`` when ``names``, one per entry of ``classes``, are
    given). Each swatch is :func:`label_rgb` of its value, the colour the mesh shows."""
    from PIL import Image, ImageDraw

    bg = np.asarray(background, dtype=np.float64)
    img = Image.new("RGB", (width, height), tuple(int(round(255 * c)) for c in bg))
    draw = ImageDraw.Draw(img)
    ink = _ink(bg)
    fs = max(9, min(16, height // 28))
    font = _font(fs)
    row = fs + 6
    top = max(30, int(0.14 * height))
    cap = max_rows or max(1, (height - top - row) // row)
    x0 = max(4, width // 8)
    room = width - x0 - fs - 8
    shown = len(classes) if len(classes) <= cap else cap - 1
    swatches = np.round(255 * label_rgb(classes)).astype(int)
    _draw_title(draw, title, font, fs, width, top, ink)
    for i in range(shown):
        y = top + i * row
        draw.rectangle([x0, y, x0 + fs, y + fs], fill=tuple(swatches[i].tolist()), outline=ink)
        text = f"{classes[i]} {names[i]}".strip() if names else str(classes[i])
        draw.text((x0 + fs + 6, y + fs // 2), _fit_text(draw, text, font, room), fill=ink, font=font, anchor="lm")
    if shown < len(classes):
        draw.text((x0, top + shown * row + fs // 2), f"+{len(classes) - shown} more", fill=ink,
                  font=font, anchor="lm")
    return np.asarray(img)


def text_strip(width: int, height: int, text: str, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A one-line caption image ``(height, width, 3) uint8``."""
    from PIL import Image, ImageDraw

    bg = np.asarray(background, dtype=np.float64)
    img = Image.new("RGB", (width, height), tuple(int(round(255 * c)) for c in bg))
    draw = ImageDraw.Draw(img)
    font = _font(max(9, min(16, height - 6)))
    draw.text((6, height // 2), _fit_text(draw, text, font, width - 12), fill=_ink(bg), font=font,
              anchor="lm")
    return np.asarray(img)


def _fit_text(draw, text: str, font, max_width: int) -> str:
    """Truncate ``text`` with an ellipsis so it fits in ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "…", font=font) > max_width:
        text = text[:-1]
    return text + "…"

"""Screenshots of the workbench, checked for what they should show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


def shoot(page: Any, path: Path, *named: str, min_colors: int = 8) -> Path:
    """A full-page screenshot at `path`, after checking that each element `named` (a CSS
    selector) is on the page and visible; the PNG must exist, be non-trivial, and show
    something (not one flat colour) where each named element is."""
    page.evaluate("window.scrollTo(0, 0)")
    boxes = {}
    for selector in named:
        element = page.locator(selector).first
        element.wait_for(state="visible", timeout=10_000)
        box = element.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, selector
        boxes[selector] = box
    page.screenshot(path=str(path), full_page=True)
    assert path.exists() and path.stat().st_size > 10_000, f"{path}: too small to show a page"
    image = Image.open(path).convert("RGB")
    assert image.width >= 1000 and image.height >= 400, image.size
    for selector, box in boxes.items():
        left, top = max(0, int(box["x"])), max(0, int(box["y"]))
        right = min(image.width, int(box["x"] + box["width"]) + 1)
        bottom = min(image.height, int(box["y"] + box["height"]) + 1)
        region = image.crop((left, top, right, bottom))
        colors = region.getcolors(maxcolors=1 << 20) or []
        assert len(colors) >= min_colors, f"{selector}: blank in the screenshot ({len(colors)} colours)"
    return path


def chart_points(page: Any, canvas: str) -> list[int]:
    """How many points each dataset of the Chart.js chart on `canvas` (an element id) holds."""
    found: list[int] = page.evaluate(
        "id => { const c = Chart.getChart(id); return c ? c.data.datasets.map(d => d.data.length)"
        " : []; }", canvas)
    return found

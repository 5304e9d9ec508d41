"""A progress bar for long solves: elapsed time against the limit, with objective, bound, gap."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm

from optimizer.backends import Progress


class ProgressBar:
    def __init__(self, time_limit: float | None, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.total = time_limit
        self.updates = 0

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self.bar = tqdm(total=self.total, unit="s", desc="solving", dynamic_ncols=True,
                            bar_format="{percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s  {desc}"
                            if self.total else "{n:.0f} s  {desc}")
        return self

    def update(self, p: Progress) -> bool:
        """The solver's progress callback; never asks it to stop."""
        self.updates += 1
        if self.bar is not None:
            self.bar.n = min(p.elapsed, self.total) if self.total else p.elapsed
            gap = "n/a" if p.gap is None else f"{100 * p.gap:.4f}%"
            self.bar.set_description_str(
                f"objective {_fmt(p.objective)}  bound {_fmt(p.bound)}  gap {gap}", refresh=True)
        return False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"

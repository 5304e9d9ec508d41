"""The audience chooser against brute force on tiny instances with audiences (spec section 8)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.formulation.audience_choice import AudienceChooser
from optimizer.formulation.candidates import Candidates, expand
from optimizer.formulation.segment_choice import SegmentChooser
from optimizer.io import instance_from_document
from optimizer.model.instance import Instance
from tests.strategies import tiny_instances

TOL = 1e-9
VALUES = st.floats(-50, 100, allow_nan=False) | st.sampled_from([-1.0, 0.0, 1.0, 5.0])


def plans_of(cands: Candidates, s: int) -> list[tuple[int, ...]]:
    """Every choice of segment s meeting rows 1-3, as tuples of candidate positions."""
    slots: dict[int, list[int]] = defaultdict(list)
    for c in np.flatnonzero(cands.segment == s):
        slots[int(cands.slot_key[c])].append(int(c))
    out = []
    for combo in itertools.product(*[[None, *cs] for cs in slots.values()]):
        chosen = tuple(c for c in combo if c is not None)
        if cands.lo[s] <= len(chosen) <= cands.hi[s]:
            out.append(chosen)
    return out


def with_audiences(data: st.DataObject, inst: Instance, base: Candidates, value: np.ndarray,
                   max_size: int, labels_from: tuple[int, ...]) -> Instance:
    """Segments tied into up to three audiences of at most `max_size` (-1: none), with caps."""
    n_seg = len(inst.segments)
    free = np.bincount(base.segment[SegmentChooser(base).choose(value)], minlength=n_seg)
    labels = data.draw(st.lists(st.sampled_from(labels_from), min_size=n_seg, max_size=n_seg))
    for a in range(3):  # at most max_size segments per audience, the rest on their own
        for s in [s for s, x in enumerate(labels) if x == a][max_size:]:
            labels[s] = -1
    views = inst.segments["views"].to_numpy(float)
    customers, freq, repeats = [], [], []
    for a in range(3):
        members = [s for s, x in enumerate(labels) if x == a]
        n = data.draw(st.sampled_from([100.0, 700.0, 1000.0, 3000.0]))
        w = views[members] / n
        kind = data.draw(st.sampled_from(["none", "share", "between", "between", "exact"]))
        if kind == "share":  # anywhere from nothing to every segment at hi
            f = round(data.draw(st.floats(0, 1.2)) * float((w * base.hi[members]).sum()), 4)
        elif kind == "between":  # between the least use and the unconstrained choice's
            least, most = float((w * base.lo[members]).sum()), float((w * free[members]).sum())
            f = round(least + data.draw(st.floats(0, 1)) * max(most - least, 0.0), 4)
        elif kind == "exact":  # exactly the weight of some offer counts: the cap's edge
            counts = [data.draw(st.integers(0, int(base.hi[s]))) for s in members]
            f = float(sum(wi * c for wi, c in zip(w, counts, strict=True)))
        customers.append(n)
        freq.append(math.nan if kind == "none" else f)
        repeats.append(data.draw(st.sampled_from([math.nan, 1.0, 1.0, 2.0, 3.0])))
    segments = inst.segments.assign(audience=[None if x < 0 else f"a{x}" for x in labels])
    audiences = pd.DataFrame({"id": ["a0", "a1", "a2"], "customers": customers,
                              "max_offers_per_customer": freq, "max_repeats": repeats})
    return dataclasses.replace(inst, segments=segments, audiences=audiences)


def reference(cands: Candidates, value: np.ndarray, repeats: bool
              ) -> tuple[float, float | None, set[int], set[int] | None]:
    """Brute force per audience: the max under rows 1-3 + 8 (an audience with no choice
    meeting row 8 counted at its rows 1-3 max); if `repeats`, the max under rows 1-3, 8 and
    9 (rows 1-3 and 9 where no choice meets row 8; -inf where no choice meets them); the
    audiences with no choice meeting row 8, and if `repeats`, those with no choice meeting
    rows 8 and 9."""
    c = cands.contacts
    plans = [plans_of(cands, s) for s in range(len(cands.lo))]
    total, exact, no8, no89 = 0.0, 0.0, set(), set()
    members: dict[int, list[int]] = defaultdict(list)
    for s, a in enumerate(c.audience):
        if a < 0:
            alone = max(float(value[list(p)].sum()) for p in plans[s])
            total, exact = total + alone, exact + alone
        else:
            members[int(a)].append(s)
    for a, segs in members.items():
        cap, k = c.frequency_cap[a] * (1 + TOL), c.repeat_cap[a]
        w = c.frequency_weight
        by_count = []  # per segment: best value per offer count
        for s in segs:
            best: dict[int, float] = {}
            for p in plans[s]:
                best[len(p)] = max(best.get(len(p), -math.inf), float(value[list(p)].sum()))
            by_count.append(best)
        fits = [sum(b[n] for b, n in zip(by_count, ns, strict=True))
                for ns in itertools.product(*by_count)
                if sum(w[s] * n for s, n in zip(segs, ns, strict=True)) <= cap]
        total += max(fits) if fits else sum(max(b.values()) for b in by_count)
        if not fits:
            no8.add(a)
        if not repeats:
            continue
        only9, within89 = audience_optimum(cands, value, [plans[s] for s in segs], w[segs],
                                           cap, k)
        exact += within89 if fits else only9
        if within89 == -math.inf:
            no89.add(a)
    return total, exact if repeats else None, no8, no89 if repeats else None


def audience_optimum(cands: Candidates, value: np.ndarray, plans: list[list[tuple[int, ...]]],
                     weight: np.ndarray, cap: float, k: float) -> tuple[float, float]:
    """The max over an audience's choices (given its segments' plans) meeting row 9, and
    meeting rows 8 and 9 (-inf where none does): every combination of the segments' plan
    shapes (offer count, bundles shown), each at its best value, vectorized."""
    n_b = cands.contacts.n_bundles
    shapes = []
    for seg_plans in plans:
        best: dict[tuple[int, frozenset[int]], float] = {}
        for p in seg_plans:
            key = (len(p), frozenset(cands.bundle[list(p)].tolist()))
            best[key] = max(best.get(key, -math.inf), float(value[list(p)].sum()))
        shows = np.zeros((len(best), n_b), np.int64)
        for i, (_, bundles) in enumerate(best):
            shows[i, list(bundles)] = 1
        shapes.append((np.array([n for n, _ in best]), shows, np.array(list(best.values()))))
    pick = np.indices([len(n) for n, _, _ in shapes]).reshape(len(shapes), -1)
    total = sum(v[pick[i]] for i, (_, _, v) in enumerate(shapes))
    load = sum(weight[i] * n[pick[i]] for i, (n, _, _) in enumerate(shapes))
    shown = sum(b[pick[i]] for i, (_, b, _) in enumerate(shapes))
    meets9 = shown.max(axis=1, initial=0) <= k
    return float(total[meets9].max(initial=-math.inf)), \
        float(total[meets9 & (load <= cap)].max(initial=-math.inf))


def broken(cands: Candidates, mask: np.ndarray) -> tuple[bool, set[int]]:
    """Whether some segment breaks rows 1-3, and the audiences breaking row 8 or 9."""
    c = cands.contacts
    seg, slot, bundle = cands.segment[mask], cands.slot_key[mask], cands.bundle[mask]
    n = np.bincount(seg, minlength=len(cands.lo))
    rows13 = bool(len(set(zip(seg, slot, strict=True))) < len(seg)
                  or (n < cands.lo).any() or (n > cands.hi).any())
    bad = set()
    for a in range(len(c.frequency_cap)):
        mine = c.audience[seg] == a
        if (c.frequency_weight[seg[mine]].sum() > c.frequency_cap[a] * (1 + TOL)
                or max([*np.unique(bundle[mine], return_counts=True)[1], 0]) > c.repeat_cap[a]):
            bad.add(a)
    return rows13, bad


def close(x: float, y: float) -> bool:
    return abs(x - y) <= TOL * max(1.0, abs(x), abs(y))


def lengthen(data: st.DataObject, doc: dict[str, Any], n: int) -> dict[str, Any]:
    """`n` segments: copies of the drawn ones (with their responses), with other views."""
    segments = [{**doc["segments"][i % len(doc["segments"])], "id": f"c{i}",
                 "views": float(data.draw(st.integers(0, 2000)))} for i in range(n)]
    origin = {s["id"]: doc["segments"][i % len(doc["segments"])]["id"]
              for i, s in enumerate(segments)}
    responses = [{**r, "segment": s["id"]} for s in segments for r in doc["responses"]
                 if r["segment"] == origin[s["id"]]]
    return {**doc, "segments": segments, "responses": responses}


def check(data: st.DataObject, max_size: int, long: int = 0,
          labels_from: tuple[int, ...] = (-1, 0, 1, 2)) -> None:
    doc = data.draw(tiny_instances(max_segments=6))
    inst = instance_from_document(lengthen(data, doc, long) if long else doc)
    base = expand(inst)
    value = np.array(data.draw(st.lists(VALUES, min_size=len(base), max_size=len(base))))
    # With no audiences: exactly SegmentChooser's choice.
    plain = AudienceChooser(base)
    assert (plain.choose(value) == SegmentChooser(base).choose(value)).all()
    assert close(plain.bound, float(value[plain.choose(value)].sum()))

    capped = with_audiences(data, inst, base, value, max_size, labels_from)
    cands = expand(capped)
    assert (cands.variant == base.variant).all()  # no channels: the same candidates
    chooser = AudienceChooser(cands)
    mask = chooser.choose(value)
    assert (chooser.choose(value) == mask).all()  # the choice depends on the values alone
    bound, exact, no8, no89 = reference(cands, value, repeats=max_size <= 4)
    # the bound: at most the program's (row 9 relaxed, as it was before being priced), and
    # never below the optimum with rows 8 and 9
    assert chooser.bound <= bound + TOL * max(1.0, abs(bound))
    if exact is not None:
        assert chooser.bound >= exact - TOL * max(1.0, abs(exact))
    got = float(value[mask].sum())
    rows13, bad = broken(cands, mask)
    listed = set(chooser.infeasible_audiences.tolist())
    assert not rows13  # always
    assert bad <= listed  # rows 8 and 9 hold in every audience not listed
    assert no8 <= listed and (no89 is None or no89 <= listed)
    if not listed:
        assert not bad and not no89
        assert got <= chooser.bound + TOL * max(1.0, abs(chooser.bound))
        if exact is not None:
            assert got <= exact + TOL * max(1.0, abs(exact))

    # Without repeat caps the choice is exact: its value is the bound (unless some audience
    # cannot meet its frequency cap: the bound then relaxes the cap there).
    free = dataclasses.replace(capped, audiences=capped.audiences.assign(max_repeats=math.nan))
    free_chooser = AudienceChooser(expand(free))
    free_mask = free_chooser.choose(value)
    assert close(free_chooser.bound, bound)
    assert set(free_chooser.infeasible_audiences.tolist()) == no8
    if not no8:
        assert close(float(value[free_mask].sum()), bound)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_small_audiences_match_brute_force(data: st.DataObject) -> None:
    check(data, max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_single_segment_audiences_match_brute_force(data: st.DataObject) -> None:
    check(data, max_size=1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_long_audiences_match_brute_force(data: st.DataObject) -> None:
    check(data, max_size=8, long=8, labels_from=(0, 0, 0, 1))


def binding_repeats(seed: int) -> tuple[Candidates, np.ndarray]:
    """One audience of 2-4 segments over four bundles (two in an exclusion group), a repeat
    cap of 1 or 2, often a frequency cap, and random values: the repeat cap usually binds."""
    rng = np.random.default_rng(seed)
    n_seg, k = int(rng.integers(2, 5)), int(rng.integers(1, 3))
    items = [{"id": f"i{i}", "price": 100.0, "cost": 50.0, "stock": None} for i in range(4)]
    bundles = [{"id": f"b{b}", "kind": "bundle", "items": [{"item": f"i{b}", "qty": 1}],
                "discounts": [0, 0.1], "exclusion_group": "g" if b >= 2 else None}
               for b in range(4)]
    views = rng.integers(100, 1000, n_seg).astype(float)
    segments = [{"id": f"s{s}", "views": views[s], "audience": "a"} for s in range(n_seg)]
    responses = [{"segment": f"s{s}", "bundle": f"b{b}", "take_rate": 0.2, "baseline_rate": 0.0,
                  "price_sensitivity": 1.0}
                 for s in range(n_seg) for b in range(4) if rng.random() < 0.85]
    hi = int(rng.integers(2, 4))
    cap = None if rng.random() < 0.3 else round(float(rng.uniform(0.4, 1.0) * hi * views.sum()
                                                      / 1000.0), 3)
    doc = {"format": "offeropt/instance@1", "name": "repeats", "items": items,
           "bundles": bundles, "segments": segments, "responses": responses,
           "audiences": [{"id": "a", "customers": 1000.0, "max_offers_per_customer": cap,
                          "max_repeats": k}],
           "policy": {"discount_ladder": [0, 0.1], "min_offers_per_view": int(rng.integers(0, 2)),
                      "max_offers_per_view": hi, "allow_negative_uplift": True}}
    cands = expand(instance_from_document(doc))
    return cands, rng.uniform(-20.0, 100.0, len(cands)).round(2)


def test_priced_repeat_caps_close_the_bound() -> None:
    """Where the repeat cap binds, the bound with row 9 priced is never below the optimum
    nor above the program's (rows 1-3 and 8, the bound before row 9 was priced), closes
    most of the gap between them and is mostly the optimum itself; the choice is mostly
    optimal too. (The values are drawn from fixed seeds: no case is left to chance.)"""
    binding = tight = optimal = listed = 0
    closed = []
    for seed in range(150):
        cands, value = binding_repeats(seed)
        c = cands.contacts
        plans = [plans_of(cands, s) for s in range(len(cands.lo))]
        weight, cap = c.frequency_weight, c.frequency_cap[0] * (1 + TOL)
        _, best = audience_optimum(cands, value, plans, weight, cap, c.repeat_cap[0])
        _, program = audience_optimum(cands, value, plans, weight, cap, math.inf)
        if best == -math.inf:  # no choice meets rows 8 and 9
            continue
        chooser = AudienceChooser(cands)
        mask = chooser.choose(value)
        assert best - TOL * max(1.0, abs(best)) <= chooser.bound
        assert chooser.bound <= program + TOL * max(1.0, abs(program))
        got = float(value[mask].sum())
        if chooser.infeasible_audiences.size:  # the greedy repair may fail where a plan exists
            listed += 1
        else:
            assert got <= best + TOL * max(1.0, abs(best))
        if program > best + 1e-6:  # row 9 binds
            binding += 1
            tight += close(chooser.bound, best)
            optimal += close(got, best) and not chooser.infeasible_audiences.size
            closed.append((program - chooser.bound) / (program - best))
    assert binding >= 70 and listed <= 2
    assert tight >= 0.6 * binding and optimal >= 0.85 * binding
    assert float(np.mean(closed)) >= 0.85  # of the program's excess over the optimum

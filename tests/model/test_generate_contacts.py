"""The generator's audiences, channels and timing (spec section 8): `contexts` and `channels`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from optimizer.formulation.candidates import expand
from optimizer.formulation.contacts import family_of, subject_of
from optimizer.formulation.segment_choice import best_choice
from optimizer.io import load_instance, write_instance
from optimizer.model.families import Family
from optimizer.model.generate import CONTACT_CONTEXTS, generate
from optimizer.model.instance import Instance
from tests.model.test_generate import DEFAULT_FINGERPRINT, _fingerprint

TIMINGS = [c[0] for c in CONTACT_CONTEXTS]
CHANNEL_OF = {c[0]: c[1] for c in CONTACT_CONTEXTS}


@pytest.fixture(scope="module")
def contacts_400() -> Instance:
    return generate(400, seed=3, contexts=4, channels=True)


def _assert_same(a: Instance, b: Instance) -> None:
    for table in ("items", "bundles", "bundle_items", "perks", "segments", "responses",
                  "audiences", "channels"):
        pd.testing.assert_frame_equal(a.table(table), b.table(table), obj=table)
    assert a.policy == b.policy and a.name == b.name


def test_without_the_options_the_output_is_unchanged() -> None:
    """contexts=0 (the default) is the original generator, draw for draw."""
    assert _fingerprint(generate(40, 5, 6, contexts=0, channels=False)) == DEFAULT_FINGERPRINT
    _assert_same(generate(60, 2, 8, contexts=0), generate(60, 2, 8))
    _assert_same(generate(120, 4, profile="realistic", contexts=0),
                 generate(120, 4, profile="realistic"))
    plain = generate(60, 2, 8)
    assert len(plain.audiences) == 0 and len(plain.channels) == 0
    assert not plain.has_contacts


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_audiences_of_exactly_k_segments_whose_references_resolve(k: int) -> None:
    inst = generate(60 * k, seed=1, responses_per_segment=6, contexts=k, channels=True)
    segs, aud = inst.segments, inst.audiences
    assert len(aud) == 60 and aud["id"].is_unique
    assert segs["audience"].isin(aud["id"]).all()
    assert segs.groupby("audience").size().eq(k).all()
    assert segs.groupby("audience")["timing"].nunique().eq(k).all()  # K distinct contexts
    assert segs["timing"].isin(TIMINGS).all()
    assert (segs["channel"] == segs["timing"].map(CHANNEL_OF)).all()
    assert segs["channel"].isin(inst.channels["id"]).all()
    assert (segs["id"] == segs["audience"] + "-" + segs["timing"]).all()  # a000123-cart
    assert segs["id"].str.fullmatch(r"a\d{6}-[a-z-]+").all() and segs["id"].is_unique
    assert inst.responses["segment"].isin(segs["id"]).all()
    assert inst.responses["bundle"].isin(inst.bundles["id"]).all()
    assert inst.responses.groupby("segment").size().eq(6).all()


def test_every_audience_has_caps_and_customers_match_its_views(contacts_400: Instance) -> None:
    inst = contacts_400
    aud = inst.audiences.set_index("id")
    assert aud["max_offers_per_customer"].notna().all() and (aud["max_offers_per_customer"] >= 0).all()
    repeats = aud["max_repeats"]
    assert repeats.notna().all() and (repeats >= 1).all() and (repeats % 1 == 0).all()
    busiest = inst.segments.groupby("audience")["views"].max().reindex(aud.index)
    assert (aud["customers"] > 0).all() and (aud["customers"] <= busiest).all()
    assert (busiest / aud["customers"]).median() > 1.5  # a few views per customer
    channels = inst.channels.set_index("id")
    assert list(channels.index) == ["site", "email", "cs-talk"]
    assert np.isnan(channels.loc["site", "capacity"]) and channels.loc["site", "cost_per_impression"] == 0
    assert channels.loc["email", "capacity"] > channels.loc["cs-talk", "capacity"] > 0
    assert 0 < channels.loc["email", "cost_per_impression"] < 10
    assert channels.loc["cs-talk", "cost_per_impression"] >= 300


def test_contexts_without_channels_have_no_channel() -> None:
    inst = generate(80, seed=2, contexts=4)
    assert len(inst.channels) == 0 and inst.segments["channel"].isna().all()
    assert inst.segments["audience"].notna().all() and inst.audiences["max_repeats"].notna().all()


def test_deterministic_per_seed() -> None:
    a, b = (generate(200, seed=9, contexts=4, channels=True) for _ in range(2))
    _assert_same(a, b)
    c = generate(200, seed=10, contexts=4, channels=True)
    assert not a.responses["take_rate"].equals(c.responses["take_rate"])
    r1, r2 = (generate(120, seed=2, profile="realistic", contexts=4, channels=True)
              for _ in range(2))
    _assert_same(r1, r2)


def test_the_contexts_of_an_audience_share_bundles(contacts_400: Instance) -> None:
    resp = contacts_400.responses.merge(contacts_400.segments[["id", "audience"]],
                                        left_on="segment", right_on="id")
    per_bundle = resp.groupby(["audience", "bundle"]).size()
    assert per_bundle.max() == 4
    assert (per_bundle >= 2).mean() > 0.7  # most of an audience's bundles in several contexts


def test_the_caps_bind_for_the_uncapped_plan(contacts_400: Instance) -> None:
    """Each segment's best choice (no coupling rows) breaks most frequency caps, many repeat
    caps and both capacities, while a plan showing lo_eff offers keeps to every frequency cap."""
    inst = contacts_400
    cands = expand(inst)
    chosen = best_choice(cands, cands.value)
    keys, use = cands.contact_usage(chosen.astype(np.float64))
    limit, family = cands.contacts.limit(keys), family_of(keys)
    broken = use > limit * (1 + 1e-9)
    n_aud = len(inst.audiences)
    assert broken[family == Family.FREQUENCY_CAP].sum() > 0.6 * n_aud
    repeat = family == Family.REPEAT_CAP
    assert len(np.unique(subject_of(keys[repeat & broken]) // len(inst.bundles))) > 0.4 * n_aud
    # channels' impressions are usage columns after the variants' (site has no capacity)
    impressions = cands.subset(np.flatnonzero(chosen)).usage_per_column()[len(cands.variants):]
    capacity = inst.channels["capacity"].to_numpy()
    capped = ~np.isnan(capacity)
    assert inst.channels["id"][capped].tolist() == ["email", "cs-talk"]
    assert (impressions[capped] > capacity[capped]).all()
    assert (impressions[capped] <= capacity[capped] / 0.4 + 1).all()  # at least 40% of it

    weight = cands.contacts.frequency_weight
    least = np.bincount(cands.contacts.audience, cands.lo * weight, minlength=n_aud)
    assert (least <= inst.audiences["max_offers_per_customer"].to_numpy() + 1e-9).all()


def test_contact_cost_removes_talk_candidates(contacts_400: Instance) -> None:
    inst = contacts_400
    free = dataclasses.replace(inst, channels=inst.channels.assign(cost_per_impression=0.0))
    talk = (inst.segments["channel"] == "cs-talk").to_numpy()
    with_cost, without = (int(talk[expand(i).segment].sum()) for i in (inst, free))
    assert without > 1.3 * with_cost > 0
    takes = inst.responses.merge(inst.segments[["id", "timing"]], left_on="segment",
                                 right_on="id").groupby("timing")["take_rate"].median()
    assert takes["renewal"] > takes["cart"] > takes["post-purchase"]


def test_realistic_profile_with_contexts(tmp_path: Path) -> None:
    inst = generate(200, seed=1, profile="realistic", contexts=4, channels=True)
    assert len(inst.audiences) == 50 and inst.audiences["max_offers_per_customer"].notna().all()
    assert inst.policy.promotion_budget is not None
    write_instance(inst, tmp_path / "r", "parquet")
    loaded = load_instance(tmp_path / "r")
    pd.testing.assert_frame_equal(loaded.audiences, inst.audiences)
    pd.testing.assert_frame_equal(loaded.channels, inst.channels)


@pytest.mark.parametrize("form", ["csv", "json"])
def test_written_and_read_back(tmp_path: Path, form: Literal["csv", "json"]) -> None:
    inst = generate(80, seed=4, responses_per_segment=5, contexts=4, channels=True)
    target = tmp_path / ("g.json" if form == "json" else "g")
    write_instance(inst, target, form)
    loaded = load_instance(target)
    pd.testing.assert_frame_equal(loaded.audiences, inst.audiences)
    pd.testing.assert_frame_equal(loaded.channels, inst.channels)
    cols = ["id", "audience", "channel", "timing"]
    assert loaded.segments[cols].astype(object).equals(inst.segments[cols].astype(object))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"contexts": 5}, "contexts"), ({"contexts": -1}, "contexts"),
    ({"channels": True}, "channels need contexts"), ({"contexts": 3}, "multiple"),
])
def test_bad_options_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(100, seed=1, **kwargs)  # type: ignore[arg-type]


def test_cli_generates_audiences_and_channels(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cli.exit_codes import ExitCode
    from cli.main import main

    target = tmp_path / "g"
    assert main(["generate", "--segments", "80", "--seed", "3", "--contexts", "4", "--channels",
                 "-o", str(target), "--to", "csv"]) == ExitCode.OK
    assert "20 audiences, 3 channels" in capsys.readouterr().out
    loaded = load_instance(target)
    expected = generate(80, seed=3, contexts=4, channels=True)
    pd.testing.assert_frame_equal(loaded.audiences, expected.audiences)
    assert main(["generate", "--segments", "80", "--seed", "3", "--channels", "-o",
                 str(tmp_path / "x")]) == ExitCode.USAGE
    assert "--channels needs --contexts" in capsys.readouterr().err
    assert main(["generate", "--segments", "81", "--seed", "3", "--contexts", "4", "-o",
                 str(tmp_path / "y")]) == ExitCode.USAGE
    assert "multiple of --contexts" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--segments", "80", "--seed", "3", "--contexts", "5", "-o",
              str(tmp_path / "z")])

"""Hostile input: every refusal is a clean input error, and nothing runs away.

Three classes, each through the command line (exit code 1, the field and the rule named, no
traceback) and over HTTP against one real `offeropt serve` (a 4xx problem, never a 5xx):
decompression bombs and oversized bodies, pathological JSON, and finite but absurd numbers
(instances and experiment logs). A fuzzer then feeds the readers random mutations of a
valid instance in all three forms.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.errors import InputError
from optimizer.io import ZipLimits, instance_from_document, load_instance
from optimizer.io import archive as archive_module
from optimizer.io.safe_json import MAX_JSON_DEPTH, nesting_depth, parse_json
from optimizer.io.tables import instance_tables
from optimizer.model.instance import Instance
from tests.constants import DATA
from tests.hostile_helpers import (
    DEMO_FOLDER,
    OFFEROPT,
    GiB,
    bomb_zip,
    deep_json,
    deflate_bomb,
    deflated,
    demo_entries,
    measure,
    write_zip,
)
from tests.server import MERCHANDISER, Processes, Server

Doc = dict[str, Any]
PROBLEM = "application/problem+json"
BODY_LIMIT = 8 << 20  # the module's server: OFFEROPT_MAX_CONTENT_LENGTH


def demo() -> Doc:
    doc: Doc = json.loads((DATA / "demo.json").read_text())
    return doc


def edited(**paths: Any) -> Doc:
    """The demo document with `table__row__field=value` edits (`bundles__0__perks__0__lift`)."""
    doc = demo()
    for path, value in paths.items():
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("__")]
        node: Any = doc
        for p in parents:
            node = node[p]
        node[last] = value
    return doc


ABSURD = {  # every field kind past its bound: the path and the rule each names
    "segments__0__views": (1e308, "segments[0].views: must be <= 1e15"),
    "items__0__price": (1e308, "items[0].price: must be <= 1e15"),
    "items__1__cost": (1e16, "items[1].cost: must be <= 1e15"),
    "items__0__stock": (1e20, "items[0].stock: must be <= 1e15"),
    "bundles__0__perks__0__lift": (-1e308, "bundles[0].perks[0].lift: must be in [-100, 100]"),
    "bundles__0__perks__0__cost": (1e300, "bundles[0].perks[0].cost: must be <= 1e15"),
    "bundles__0__items__0__qty": (10**20, "bundles[0].items[0].qty: must be <= 1e15"),
    "responses__0__price_sensitivity": (1e308, "responses[0].price_sensitivity: must be <= 100"),
    "policy__promotion_budget": (1e308, "policy.promotion_budget: must be <= 1e15"),
}


def _json_cases(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """Hostile files for the command line, each with the fragments its message must hold."""
    cases: dict[str, tuple[Path, list[str]]] = {}

    def file(name: str, data: bytes, *fragments: str) -> None:
        (folder / name).write_bytes(data)
        cases[name] = (folder / name, list(fragments))

    file("deep.json", deep_json(),
         f"deep.json: must nest arrays and objects at most {MAX_JSON_DEPTH} levels deep, got 50001")
    big = json.dumps(edited(segments__0__views="BIG")).replace('"BIG"', "1" + "0" * 399)
    file("long-integer.json", big.encode(), "segments[0].views: must be a finite number, got inf")
    file("surrogate.json", json.dumps(edited(segments__0__id="\ud800")).encode(),
         "segments[0].id: must be valid Unicode text (no unpaired surrogate",
         "got '\\ud800'")
    file("surrogate-key.json", json.dumps(edited(items__0__colour={"\udfff": 1})).encode(),
         "items[0].colour: must have keys that are valid Unicode text")
    file("absurd.json", json.dumps(edited(**{k: v for k, (v, _) in ABSURD.items()})).encode(),
         *[fragment for _, fragment in ABSURD.values()])
    beyond = json.dumps(edited(items__0__stock="BIG")).replace('"BIG"', "9" * 5000)
    file("long-integer-beyond-python.json", beyond.encode(),  # json.loads alone: ValueError
         "items[0].stock: must be a finite number, got inf")
    return cases


def _folder_cases(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    cases: dict[str, tuple[Path, list[str]]] = {}
    csv = folder / "absurd-csv"
    csv.mkdir()
    for f in DEMO_FOLDER.iterdir():
        (csv / f.name).write_bytes(f.read_bytes())
    segments = (csv / "segments.csv").read_text().splitlines()
    first = segments[1].split(",")
    first[1] = "1e308"
    (csv / "segments.csv").write_text("\n".join([segments[0], ",".join(first), *segments[2:]]))
    (csv / "policy.json").write_bytes(b'{"max_discount": ' + b"[" * 100 + b"]" * 100 + b"}")
    cases["absurd-csv"] = (csv, ["segments.csv[line 2].views: must be <= 1e15",
                                 "policy.json: must nest arrays and objects at most 64"])
    parquet = folder / "absurd-parquet"
    parquet.mkdir()
    tables = instance_tables(load_instance(DEMO_FOLDER))
    for name, frame in tables.items():
        if name == "responses":
            frame = frame.assign(price_sensitivity=[1e308] + [1.0] * (len(frame) - 1))
        frame.to_parquet(parquet / f"{name}.parquet", index=False)
    cases["absurd-parquet"] = (parquet, ["responses.parquet[row 0].price_sensitivity: "
                                         "must be <= 100"])
    return cases


def _zip_cases(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    cases = {"bomb.zip": (bomb_zip(folder / "bomb.zip"),
                          ["bomb.zip: must expand to at most 1073741824 bytes, got 16106"])}
    # Its directory says 1 KB; the stream holds 1.5 GiB: inflating stops at the declared
    # size and the entry's CRC gives the lie away.
    lying = write_zip(folder / "lying.zip",
                      [*demo_entries(), deflate_bomb("responses.csv", 3 * GiB // 2, 1000)])
    cases["lying.zip"] = (lying, ["lying.zip/responses.csv: must inflate to the size and CRC "
                                  "its zip directory declares"])
    crowded = folder / "crowded.zip"
    with zipfile.ZipFile(crowded, "w") as z:
        for f in DEMO_FOLDER.iterdir():
            z.write(f, f.name)
        for i in range(1001):
            z.writestr(f"junk/{i}.txt", b"")
    entries = len(list(DEMO_FOLDER.iterdir())) + 1001
    cases["crowded.zip"] = (crowded, [f"crowded.zip: must hold at most 1000 entries, got {entries}"])
    bzip = folder / "bzip2.zip"
    with zipfile.ZipFile(bzip, "w", zipfile.ZIP_BZIP2) as z:
        for f in DEMO_FOLDER.iterdir():
            z.write(f, f.name)
    cases["bzip2.zip"] = (bzip, ["bzip2.zip/", "must be stored or deflate-compressed, got "
                                 "compression method 12"])
    return cases


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str]]]:
    folder = tmp_path_factory.mktemp("hostile")
    return {**_json_cases(folder), **_folder_cases(folder), **_zip_cases(folder)}


CASES = ["deep.json", "long-integer.json", "surrogate.json", "surrogate-key.json", "absurd.json",
         "long-integer-beyond-python.json", "absurd-csv", "absurd-parquet", "bomb.zip",
         "lying.zip", "crowded.zip", "bzip2.zip"]


def _offeropt(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OFFEROPT, *args], capture_output=True, text=True, errors="replace",
                          timeout=timeout)


def _refused(done: subprocess.CompletedProcess[str], fragments: list[str]) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("input error"), done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_cli_refuses_hostile_instance(hostile: dict[str, tuple[Path, list[str]]],
                                      case: str) -> None:
    path, fragments = hostile[case]
    _refused(_offeropt("validate", str(path)), fragments)


def test_cli_refuses_hostile_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(deep_json(5000))
    _refused(_offeropt("check", str(DEMO_FOLDER), str(plan)),
             ["plan.json: must nest arrays and objects at most 64 levels deep"])


def test_cli_refuses_absurd_counts_in_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs.csv"
    logs.write_text("segment,bundle,shown,discount,perk,views,purchases\n"
                    "champions-cart,laptop-care,0,0,,2000,21\n"
                    "champions-cart,laptop-care,1,0,,1e20,58\n"
                    "champions-cart,laptop-care,1,0.1,,1500,1e300\n")
    done = _offeropt("estimate", str(logs), "--instance", str(DEMO_FOLDER), "-o",
                     str(tmp_path / "out.csv"))
    _refused(done, ["logs.csv[line 3].views: must be <= 1e15 (the largest count offeropt takes), "
                    "got 1e+20", "logs.csv[line 4].purchases: must be <= 1e15"])


def test_logs_refuse_arm_totals_beyond_the_bound(tmp_path: Path) -> None:
    from optimizer.estimation.exposures import load_exposures

    logs = tmp_path / "logs.csv"
    row = "champions-cart,laptop-care,1,0,,900000000000000,1\n"
    logs.write_text("segment,bundle,shown,discount,perk,views,purchases\n" + row * 3)
    with pytest.raises(InputError, match=r"logs.csv\[line 2\].views: must sum to <= 1e15 over "
                                         r"the rows of its arm"):
        load_exposures(logs, load_instance(DEMO_FOLDER))


# --- decompression: refused from the directory, within time and memory ------------------

_REFUSE_IN_PROCESS = """
import json, sys, time
from optimizer.errors import InputError
from optimizer.io import archive as archive_module
from optimizer.io import load_instance
start = time.monotonic()
try:
    load_instance(sys.argv[1])
    message = None
except InputError as exc:
    message = str(exc)
seconds = time.monotonic() - start
# VmHWM is this process image's own peak: ru_maxrss would keep the forking parent's across exec
peak_mb = next(int(line.split()[1]) for line in open("/proc/self/status")
               if line.startswith("VmHWM:")) / 1024
print(json.dumps({"message": message, "seconds": seconds, "peak_mb": peak_mb}))
"""


def test_bomb_is_refused_fast_and_small(hostile: dict[str, tuple[Path, list[str]]]) -> None:
    bomb = hostile["bomb.zip"][0]
    assert bomb.stat().st_size < 8 << 20 and zipfile.ZipFile(bomb).infolist()[-1].file_size > GiB
    # The refusal itself, timed inside a process that has already imported everything.
    done = subprocess.run([sys.executable, "-c", _REFUSE_IN_PROCESS, str(bomb)],
                          capture_output=True, text=True, timeout=120, check=True)
    inside = json.loads(done.stdout)
    assert "must expand to at most" in inside["message"]
    assert inside["seconds"] < 2.0, inside  # from the central directory: milliseconds
    assert inside["peak_mb"] < 300, inside
    # The whole command: exit code 1, and the refusing process's peak memory.
    cli = measure([OFFEROPT, "validate", str(bomb)])
    assert cli.returncode == 1 and "must expand to at most" in cli.stderr, cli
    assert cli.peak_mb < 300, cli
    assert cli.seconds < 30, cli  # interpreter start-up included; a loaded machine is slow


def test_lying_directory_stops_at_declared_size(
        hostile: dict[str, tuple[Path, list[str]]]) -> None:
    cli = measure([OFFEROPT, "validate", str(hostile["lying.zip"][0])])
    assert cli.returncode == 1 and "must inflate to the size and CRC" in cli.stderr, cli
    assert cli.peak_mb < 300, cli


def test_zip_limits_apply_while_inflating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The declared sizes are checked first; the bytes actually written are counted too."""
    archive = write_zip(tmp_path / "x.zip", [*demo_entries(), deflate_bomb("responses.csv",
                                                                          4 << 20)])
    small = ZipLimits(max_expanded_bytes=1_000_000)
    with pytest.raises(InputError, match=r"x.zip: must expand to at most 1000000 bytes, got "
                                         r"\d+ bytes declared"):
        load_instance(archive, small)
    entries = len(demo_entries()) + 1
    with pytest.raises(InputError, match=f"x.zip: must hold at most 5 entries, got {entries}"):
        load_instance(archive, ZipLimits(max_entries=5))
    monkeypatch.setattr(archive_module, "_check_declared", lambda *_: None)  # as if it lied
    with pytest.raises(InputError, match=r"x.zip: must expand to at most 1000000 bytes, got "
                                         r"more while inflating 'responses.csv'"):
        load_instance(archive, small)


def test_parquet_in_a_zip_counts_what_it_decodes_to(tmp_path: Path) -> None:
    """Two million dictionary-encoded rows take a few KB of Parquet and 80 MB once read."""
    rows = 2_000_000
    ids = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), ["champions-cart"])
    table = pa.table({"segment": ids, "bundle": ids, "take_rate": np.full(rows, 0.04),
                      "baseline_rate": np.zeros(rows), "price_sensitivity": np.ones(rows)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    assert len(sink.getvalue()) < 1 << 20
    others = [deflated(f"{name}.parquet", _parquet_bytes(frame))
              for name, frame in DEMO_TABLES.items() if name != "responses"]
    archive = write_zip(tmp_path / "p.zip",
                        [*others, deflated("responses.parquet", sink.getvalue())])
    with pytest.raises(InputError, match=r"p.zip: must expand to at most 50000000 bytes, got "
                                         r"more once 'responses.parquet' is decoded"):
        load_instance(archive, ZipLimits(max_expanded_bytes=50_000_000))


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


def test_zip_inner_folder_and_junk_still_load(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "x.zip", [*demo_entries(skip="", prefix="shop/"),
                                             deflated("__MACOSX/shop/._items.csv", b"junk"),
                                             deflated("shop/notes/readme.txt", b"hi")])
    assert load_instance(archive).name == "demo-shop"


# --- pathological JSON, in the shared parser --------------------------------------------


def test_depth_ignores_brackets_inside_strings() -> None:
    doc = {"a": ["[[[[", {"b": "]]]]"}, '\\"[', "\\\\["]}
    assert nesting_depth(json.dumps(doc).encode()) == 3
    assert nesting_depth(b'"[[[[[["') == 0
    deep = {"a": 1}
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = {"a": deep}
    assert parse_json(json.dumps(deep), "x") == deep
    with pytest.raises(InputError, match=f"at most {MAX_JSON_DEPTH} levels deep, got 65 levels"):
        parse_json(json.dumps([deep]), "x")


def test_surrogate_pairs_are_fine() -> None:
    assert parse_json(b'{"id": "\\ud83d\\ude00"}', "x") == {"id": "\U0001f600"}
    with pytest.raises(InputError, match=r"a\[1\]: must be valid Unicode text"):
        parse_json(b'{"a": ["ok", "\\ud83d"]}', "x")


# --- over HTTP, against one real server -------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("server")
    started = Processes(data / "processes")
    try:
        yield started.server(data, workers=1, threads=2,
                             OFFEROPT_MAX_CONTENT_LENGTH=str(BODY_LIMIT))
    finally:
        started.stop_all()


def _problem(response: requests.Response, status: int | tuple[int, ...],
             *fragments: str) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:2000])
    assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    text = json.dumps(body)
    for fragment in fragments:
        assert fragment in text, text[:2000]
    return body


def _post(server: Server, data: bytes | Iterator[bytes], ctype: str = "application/json",
          path: str = "/v1/catalog-plans") -> requests.Response:
    return requests.post(server.base + path, data=data, timeout=60,
                         headers={**MERCHANDISER, "Content-Type": ctype})


@pytest.mark.slow
@pytest.mark.parametrize("case", ["deep.json", "long-integer.json", "surrogate.json",
                                  "surrogate-key.json", "absurd.json",
                                  "long-integer-beyond-python.json"])
def test_http_refuses_hostile_json(server: Server, hostile: dict[str, tuple[Path, list[str]]],
                                   case: str) -> None:
    path, fragments = hostile[case]
    fragments = [f.replace(f"{case}:", "body:") for f in fragments]
    fragments = [f.replace("\\ud800", "\\\\ud800") for f in fragments]  # as JSON text
    _problem(_post(server, path.read_bytes()), 422, *fragments)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bomb.zip", "lying.zip", "crowded.zip", "bzip2.zip"])
def test_http_refuses_hostile_zip(server: Server, hostile: dict[str, tuple[Path, list[str]]],
                                  case: str) -> None:
    path, fragments = hostile[case]
    expected = [f.replace(case, "catalog.zip") for f in fragments]
    expected = [f.replace("1073741824", str(512 << 20)) for f in expected]  # the service's
    start = time.monotonic()
    _problem(_post(server, path.read_bytes(), "application/zip"), 422, *expected)
    assert time.monotonic() - start < 20  # far less in fact: nothing is inflated


def _chunks(data: bytes, size: int = 1 << 16) -> Iterator[bytes]:
    """A generator body: requests sends it chunked, with no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _padded(doc: Doc, size: int) -> bytes:
    text = json.dumps(doc).encode()
    return text[:-1] + b" " * (size - len(text)) + b"}"


@pytest.mark.slow
def test_http_chunked_body_past_the_limit_gets_413(server: Server) -> None:
    doc = edited(segments__0__views=-1)  # readable, and invalid: a full read gets 422
    exact = _padded(doc, BODY_LIMIT)
    _problem(_post(server, _chunks(exact)), 422, "segments[0].views: must be >= 0")
    over = _padded(doc, BODY_LIMIT + 1)
    _problem(_post(server, _chunks(over)), 413, f"must be at most {BODY_LIMIT} bytes")
    _problem(_post(server, _chunks(over * 3)), 413, "OFFEROPT_MAX_CONTENT_LENGTH")
    _problem(_post(server, over), 413)  # with a Content-Length, as before
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as z:
        z.writestr("padding.bin", b"\0" * (BODY_LIMIT + 10))
    _problem(_post(server, _chunks(zipped.getvalue()), "application/zip"), 413)
    _problem(_post(server, _chunks(over), path="/v1/plans/rollback"), 413)


@pytest.mark.slow
def test_http_rollback_body_with_deep_json_is_400(server: Server) -> None:
    _problem(_post(server, deep_json(), path="/v1/plans/rollback"), 400,
             "body: must be a JSON object or empty")


# --- a fuzzer over all three forms --------------------------------------------------------

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.just(""), st.just("abc"), st.just(" 12 "), st.just("\ud800x"),
    st.integers(), st.sampled_from([10**20, -(10**20), 10**400, 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e16, 5e-324, -0.0]),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    st.just({"a": [1]}), st.just([[[[1]]]]), st.text(max_size=5),
)


def _fields(doc: Doc) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of the document whose value a mutation may replace."""
    out: list[tuple[Any, Any]] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        pairs = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in pairs:
            out.append((node, key))
            if isinstance(value, dict | list):
                stack.append(value)
    return out


@st.composite
def mutated_documents(draw: st.DrawFn) -> Doc:
    doc = demo()
    for _ in range(draw(st.integers(1, 4))):
        fields = _fields(doc)
        container, key = fields[draw(st.integers(0, len(fields) - 1))]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "new"]))
        if action == "delete":
            del container[key]
        elif action == "new" and isinstance(container, dict):
            container[draw(st.sampled_from(["extra", "\udc80", "views", "id"]))] = \
                copy.deepcopy(draw(HOSTILE_VALUES))  # st.just gives the same object each time
        else:
            container[key] = copy.deepcopy(draw(HOSTILE_VALUES))
    return doc


def _accepts_or_refuses(load: Callable[[], Instance]) -> None:
    """Only an InputError may escape; what is accepted keeps every number within bounds."""
    with contextlib.suppress(InputError):  # anything else escapes and fails the test
        instance = load()
        for name in ("items", "bundles", "bundle_items", "perks", "segments", "responses"):
            numbers = instance.table(name).select_dtypes("number").to_numpy(dtype=np.float64,
                                                                   na_value=np.nan)
            assert not (np.abs(numbers) > 1e15).any(), (name, numbers)


FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(doc=mutated_documents(), cut=st.none() | st.integers(0, 6000))
def test_fuzz_json(tmp_path: Path, doc: Doc, cut: int | None) -> None:
    text = json.dumps(doc).encode("utf-8", "surrogatepass")  # NaN, huge ints, \ud800 as written
    path = tmp_path / "fuzz.json"
    path.write_bytes(text if cut is None else text[:cut] + text[cut + 1:])
    _accepts_or_refuses(lambda: load_instance(path))
    _accepts_or_refuses(lambda: instance_from_document(copy.deepcopy(doc)))


DEMO_TABLES = instance_tables(load_instance(DEMO_FOLDER))


@st.composite
def mutated_tables(draw: st.DrawFn) -> dict[str, pd.DataFrame]:
    tables = {name: frame.astype(object) for name, frame in DEMO_TABLES.items()}
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(tables)))
        frame = tables[name]
        column = draw(st.sampled_from([*frame.columns, "extra"]))
        action = draw(st.sampled_from(["cell", "cell", "column", "drop", "rows"]))
        if action == "drop" and column in frame.columns:
            tables[name] = frame.drop(columns=[column])
        elif action == "rows":
            tables[name] = frame.iloc[: draw(st.integers(0, len(frame)))]
        elif action == "column" or column not in frame.columns:
            kind = draw(st.sampled_from(["text", "bool", "huge", "lists", "dates", "bytes",
                                         "nulls"]))
            tables[name] = frame.assign(**{column: _column(kind, len(frame))})
        elif len(frame):
            values = frame[column].tolist()
            values[draw(st.integers(0, len(frame) - 1))] = copy.deepcopy(
                draw(HOSTILE_VALUES.filter(lambda v: not (isinstance(v, str) and "\ud800" in v))))
            tables[name] = frame.assign(**{column: pd.Series(values, dtype=object,
                                                             index=frame.index)})
    return tables


def _column(kind: str, n: int) -> Any:
    return {
        "text": ["x"] * n, "bool": [True] * n, "huge": [1e308] * n, "lists": [[0.1, 0.2]] * n,
        "dates": pd.to_datetime(["2024-01-01"] * n), "bytes": [b"\xff\x00"] * n,
        "nulls": [None] * n,
    }[kind]


def _write(tables: dict[str, pd.DataFrame], folder: Path, form: str) -> None:
    folder.mkdir(exist_ok=True)
    for name, frame in tables.items():
        if form == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
            continue
        columns = {}
        for col in frame.columns:
            try:
                columns[col] = pa.array(frame[col].tolist(), from_pandas=True)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                columns[col] = pa.array([None if v is None else str(v) for v in frame[col]])
        pq.write_table(pa.table(columns) if columns else pa.table({"x": pa.array([], pa.int64())}),
                       folder / f"{name}.parquet")


@FUZZ
@given(tables=mutated_tables(), form=st.sampled_from(["csv", "parquet"]),
       flip=st.none() | st.tuples(st.sampled_from(sorted(DEMO_TABLES)), st.integers(0, 4000),
                                  st.integers(1, 255)))
def test_fuzz_tables(tmp_path: Path, tables: dict[str, pd.DataFrame], form: str,
                     flip: tuple[str, int, int] | None) -> None:
    folder = tmp_path / f"fuzz-{form}"
    _write(tables, folder, form)
    if flip is not None:  # one byte of one file changed: broken files are input errors too
        target = folder / f"{flip[0]}.{form}"
        data = bytearray(target.read_bytes())
        if data:
            data[flip[1] % len(data)] ^= flip[2]
            target.write_bytes(bytes(data))
    _accepts_or_refuses(lambda: load_instance(folder))


def test_fuzz_writers_keep_the_unmutated_demo_valid(tmp_path: Path) -> None:
    """The fuzzers' own machinery: without a mutation, each form is accepted."""
    for form in ("csv", "parquet"):
        tables = {name: frame.astype(object) for name, frame in DEMO_TABLES.items()}
        _write(tables, tmp_path / form, form)
        assert load_instance(tmp_path / form).name == form
    assert instance_from_document(demo()).name == "demo-shop"

"""dgeo: CIDs computed from bytes equal IPFS's (ipfs-unixfs-importer, the importer of js-ipfs and Helia, is the
oracle), CIDs joined from a manifest, computed from local files and from an HTTP server on loopback; idempotence,
validation against the dgeo schemas, reports of unreadable assets, bad manifests."""

from __future__ import annotations

import copy
import csv
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, item, write_ndjson
from test_extend import _items, _sample, _stage

from stacbatch.edit import Op, update
from stacbatch.extend import extend
from stacbatch.extend._cid import PROFILES, Profile, cid_of_bytes, cid_of_stream, profile
from stacbatch.validate import Options, SchemaSource

ROOT = Path(__file__).resolve().parent.parent
ORACLE = ROOT / "tests" / "oracles" / "ipfs_cid.mjs"
PEERS = Path(os.environ.get("STACBATCH_PEERS_DIR", ROOT / ".peers"))
PGSTAC_URL = (
    "https://raw.githubusercontent.com/DecentralizedGeo/dgeo-asset/refs/heads/pgstac-variant/json-schema/schema.json"
)
MAIN_URL = "https://raw.githubusercontent.com/DecentralizedGeo/dgeo/refs/heads/main/json-schema/schema.json"
ALT = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"


def _oracle(options: dict[str, Any], files: list[Path]) -> list[str]:
    node = shutil.which("node")
    modules = PEERS / "ipfs" / "node_modules"
    if node is None or not (modules / "ipfs-unixfs-importer").is_dir():
        if os.environ.get("STACBATCH_REQUIRE_PEERS"):
            pytest.fail(f"the CID oracle is not installed ({modules}); run tests/peers/install.sh")
        pytest.skip("the CID oracle (node + ipfs-unixfs-importer) is not installed")
    # the script imports from the folder it runs in: copy it beside the packages
    script = PEERS / "ipfs" / ORACLE.name
    shutil.copyfile(ORACLE, script)
    out = subprocess.run(
        [node, str(script), json.dumps(options), *map(str, files)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _files(tmp_path: Path, sizes: list[int], seed: int = 7) -> list[Path]:
    import random

    rnd = random.Random(seed)
    out = []
    for n in sizes:
        p = tmp_path / f"f{n}.bin"
        p.write_bytes(rnd.randbytes(n))
        out.append(p)
    return out


# -- CIDs from bytes ------------------------------------------------------------------------------------------------
def test_known_cids_of_the_empty_file_and_a_byte() -> None:
    """Values every IPFS implementation prints (``ipfs add`` of an empty file, raw-leaf CIDv1 of it)."""
    assert cid_of_bytes(b"", PROFILES["unixfs-v0-2015"]) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert (
        cid_of_bytes(b"", PROFILES["unixfs-v1-2025"]) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    )


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_cids_equal_the_ipfs_importer_for_each_profile(tmp_path: Path, name: str) -> None:
    p = PROFILES[name]
    c = p.chunk_size
    # 0 B, 1 B, exactly one chunk, one chunk and a byte, several chunks with a short last one
    sizes = [0, 1, c, c + 1, 3 * c + 12_345]
    files = _files(tmp_path, sizes)
    want = _oracle({"profile": name}, files)
    assert [cid_of_bytes(f.read_bytes(), p) for f in files] == want


@pytest.mark.parametrize("raw", [False, True])
def test_cids_of_deep_trees_equal_the_ipfs_importer(tmp_path: Path, raw: bool) -> None:
    """Tiny chunks and a width of 3 give trees of many levels with partial subtrees at every level."""
    chunk, width = 16, 3
    sizes = [0, 1, 15, 16, 17, 48, 49, 144, 145, 432, 433, 1000, 4321]
    files = _files(tmp_path, sizes, seed=11)
    version = 1 if raw else 0
    want = _oracle({"cidVersion": version, "rawLeaves": raw, "chunkSize": chunk, "width": width}, files)
    p = profile({"cid_version": version, "raw_leaves": raw, "chunk_size": chunk, "dag_width": width})
    assert [cid_of_bytes(f.read_bytes(), p) for f in files] == want


def test_cids_stream_one_chunk_at_a_time() -> None:
    """Memory is bounded by the chunk size: the reader is never asked for more, whatever the file's size."""
    p = Profile("t", 1, True, 1024, 4)
    asked: list[int] = []
    left = 1_000_000

    def read(n: int) -> bytes:
        nonlocal left
        asked.append(n)
        n = min(n, left, 700)  # a short read, as sockets give
        left -= n
        return b"\1" * n

    got = cid_of_stream(read, p)
    assert max(asked) <= p.chunk_size
    assert got == cid_of_bytes(b"\1" * 1_000_000, p)


def test_profiles_that_cannot_exist_are_refused() -> None:
    with pytest.raises(ValueError, match="CIDv0 cannot name raw leaves"):
        profile({"cid_version": 0, "raw_leaves": True})
    with pytest.raises(ValueError, match="unknown CID profile"):
        profile("kubo")


# -- CIDs from a manifest -------------------------------------------------------------------------------------------
def _fake_cid(href: str) -> str:
    return cid_of_bytes(href.encode(), PROFILES["unixfs-v1-2025"])


def _manifest(path: Path, items: list[dict[str, Any]], skip: tuple[str, ...] = ("thumbnail",)) -> dict[str, str]:
    cids = {a["href"]: _fake_cid(a["href"]) for it in items for k, a in it["assets"].items() if k not in skip}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["href", "cid"])
        w.writerows(sorted(cids.items()))
    return cids


def _dgeo_oracle(doc: dict[str, Any], cids: dict[str, str], url: str, alternate: bool) -> dict[str, Any]:
    """What the extension must do, in plain Python."""
    doc = copy.deepcopy(doc)
    found = []
    for a in doc["assets"].values():
        cid = cids.get(a.get("href"))
        if cid is None:
            continue
        a["dgeo:cid"] = cid
        if alternate:
            a.setdefault("alternate", {})["ipfs"] = {"href": f"ipfs://{cid}", "alternate:name": "IPFS"}
        if cid not in found:
            found.append(cid)
    if not found:
        return doc
    doc["properties"]["dgeo:cids"] = found
    exts = doc.setdefault("stac_extensions", [])
    for u in (url, ALT) if alternate else (url,):
        if u not in exts:
            exts.append(u)
    return doc


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["properties"].pop("updated", None)
    return doc


def _options() -> Options:
    return Options(source=SchemaSource.from_env([]))


@pytest.mark.parametrize("alternate", [False, True])  # a set per asset key (the kernel), or the assets rebuilt
@pytest.mark.parametrize("n", [1, 2, 200])
def test_cids_from_a_manifest_equal_the_oracle_validate_and_are_idempotent(
    tmp_path: Path, n: int, alternate: bool
) -> None:
    items = _sample(n)
    stage = _stage(tmp_path, items)
    listed = items[: max(1, n * 3 // 4)]
    cids = _manifest(tmp_path / "cids.csv", listed)
    config = {"manifest": {"path": str(tmp_path / "cids.csv")}, "ipfs_alternate": alternate}
    res = extend(stage, "dgeo", config, validate_options=_options())
    assert res.schema_url == PGSTAC_URL
    assert res.edit.changed == len(listed)
    assert res.validation is not None and res.validation.invalid == 0 and res.validation.checked == len(listed)
    left = n - len(listed)
    assert (res.not_extended.get("CIDs from a manifest", (0, ""))[0]) == left
    got = _items(stage)
    for it in items:
        assert _plain(got[it["id"]]) == _dgeo_oracle(it, cids, PGSTAC_URL, alternate)
    again = extend(stage, "dgeo", config, validate_options=_options())
    assert (again.edit.selected, again.edit.changed, again.edit.files_rewritten) == (0, 0, 0)
    assert again.up_to_date  # same manifest bytes, same data files: known without a join
    assert _items(stage) == got
    # another edit moves the data files: the next run joins again, and still finds nothing to do
    update(stage, [Op("set", ("properties", "platform"), expr="'x'")], where=f"id = '{items[0]['id']}'")
    third = extend(stage, "dgeo", config, validate=False)
    assert not third.up_to_date and third.edit.changed == 0


def test_the_main_variant_with_piece_cids_and_a_profile(tmp_path: Path) -> None:
    items = _sample(6)
    stage = _stage(tmp_path, items)
    first = next(iter(items[0]["assets"].values()))["href"]
    piece = "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"
    rows = [(a["href"], _fake_cid(a["href"]), piece if a["href"] == first else "") for a in items[0]["assets"].values()]
    rows += [(a["href"], _fake_cid(a["href"]), "") for a in items[1]["assets"].values()]
    with (tmp_path / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("location", "root", "piece"), *rows])
    config = {
        "variant": "main",
        "manifest": {
            "path": str(tmp_path / "m.csv"),
            "href": "location",
            "cid": "root",
            "piece_cid": "piece",
            "profile": "unixfs-v0-2015",
        },
    }
    res = extend(stage, "dgeo", config, validate_options=_options())
    assert res.schema_url == MAIN_URL and res.edit.changed == 2
    assert res.validation is not None and res.validation.invalid == 0
    got = _items(stage)
    a0 = got[items[0]["id"]]
    assert a0["properties"]["dgeo:piece_cids"] == [piece]
    asset = next(a for a in a0["assets"].values() if a["href"] == first)
    assert asset["dgeo:piece_cid"] == piece
    assert asset["dgeo:cid_profile"] == PROFILES["unixfs-v0-2015"].record("main")
    assert asset["dgeo:cid_profile"]["leaves"] == "dag-pb"
    assert "dgeo:piece_cids" not in got[items[1]["id"]]["properties"]  # none known: no field, not null or []


# -- CIDs from bytes, through the extension ---------------------------------------------------------------------------
@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:  # a client hanging up is not an error
            pass

    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = Quiet(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_cids_computed_from_local_and_http_assets(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    data = _files(tmp_path, [0, 1, 2_500_000])
    (served / "remote.bin").write_bytes(data[2].read_bytes()[:1_234_567])
    items = []
    for i in range(3):
        it = item(f"i{i}")
        it["assets"] = {
            "empty": {"href": str(data[0])},
            "one": {"href": f"file://{data[1]}"},
            "big": {"href": str(data[2]), "roles": ["data"]},
            "remote": {"href": f"{url}/remote.bin", "roles": ["data"]},
            "missing": {"href": f"{url}/not-there.bin"},
            "relative": {"href": "./x.tif"},
        }
        it["links"] = [{"rel": "collection", "href": "https://example.com/c1.json"}]  # valid STAC, as in real items
        items.append(it)
    stage = _stage(tmp_path, items)
    res = extend(
        stage, "dgeo", {"compute": {"profile": "unixfs-v0-2015", "concurrency": 3}}, validate_options=_options()
    )
    assert res.edit.changed == 3 and res.validation is not None and res.validation.invalid == 0
    assert set(res.problems) == {f"{url}/not-there.bin", "./x.tif"}
    p = PROFILES["unixfs-v0-2015"]
    want = {
        "empty": cid_of_bytes(b"", p),
        "one": cid_of_bytes(data[1].read_bytes(), p),
        "big": cid_of_bytes(data[2].read_bytes(), p),
        "remote": cid_of_bytes((served / "remote.bin").read_bytes(), p),
    }
    oracle = _oracle({"profile": "unixfs-v0-2015"}, [data[0], data[1], data[2], served / "remote.bin"])
    assert list(want.values()) == oracle
    for doc in _items(stage).values():
        assert {k: a.get("dgeo:cid") for k, a in doc["assets"].items()} == {**want, "missing": None, "relative": None}
        assert doc["properties"]["dgeo:cids"] == list(want.values())
        assert doc["assets"]["big"]["dgeo:cid_profile"] == p.record("pgstac-variant")
    again = extend(stage, "dgeo", {"compute": {"profile": "unixfs-v0-2015"}}, validate_options=_options())
    assert again.edit.changed == 0 and again.edit.files_rewritten == 0


def test_compute_by_roles_and_cli_reports_unreadable_assets(tmp_path: Path) -> None:
    data = _files(tmp_path, [10, 20])
    it = item("a")
    it["assets"] = {
        "data": {"href": str(data[0]), "roles": ["data"]},
        "thumb": {"href": str(data[1]), "roles": ["thumbnail"]},
        "gone": {"href": str(tmp_path / "gone.tif"), "roles": ["data"]},
    }
    stage = _stage(tmp_path, [it])
    cfg = tmp_path / "dgeo.yaml"
    cfg.write_text("compute:\n  roles: [data]\n")
    r = cli("extend", "--stage", stage, "-e", "dgeo", "--config", str(cfg), "--no-validate")
    assert r.returncode == 3, r.stderr
    assert "gone.tif: FileNotFoundError" in r.stderr and "Traceback" not in r.stderr
    doc = _items(stage)["a"]
    assert "dgeo:cid" in doc["assets"]["data"] and "dgeo:cid" not in doc["assets"]["thumb"]


# -- bad input ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        ([("href", "cid"), ("a", "Qmnotacid")], "m.csv:2: cid: 'Qmnotacid' is not an IPFS CID"),
        ([("href", "c"), ("a", "x")], "no 'cid' column"),
        ([("href", "cid"), ("", "x")], "m.csv:2: href: empty"),
        (
            [("href", "cid"), ("a", _fake_cid("a")), ("b", _fake_cid("b")), ("a", _fake_cid("c"))],
            "m.csv:4: href 'a' has CID",
        ),
    ],
)
def test_a_bad_manifest_is_one_line_and_changes_nothing(
    tmp_path: Path, rows: list[tuple[str, ...]], expect: str
) -> None:
    stage = _stage(tmp_path, _sample(3))
    with (tmp_path / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    (tmp_path / "dgeo.yaml").write_text("manifest:\n  path: m.csv\n")  # relative to the configuration file
    before = _items(stage)
    r = cli("extend", "--stage", stage, "-e", "dgeo", "--config", str(tmp_path / "dgeo.yaml"))
    assert r.returncode == 4, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _items(stage) == before


def test_a_config_problem_names_its_line(tmp_path: Path) -> None:
    stage = _stage(tmp_path, _sample(2))
    (tmp_path / "dgeo.yaml").write_text("variant: pgstac\nmanifest:\n  path: m.csv\n")
    r = cli("extend", "--stage", stage, "-e", "dgeo", "--config", str(tmp_path / "dgeo.yaml"))
    assert r.returncode == 4 and "dgeo.yaml:1" in r.stderr and "variant" in r.stderr, r.stderr


@pytest.mark.skipif(not SHARED_SCHEMAS.is_dir(), reason="the shared schemas are not here")
def test_output_validates_against_the_shared_dgeo_schemas(tmp_path: Path) -> None:
    items = _sample(20)
    stage = _stage(tmp_path, items)
    _manifest(tmp_path / "cids.csv", items)
    opts = Options(source=SchemaSource.from_env([str(SHARED_SCHEMAS)]))
    for variant in ("pgstac-variant", "main"):
        res = extend(
            stage,
            "dgeo",
            {"variant": variant, "manifest": {"path": str(tmp_path / "cids.csv")}, "refresh": True},
            validate_options=opts,
        )
        assert res.validation is not None and res.validation.invalid == 0, res.validation.by_rule


def _collection(cid: str, assets: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": cid,
        "description": "d",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2021-01-01T00:00:00Z", None]]}},
        "links": [],
        "assets": assets,
        **extra,
    }


def test_collection_assets_get_cids_and_the_collection_its_dgeo_cids(tmp_path: Path) -> None:
    data = _files(tmp_path, [100, 200])
    col = _collection("c1", {"readme": {"href": str(data[0])}, "thumb": {"href": str(data[1]), "roles": ["overview"]}})
    (tmp_path / "c1.json").write_text(json.dumps(col))
    it = item("a")
    it["assets"] = {"data": {"href": str(data[0])}}
    it["links"] = [{"rel": "collection", "href": "https://example.com/c1.json"}]
    stage = str(tmp_path / "stage")
    import stacbatch

    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "i.ndjson", [it])), str(tmp_path / "c1.json")])
    # a selection of items leaves the collections alone
    extend(stage, "dgeo", {"compute": {}}, where="id = 'a'", validate=False)
    assert "dgeo:cids" not in (stacbatch.open_stage(stage).collection_json("c1") or {})
    res = extend(stage, "dgeo", {"compute": {}, "ipfs_alternate": True}, validate_options=_options())
    assert res.edit.collections_changed == ["c1"]
    got = stacbatch.open_stage(stage).collection_json("c1")
    assert got is not None
    p = PROFILES["unixfs-v1-2025"]
    want = [cid_of_bytes(f.read_bytes(), p) for f in data]
    assert [got["assets"][k]["dgeo:cid"] for k in ("readme", "thumb")] == want
    assert got["dgeo:cids"] == want and PGSTAC_URL in got["stac_extensions"] and ALT in got["stac_extensions"]
    assert got["assets"]["thumb"]["alternate"]["ipfs"]["href"] == f"ipfs://{want[1]}"
    assert res.validation is not None and res.validation.invalid == 0, res.validation.by_rule
    again = extend(stage, "dgeo", {"compute": {}, "ipfs_alternate": True}, validate=False)
    assert again.edit.collections_changed == [] and again.edit.changed == 0


def test_cids_through_worker_processes(tmp_path: Path) -> None:
    """The rewrite in worker processes (each reads its file's part of the lookup) gives what it gives in-process."""
    items = _sample(300)
    cids = _manifest(tmp_path / "cids.csv", items)
    stage = _stage(tmp_path, items)
    res = extend(stage, "dgeo", {"manifest": {"path": str(tmp_path / "cids.csv")}}, workers=2, validate=False)
    assert res.edit.changed == len(items)
    got = _items(stage)
    for it in items:
        assert _plain(got[it["id"]]) == _dgeo_oracle(it, cids, PGSTAC_URL, False)


def test_a_missing_manifest_is_one_line(tmp_path: Path) -> None:
    stage = _stage(tmp_path, _sample(2))
    (tmp_path / "dgeo.yaml").write_text("manifest:\n  path: nowhere.csv\n")
    r = cli("extend", "--stage", stage, "-e", "dgeo", "--config", str(tmp_path / "dgeo.yaml"))
    assert r.returncode == 4 and "nowhere.csv: no such manifest file" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

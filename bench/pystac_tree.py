"""The pystac baseline for a static catalog tree: build Catalog -> Collections -> Items, normalize, save."""

from __future__ import annotations

import sys
import warnings

import orjson
import pystac


def main(src: str, out: str) -> None:
    warnings.simplefilter("ignore")
    cat = pystac.Catalog("bench", "pystac baseline")
    colls: dict[str, pystac.Collection] = {}
    with open(src, "rb") as f:
        for line in f:
            d = orjson.loads(line)
            cid = d.get("collection", "none")
            if cid not in colls:
                colls[cid] = pystac.Collection(
                    cid,
                    cid,
                    pystac.Extent(pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])),
                )
                cat.add_child(colls[cid])
            d["links"] = []
            colls[cid].add_item(pystac.Item.from_dict(d, migrate=False))
    cat.normalize_hrefs(out)
    cat.save(pystac.CatalogType.SELF_CONTAINED)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

-- The `items` view over the stage's data files (the manifest's list, never a folder glob, so files of an
-- unfinished or crashed write are never seen). {source} is a read_parquet(...) call or a registered table.
CREATE OR REPLACE VIEW items AS
SELECT
    collection,
    id,
    datetime,
    start_datetime,
    end_datetime,
    bbox,
    geometry,
    item -> '$.properties' AS properties,
    item -> '$.assets' AS assets,
    item -> '$.links' AS links,
    item,
    content_hash,
    stage_run,
    stage_seq
FROM {source};

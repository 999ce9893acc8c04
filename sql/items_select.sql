-- One branch of the `items` view (stage/_view.py): the core columns of a set of the stage's data files (the
-- manifest's list, never a folder glob, so files of an unfinished or crashed write are never seen), then the
-- queryable property columns those files give, each under its STAC name (branches are joined BY NAME: a column
-- another branch lacks is NULL there). The source is a read_parquet(...) call or the empty stand-in table.
-- asset_fields is the files' column of that name, or the same map read from the text for files written before it.
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
    {asset_fields} AS asset_fields,
    item -> '$.links' AS links,
    item,
    content_hash,
    stage_run,
    stage_seq{columns}
FROM {source}

-- What a load changed, for the audit log: every row this run staged ($3 = run id) in files $1 whose content differs
-- from the version it replaced in files $2 (the collections' files before the load), with the merge patch
-- between the two versions. Unchanged re-loads are not changes and are left out.
WITH new_rows AS (
    SELECT collection, id, content_hash FROM read_parquet($1, hive_partitioning = false) WHERE stage_run = $3
),
old_rows AS (
    SELECT collection, id, content_hash FROM read_parquet($2, hive_partitioning = false)
),
changed AS (
    SELECT n.collection, n.id, o.content_hash AS hash_before, n.content_hash AS hash_after
    FROM new_rows AS n
    LEFT JOIN old_rows AS o ON o.collection = n.collection AND o.id = n.id
    WHERE o.content_hash IS DISTINCT FROM n.content_hash
)
SELECT
    c.collection,
    c.id,
    c.hash_before,
    c.hash_after,
    json_merge_patch_diff(oi.item, ni.item)::VARCHAR AS patch
FROM changed AS c
LEFT JOIN (
    SELECT collection, id, item FROM read_parquet($2, hive_partitioning = false)
    WHERE (collection, id) IN (SELECT collection, id FROM changed WHERE hash_before IS NOT NULL)
) AS oi ON oi.collection = c.collection AND oi.id = c.id
LEFT JOIN (
    SELECT collection, id, item FROM read_parquet($1, hive_partitioning = false)
    WHERE stage_run = $3 AND (collection, id) IN (SELECT collection, id FROM changed WHERE hash_before IS NOT NULL)
) AS ni ON ni.collection = c.collection AND ni.id = c.id
ORDER BY c.collection, c.id;

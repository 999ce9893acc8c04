-- Compare views _a (before) and _b (after) on (collection, id) and content hash. Leaves temporary tables
-- _k (every key that differs: collection, id, kind, hash_before, hash_after, and where the row is in each side:
-- index of its file in the view's file list and row number in that file) and _counts (collection, kind, n).
-- Unchanged keys are counted, not kept: A's rows less those deleted or modified. {where} optionally restricts the
-- collections compared.
CREATE OR REPLACE TEMP TABLE _k AS
SELECT
    coalesce(a.collection, b.collection) AS collection,
    coalesce(a.id, b.id) AS id,
    CASE
        WHEN a.id IS NULL THEN 'added'
        WHEN b.id IS NULL THEN 'deleted'
        ELSE 'modified'
    END AS kind,
    a.content_hash AS hash_before,
    b.content_hash AS hash_after,
    a.__file AS a_file,
    a.__row AS a_row,
    b.__file AS b_file,
    b.__row AS b_row
FROM (SELECT collection, id, content_hash, __file, __row FROM _a {where}) AS a
FULL OUTER JOIN (SELECT collection, id, content_hash, __file, __row FROM _b {where}) AS b
    ON a.collection = b.collection AND a.id = b.id
WHERE a.id IS NULL OR b.id IS NULL OR a.content_hash <> b.content_hash;
CREATE OR REPLACE TEMP TABLE _counts AS
SELECT collection, kind, count(*) AS n FROM _k GROUP BY ALL
UNION ALL
SELECT a.collection, 'unchanged' AS kind, a.n - coalesce(k.n, 0) AS n
FROM (SELECT collection, count(*) AS n FROM _a {where} GROUP BY ALL) AS a
LEFT JOIN (SELECT collection, count(*) AS n FROM _k WHERE kind <> 'added' GROUP BY ALL) AS k USING (collection);

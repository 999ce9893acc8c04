-- Compare views _a (before) and _b (after) on (collection, id) and content hash. Leaves temporary tables
-- _counts (collection, kind, n) and _k (every key that differs: collection, id, kind, hash_before, hash_after).
-- {where} optionally restricts the collections compared.
CREATE OR REPLACE TEMP TABLE _j AS
SELECT
    coalesce(a.collection, b.collection) AS collection,
    coalesce(a.id, b.id) AS id,
    CASE
        WHEN a.id IS NULL THEN 'added'
        WHEN b.id IS NULL THEN 'deleted'
        WHEN a.content_hash <> b.content_hash THEN 'modified'
        ELSE 'unchanged'
    END AS kind,
    a.content_hash AS hash_before,
    b.content_hash AS hash_after
FROM (SELECT collection, id, content_hash FROM _a {where}) AS a
FULL OUTER JOIN (SELECT collection, id, content_hash FROM _b {where}) AS b
    ON a.collection = b.collection AND a.id = b.id;
CREATE OR REPLACE TEMP TABLE _counts AS
SELECT collection, kind, count(*) AS n FROM _j GROUP BY ALL;
CREATE OR REPLACE TEMP TABLE _k AS
SELECT * FROM _j WHERE kind <> 'unchanged';
DROP TABLE _j;

-- The change set: every key in _k with the after-row of _b (added, modified) and, for modified rows, the JSON
-- merge patch (RFC 7396) from the before-item to the after-item, whose leaves are the changed paths.
-- Item text is read only for keys in _k.
SELECT
    k.collection,
    k.id,
    k.kind,
    k.hash_before,
    k.hash_after,
    b.datetime,
    b.start_datetime,
    b.end_datetime,
    b.bbox,
    b.geometry,
    b.item,
    CASE WHEN k.kind = 'modified' THEN json_merge_patch_diff(a.item, b.item)::VARCHAR END AS patch
FROM _k AS k
LEFT JOIN (
    SELECT * FROM _b
    WHERE (collection, id) IN (SELECT collection, id FROM _k WHERE kind <> 'deleted')
) AS b ON b.collection = k.collection AND b.id = k.id
LEFT JOIN (
    SELECT collection, id, item FROM _a
    WHERE (collection, id) IN (SELECT collection, id FROM _k WHERE kind = 'modified')
) AS a ON a.collection = k.collection AND a.id = k.id
ORDER BY k.collection, k.id;

-- Property keys present per collection, with the number of items that carry each.
SELECT collection, key, count(*) AS items
FROM (SELECT collection, unnest(json_keys(item, '$.properties')) AS key FROM items)
GROUP BY collection, key
ORDER BY collection, key;

-- Rows an edit selects: per data file, the 0-based row numbers matching {predicate} (SQL over the columns of
-- the `items` view). {files} is the manifest's list of data files.
SELECT filename, list(file_row_number ORDER BY file_row_number) AS rows
FROM (
    SELECT
        *,
        item -> '$.properties' AS properties,
        item -> '$.assets' AS assets,
        item -> '$.links' AS links
    FROM read_parquet({files}, filename = true, file_row_number = true, hive_partitioning = false)
)
WHERE {predicate}
GROUP BY filename;

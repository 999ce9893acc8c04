-- Rows that lose under "last wins": for each (collection, id) seen more than once across the given files, every
-- row but the winner. Files of the current run win over older files; within the run the higher stage_seq wins.
-- $1 = list of all files to consider, $2 = list of the current run's files.
WITH rows AS (
    SELECT collection, id, stage_seq, filename, file_row_number,
           list_contains($2, filename) AS is_new
    FROM read_parquet($1, filename = true, file_row_number = true, hive_partitioning = false)
),
ranked AS (
    SELECT filename, file_row_number, is_new,
           row_number() OVER (PARTITION BY collection, id ORDER BY is_new DESC, stage_seq DESC) AS rank
    FROM rows
    WHERE (collection, id) IN (
        SELECT collection, id FROM rows GROUP BY collection, id HAVING count(*) > 1
    )
)
SELECT filename, list(file_row_number ORDER BY file_row_number) AS losers, bool_or(NOT is_new) AS old_file,
       count(*) AS n
FROM ranked
WHERE rank > 1
GROUP BY filename;

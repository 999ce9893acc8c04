-- Audit rows of a load whose every row is new to the stage, written straight to {target} (the run's audit file):
-- $1 = run id, $2 = run time, $3 = the run's data files. Same columns and types as stacbatch/stage/_audit.py.
-- Rows come in the files' order (partition, then time and id): sorting a million ids cost more than the rest.
COPY (
    SELECT
        $1::VARCHAR AS run_id,
        $2::TIMESTAMPTZ AS time,
        'insert' AS operation,
        collection,
        id,
        NULL::VARCHAR[] AS paths,
        NULL::VARCHAR AS hash_before,
        content_hash AS hash_after
    FROM read_parquet($3, hive_partitioning = false)
    WHERE stage_run = $1
) TO {target} (FORMAT parquet, COMPRESSION zstd);

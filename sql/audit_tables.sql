-- Stand-ins for the `audit` and `tombstones` views of a stage with no log yet: same columns and types as the
-- Parquet files stacbatch writes (stacbatch/stage/_audit.py).
CREATE OR REPLACE TABLE _empty_audit (
    run_id VARCHAR NOT NULL,
    time TIMESTAMPTZ NOT NULL,
    operation VARCHAR NOT NULL,
    collection VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    paths VARCHAR[],
    hash_before VARCHAR,
    hash_after VARCHAR
);
CREATE OR REPLACE TABLE _empty_tombstones (
    collection VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    content_hash VARCHAR,
    deleted TIMESTAMPTZ NOT NULL,
    run_id VARCHAR NOT NULL
);

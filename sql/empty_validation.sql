-- Stand-in for the `validation` view of a stage never validated: the columns and types of the verdict files
-- `stacbatch validate` writes (stacbatch/stage/_verdicts.py VERDICT_SCHEMA).
CREATE OR REPLACE TABLE _empty_validation (
    run_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    collection VARCHAR,
    id VARCHAR,
    valid BOOLEAN NOT NULL,
    rule VARCHAR,
    path VARCHAR,
    message VARCHAR,
    source VARCHAR
);

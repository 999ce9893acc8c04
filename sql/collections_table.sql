-- The `collections` table: one row per collection key known to the stage; `collection` is the STAC Collection
-- JSON when one was staged (NULL for keys that only items name). Rows are inserted with parameters.
CREATE OR REPLACE TABLE collections (
    id VARCHAR PRIMARY KEY,
    item_count BIGINT NOT NULL,
    partitioning VARCHAR NOT NULL,
    collection JSON
);

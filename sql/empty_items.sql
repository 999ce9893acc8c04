-- Stand-in for the data of a stage with no items yet: same columns and types as a data file.
CREATE OR REPLACE TABLE _empty_items (
    collection VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    datetime TIMESTAMPTZ,
    start_datetime TIMESTAMPTZ,
    end_datetime TIMESTAMPTZ,
    bbox STRUCT(xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE),
    geometry GEOMETRY('OGC:CRS84'),  -- as DuckDB reads the GeoParquet column of a stage file (lon/lat, OGC:CRS84)
    item JSON NOT NULL,
    content_hash VARCHAR NOT NULL,
    stage_run VARCHAR NOT NULL,
    stage_seq BIGINT NOT NULL
);

-- Which file each file_index of a read_parquet list names ({files} is the list): read from file metadata only.
SELECT DISTINCT file_index::INTEGER AS file_index, filename FROM read_parquet({files}, hive_partitioning = false);

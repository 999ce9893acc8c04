-- Rows an edit selects: per data file, the 0-based row numbers matching {predicate} (SQL over the columns of
-- the `items` view, queryable property columns included). The FROM is the items view's query with each row's
-- filename and file_row_number (stage/_view.py items_select, locate=True).
SELECT filename, list(file_row_number ORDER BY file_row_number) AS rows
FROM (
{source}
)
WHERE {predicate}
GROUP BY filename;

-- B's query columns at the places listed in _places (n, f = index of the file in B's list, r = row in that file).
-- Only these columns are read; item texts are read page by page by the caller.
SELECT p.n, b.datetime, b.start_datetime, b.end_datetime, b.bbox, b.geometry
FROM _places AS p
JOIN (
    SELECT __file, __row, datetime, start_datetime, end_datetime, bbox, geometry FROM _b
    WHERE (__file, __row) IN (SELECT f, r FROM _places)
) AS b ON b.__file = p.f AND b.__row = p.r;

-- JSON merge patch (RFC 7396) from each before-text to its after-text, paired on n (the key's position).
SELECT a.n, json_merge_patch_diff(a.t::JSON, b.t::JSON)::VARCHAR AS p
FROM _before AS a
JOIN _after AS b USING (n);

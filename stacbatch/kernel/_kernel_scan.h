/* scan_lines: NDJSON block -> stage columns as raw Arrow buffers. Included by _kernel.c (one translation unit).
 *
 * A line is taken here only when every column can be computed exactly as the Python path (_rows.py,
 * _geometry.py) would; otherwise its index goes back to Python. The values read here were validated by the
 * canonical pass over the line (strict mode) first, so the readers below only walk known-good JSON.
 */

/* ---------------------------------------------------------------- small readers over validated JSON */

static inline const unsigned char *ws(const unsigned char *p, const unsigned char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* After the closing quote of the string whose contents start at p (memchr finds quotes at memory speed; a quote
 * preceded by an odd run of backslashes is escaped). */
static inline const unsigned char *string_end(const unsigned char *p, const unsigned char *end) {
    const unsigned char *from = p;
    for (;;) {
        const unsigned char *q = memchr(from, '"', (size_t)(end - from));
        if (!q) return end;
        const unsigned char *b = q;
        while (b > p && b[-1] == '\\') b--;
        if (((q - b) & 1) == 0) return q + 1;
        from = q + 1;
    }
}

/* End of the (valid) value at p. */
static const unsigned char *skip(const unsigned char *p, const unsigned char *end) {
    p = ws(p, end);
    if (p >= end) return end;
    if (*p == '"') return string_end(p + 1, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            unsigned char c = *p;
            if (c == '"') {
                p = string_end(p + 1, end);
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t')
        p++;
    return p;
}

/* A string value without escapes: its bytes. 0 when the value is not such a string. */
static int plain_string(const unsigned char *p, const unsigned char *end, const unsigned char **s, size_t *n) {
    p = ws(p, end);
    if (p >= end || *p != '"') return 0;
    const unsigned char *q = p + 1;
    while (q < end && *q != '"' && *q != '\\') q++;
    if (q >= end || *q != '"') return 0;
    *s = p + 1;
    *n = (size_t)(q - p - 1);
    return 1;
}

static inline int is_null(const unsigned char *p, const unsigned char *end) {
    p = ws(p, end);
    return end - p >= 4 && !memcmp(p, "null", 4);
}

/* A number as a double, as Python's float() of what orjson returns; 0 for non-numbers and big integers. */
static int read_double(Parser *num, const unsigned char **pp, const unsigned char *end, double *d) {
    const unsigned char *p = ws(*pp, end);
    if (p >= end || !(*p == '-' || (*p >= '0' && *p <= '9'))) return 0;
    num->p = p;
    num->end = end;
    num->err = NULL;
    int kind;
    int64_t iv;
    if (lex_number(num, &kind, &iv, d)) return 0;
    if (kind == 'I') return 0;
    if (kind == 'i') *d = (double)iv;
    *pp = num->p;
    return 1;
}

/* ---------------------------------------------------------------- datetimes */

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits_at(const unsigned char *s, int n, int *v) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 1;
}

/* RFC 3339 forms: YYYY-MM-DD, or that + [Tt ]HH:MM:SS[.fraction][Z|z|+HH:MM|-HH:MM] (naive = UTC).
 * 1: *us set; 0: leave the item to Python (other forms Python's fromisoformat reads, or invalid ones). */
static int parse_rfc3339(const unsigned char *s, size_t n, int64_t *us) {
    int y, mo, d, h = 0, mi = 0, se = 0;
    int64_t frac = 0;
    int off = 0;
    if (n < 10 || !digits_at(s, 4, &y) || s[4] != '-' || !digits_at(s + 5, 2, &mo) || s[7] != '-' ||
        !digits_at(s + 8, 2, &d))
        return 0;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || mo < 1 || mo > 12 || d < 1) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) return 0;
    if (n > 10) {
        if (n < 19 || !(s[10] == 'T' || s[10] == 't' || s[10] == ' ') || !digits_at(s + 11, 2, &h) ||
            s[13] != ':' || !digits_at(s + 14, 2, &mi) || s[16] != ':' || !digits_at(s + 17, 2, &se))
            return 0;
        if (h > 23 || mi > 59 || se > 59) return 0;
        size_t i = 19;
        if (i < n && s[i] == '.') {
            i++;
            size_t start = i;
            int kept = 0;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                if (kept < 6) {
                    frac = frac * 10 + (s[i] - '0');
                    kept++;
                }
                i++;
            }
            if (i == start) return 0;
            for (; kept < 6; kept++) frac *= 10;
        }
        if (i < n) {
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
                i++;
            } else if ((s[i] == '+' || s[i] == '-') && n - i == 6 && s[i + 3] == ':') {
                int oh, om;
                if (!digits_at(s + i + 1, 2, &oh) || !digits_at(s + i + 4, 2, &om) || oh > 23 || om > 59) return 0;
                off = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
                i = n;
            } else {
                return 0;
            }
        }
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - (int64_t)off * 60;
    *us = secs * 1000000 + frac;
    return 1;
}

/* ---------------------------------------------------------------- GeoJSON -> ISO WKB */

typedef struct {
    Buf *w;
    Parser *num;
    double b[4]; /* xmin ymin xmax ymax */
    /* the last array written by each(): its count and where the count is; a run's first and last positions */
    uint32_t count;
    size_t count_at;
    int started;
    double first[3], last[3];
} Geo;

static int wkb_head(Buf *w, uint32_t code) { return buf_byte(w, 1) || buf_u32(w, code); }

/* Dimension as _geometry._dim_of: follow first elements `depth` times; 3 when that position has more than 2. */
static int peek_dim(const unsigned char *p, const unsigned char *end, int depth) {
    for (int i = 0; i <= depth; i++) {
        p = ws(p, end);
        if (p >= end || *p != '[') return 2;
        p = ws(p + 1, end);
        if (p < end && *p == ']') return 2;
    }
    /* p: the first number of the position; count its elements */
    int count = 1;
    for (;;) {
        p = skip(p, end);
        p = ws(p, end);
        if (p >= end || *p != ',') break;
        count++;
        p++;
    }
    return count > 2 ? 3 : 2;
}

/* One position of exactly dim numbers at *pp. */
static int position(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, double *v) {
    const unsigned char *p = ws(*pp, end);
    if (p >= end || *p != '[') return 0;
    p++;
    for (int i = 0; i < dim; i++) {
        if (i) {
            p = ws(p, end);
            if (p >= end || *p != ',') return 0;
            p++;
        }
        if (!read_double(g->num, &p, end, &v[i])) return 0;
    }
    p = ws(p, end);
    if (p >= end || *p != ']') return 0;
    *pp = p + 1;
    if (v[0] < g->b[0]) g->b[0] = v[0];
    if (v[1] < g->b[1]) g->b[1] = v[1];
    if (v[0] > g->b[2]) g->b[2] = v[0];
    if (v[1] > g->b[3]) g->b[3] = v[1];
    return 1;
}

/* An array of members, each written by fn with the given level; count first (also left in g->count). */
typedef int (*member_fn)(Geo *, const unsigned char **, const unsigned char *, int, uint32_t);

static void put_count(Geo *g, size_t at, uint32_t n) {
    unsigned char *c = (unsigned char *)g->w->p + at;
    c[0] = (unsigned char)n, c[1] = (unsigned char)(n >> 8), c[2] = (unsigned char)(n >> 16), c[3] = (unsigned char)(n >> 24);
}

static int each(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code, member_fn fn) {
    const unsigned char *p = ws(*pp, end);
    if (p >= end || *p != '[') return 0;
    p = ws(p + 1, end);
    size_t at = g->w->len;
    if (buf_u32(g->w, 0)) return 0;
    uint32_t n = 0;
    if (*p == ']') {
        p++;
    } else {
        for (;;) {
            if (!fn(g, &p, end, dim, code)) return 0;
            n++;
            p = ws(p, end);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == ']') {
                p++;
                break;
            }
            return 0;
        }
    }
    put_count(g, at, n);
    g->count = n;
    g->count_at = at;
    *pp = p;
    return 1;
}

/* One position of a run: written, and remembered as the run's first and last. */
static int m_vertex(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code) {
    double v[3] = {0, 0, 0};
    if (!position(g, pp, end, dim, v)) return 0;
    for (int i = 0; i < dim; i++)
        if (buf_f64(g->w, v[i])) return 0;
    if (!g->started) memcpy(g->first, v, sizeof v), g->started = 1;
    memcpy(g->last, v, sizeof v);
    return 1;
}

/* An array of positions: count then coordinates; close: repeat the first position when the last differs. */
static int positions(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, int close) {
    g->started = 0;
    if (!each(g, pp, end, dim, 0, m_vertex)) return 0;
    if (close && g->count > 0) {
        int same = 1;
        for (int i = 0; i < dim; i++) same &= g->first[i] == g->last[i];
        if (!same) {
            for (int i = 0; i < dim; i++)
                if (buf_f64(g->w, g->first[i])) return 0;
            put_count(g, g->count_at, g->count + 1);
        }
    }
    return 1;
}

static int ring(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code) {
    (void)code;
    return positions(g, pp, end, dim, 1);
}

static int m_point(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code) {
    double v[3];
    if (wkb_head(g->w, code) || !position(g, pp, end, dim, v)) return 0;
    for (int i = 0; i < dim; i++)
        if (buf_f64(g->w, v[i])) return 0;
    return 1;
}

static int m_line(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code) {
    return !wkb_head(g->w, code) && positions(g, pp, end, dim, 0);
}

static int m_polygon(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code) {
    return !wkb_head(g->w, code) && each(g, pp, end, dim, 0, ring);
}

static int geometry(Geo *g, const unsigned char *p, const unsigned char *end, int depth);

static int m_geometry(Geo *g, const unsigned char **pp, const unsigned char *end, int dim, uint32_t code) {
    (void)dim, (void)code;
    const unsigned char *s = ws(*pp, end), *e = skip(s, end);
    if (!geometry(g, s, e, 1)) return 0;
    *pp = e;
    return 1;
}

/* A geometry object spanning [p, end). 0: leave it to Python (including every error). */
static int geometry(Geo *g, const unsigned char *p, const unsigned char *end, int depth) {
    if (depth > 32) return 0;
    p = ws(p, end);
    if (p >= end || *p != '{') return 0;
    const unsigned char *type = NULL, *coords = NULL, *members = NULL;
    size_t tlen = 0;
    p = ws(p + 1, end);
    if (p < end && *p == '}') return 0;
    for (;;) {
        const unsigned char *k;
        size_t kl;
        if (!plain_string(p, end, &k, &kl)) return 0;
        p = ws(k + kl + 1, end);
        if (p >= end || *p != ':') return 0;
        const unsigned char *v = ws(p + 1, end);
        p = skip(v, end);
        if (kl == 4 && !memcmp(k, "type", 4)) {
            if (!plain_string(v, end, &type, &tlen)) return 0;
        } else if (kl == 11 && !memcmp(k, "coordinates", 11)) {
            coords = v;
        } else if (kl == 10 && !memcmp(k, "geometries", 10)) {
            members = v;
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        break;
    }
    if (!type) return 0;
#define T(lit) (tlen == sizeof(lit) - 1 && !memcmp(type, lit, tlen))
    if (T("GeometryCollection")) {
        if (!members) return 0;
        return !wkb_head(g->w, 7) && each(g, &members, end, 0, 0, m_geometry);
    }
    if (!coords) return 0;
    int code, depthc;
    if (T("Point")) code = 1, depthc = 0;
    else if (T("LineString")) code = 2, depthc = 1;
    else if (T("Polygon")) code = 3, depthc = 2;
    else if (T("MultiPoint")) code = 4, depthc = 1;
    else if (T("MultiLineString")) code = 5, depthc = 2;
    else if (T("MultiPolygon")) code = 6, depthc = 3;
    else return 0;
#undef T
    int dim = peek_dim(coords, end, depthc);
    uint32_t z = dim == 3 ? 1000 : 0;
    if (wkb_head(g->w, (uint32_t)code + z)) return 0;
    const unsigned char *c = coords;
    double v[3];
    switch (code) {
        case 1: {
            const unsigned char *q = ws(c, end);
            if (end - q >= 2 && q[0] == '[' && *ws(q + 1, end) == ']') return 0; /* empty point: Python */
            if (!position(g, &c, end, dim, v)) return 0;
            for (int i = 0; i < dim; i++)
                if (buf_f64(g->w, v[i])) return 0;
            return 1;
        }
        case 2: return positions(g, &c, end, dim, 0);
        case 3: return each(g, &c, end, dim, 0, ring);
        case 4: return each(g, &c, end, dim, 1 + z, m_point);
        case 5: return each(g, &c, end, dim, 2 + z, m_line);
        default: return each(g, &c, end, dim, 3 + z, m_polygon);
    }
}

/* ---------------------------------------------------------------- the block scanner */

typedef struct {
    Buf coll_off, coll, id_off, id, ts, ts_valid, box, box_valid, geom_off, geom, geom_valid, item_off, item,
        canon_off, canon, line, fallback;
} Out;

#define OUT_BUFS 17

static int put_off(Buf *off, size_t v) {
    if (v > 0x7FFFFFFF) return -1;
    return buf_u32(off, (uint32_t)v);
}

/* The bbox as _rows._own_bbox reads it: 4 or 6 numbers. 1 usable, 0 not usable, -1 leave to Python. */
static int own_bbox(Parser *num, const unsigned char *p, const unsigned char *end, double *box) {
    p = ws(p, end);
    if (p >= end || *p != '[') return 0;
    double v[6];
    int n = 0;
    p = ws(p + 1, end);
    if (*p == ']') return 0;
    for (;;) {
        p = ws(p, end);
        if (n == 6) return 0;
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            const unsigned char *q = p;
            if (!read_double(num, &q, end, &v[n])) return -1; /* a big integer */
            p = q;
        } else {
            return -1; /* not a number: Python decides (it ignores the z of a 6-number bbox) */
        }
        n++;
        p = ws(p, end);
        if (*p == ',') {
            p++;
            continue;
        }
        break;
    }
    if (n == 4) box[0] = v[0], box[1] = v[1], box[2] = v[2], box[3] = v[3];
    else if (n == 6) box[0] = v[0], box[1] = v[1], box[2] = v[3], box[3] = v[4];
    else return 0;
    return 1;
}

/* One line: 1 taken (rows appended to out), 0 leave it to Python. Rows are appended only when the whole line
 * succeeds: the lengths of every buffer are saved and restored on the way out otherwise. */
static int scan_line(Parser *ps, Parser *num, Out *o, const unsigned char *s, const unsigned char *e,
                     const char *dflt, size_t dflt_len, size_t row) {
    if (canonicalise(ps, s, e, 1)) return 0;
    if (ps->out.p[0] != '{') return 0;
    const unsigned char **fs = ps->f_start, **fe = ps->f_end;
    const unsigned char *id, *coll;
    size_t id_len, coll_len;
    if (!fs[F_ID] || !plain_string(fs[F_ID], fe[F_ID], &id, &id_len) || id_len == 0) return 0;
    if (!fs[F_COLLECTION] || is_null(fs[F_COLLECTION], fe[F_COLLECTION])) {
        coll = (const unsigned char *)dflt, coll_len = dflt_len;
    } else if (!plain_string(fs[F_COLLECTION], fe[F_COLLECTION], &coll, &coll_len) || coll_len == 0 ||
               (coll_len == dflt_len && !memcmp(coll, dflt, dflt_len))) {
        return 0; /* the default's own name given literally: Python refuses it (the keys would collide) */
    }
    int64_t ts[3] = {0, 0, 0};
    unsigned char tv[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        int f = F_DATETIME + k;
        const unsigned char *t;
        size_t tl;
        if (!fs[f] || !plain_string(fs[f], fe[f], &t, &tl)) {
            if (fs[f] && *ws(fs[f], fe[f]) == '"') return 0; /* a string with escapes */
            continue;
        }
        if (tl < 10) continue; /* Python: too short to be a date */
        if (!parse_rfc3339(t, tl, &ts[k])) return 0;
        tv[k] = 1;
    }
    double box[4] = {0, 0, 0, 0};
    int has_box = 0;
    if (fs[F_BBOX]) {
        has_box = own_bbox(num, fs[F_BBOX], fe[F_BBOX], box);
        if (has_box < 0) return 0;
    }
    size_t mark[OUT_BUFS];
    Buf *bufs = (Buf *)o;
    for (int i = 0; i < OUT_BUFS; i++) mark[i] = bufs[i].len;
    int has_geom = fs[F_GEOMETRY] && !is_null(fs[F_GEOMETRY], fe[F_GEOMETRY]);
    if (has_geom) {
        Geo g = {&o->geom, num, {INFINITY, INFINITY, -INFINITY, -INFINITY}, 0, 0, 0, {0}, {0}};
        if (!geometry(&g, fs[F_GEOMETRY], fe[F_GEOMETRY], 0)) goto undo;
        if (!has_box && g.b[0] != INFINITY) {
            memcpy(box, g.b, sizeof box);
            has_box = 1;
        }
    }
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
    int64_t line = (int64_t)row;
    if (buf_put(&o->coll, coll, coll_len) || put_off(&o->coll_off, o->coll.len) || buf_put(&o->id, id, id_len) ||
        put_off(&o->id_off, o->id.len) || buf_put(&o->ts, ts, sizeof ts) || buf_put(&o->ts_valid, tv, 3) ||
        buf_put(&o->box, box, sizeof box) || buf_byte(&o->box_valid, (char)has_box) ||
        put_off(&o->geom_off, o->geom.len) || buf_byte(&o->geom_valid, (char)has_geom) ||
        buf_put(&o->item, s, (size_t)(e - s)) || put_off(&o->item_off, o->item.len) ||
        buf_put(&o->canon, ps->out.p, ps->out.len) || put_off(&o->canon_off, o->canon.len) ||
        buf_put(&o->line, &line, 8))
        goto undo;
    return 1;
undo:
    for (int i = 0; i < OUT_BUFS; i++) bufs[i].len = mark[i];
    return 0;
}

static PyObject *py_scan_lines(PyObject *self, PyObject *args) {
    Py_buffer view;
    const char *dflt;
    Py_ssize_t dflt_len;
    if (!PyArg_ParseTuple(args, "y*s#", &view, &dflt, &dflt_len)) return NULL;
    Parser ps = {0}, num = {0};
    ps.strict = num.strict = 1;
    Out o;
    memset(&o, 0, sizeof o);
    Buf *bufs = (Buf *)&o;
    /* Sized for the block up front: growing by doubling copied the largest buffers several times. Untouched
     * capacity costs no memory (pages are mapped on first write) and is trimmed before the hand-off. */
    size_t n = (size_t)view.len;
    int err = buf_reserve(&o.item, n + 1) || buf_reserve(&o.canon, n + n / 2 + 1) || buf_reserve(&o.geom, n / 2 + 1) ||
              put_off(&o.coll_off, 0) || put_off(&o.id_off, 0) || put_off(&o.geom_off, 0) ||
              put_off(&o.item_off, 0) || put_off(&o.canon_off, 0);
    const unsigned char *s = view.buf, *end = s + view.len;
    size_t row = 0, taken = 0;
    /* Pure C from here to the hand-off: other threads (the API fetcher's event loop) run meanwhile. */
    Py_BEGIN_ALLOW_THREADS
    while (!err && s < end) {
        const unsigned char *e = memchr(s, '\n', (size_t)(end - s));
        if (!e) e = end;
        const unsigned char *q = ws(s, e);
        if (q < e) { /* not a blank line */
            if (scan_line(&ps, &num, &o, s, e, dflt, (size_t)dflt_len, row)) {
                taken++;
            } else {
                int64_t rec[3] = {(int64_t)row, (int64_t)(s - (const unsigned char *)view.buf),
                                  (int64_t)(e - (const unsigned char *)view.buf)};
                err = buf_put(&o.fallback, rec, sizeof rec);
            }
        }
        row++;
        s = e + 1;
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (err) {
        PyErr_NoMemory();
    } else {
        res = PyTuple_New(OUT_BUFS + 2);
        if (res) {
            PyTuple_SET_ITEM(res, 0, PyLong_FromSize_t(taken));
            PyTuple_SET_ITEM(res, OUT_BUFS + 1, PyLong_FromSize_t(row));
            for (int i = 0; i < OUT_BUFS; i++) {
                PyObject *b = buf_to_block(&bufs[i]);
                if (!b) {
                    Py_CLEAR(res);
                    break;
                }
                PyTuple_SET_ITEM(res, i + 1, b);
            }
        }
    }
    for (int i = 0; i < OUT_BUFS; i++) buf_free(&bufs[i]);
    parser_free(&ps);
    parser_free(&num);
    PyBuffer_Release(&view);
    return res;
}

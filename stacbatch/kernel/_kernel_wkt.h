/* WKT -> GeoJSON text, ISO WKB and 2-D bounds, for mappings (mapping/_geom.py), one column at a time.
 *
 * Included by _kernel.c (uses Buf and Block). Written to give what shapely gives (GEOS reads the WKT, writes
 * GeoJSON numbers as Python's repr does, ISO WKB, the shell's envelope): the common cases only. Numbers are
 * written as the source wrote them, less redundant zeros: the shortest text of the same double (GEOS now and then
 * writes 17 digits for it). A row this code does not take
 * (EMPTY, M coordinates, numbers with an exponent, a leading '+' or '.', more than 15 significant digits, below
 * 1e-4 or not below 1e15, or anything malformed) is marked for the caller's shapely path, which is also what
 * words a failure. Coordinates are parsed exactly: at most 15 digits over a power of ten up to 10^22 (both exact
 * doubles), so one IEEE division rounds correctly.
 */

typedef struct {
    const unsigned char *p, *end;
    Buf *json, *wkb, *canon; /* canon: the GeoJSON's canonical stream (keys in byte order), for its content hash */
    double box[4];
    int dims; /* 2 or 3, fixed by the first coordinate unless given (Z) */
    int hole; /* coordinates of a polygon's inner ring: not in the bounds (GEOS takes the shell's envelope) */
    uint32_t nth; /* position of the list item being read (wkt_list) */
    int bad;
} Wkt;

static const double POW10_22[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline void wkt_ws(Wkt *w) {
    while (w->p < w->end && (*w->p == ' ' || *w->p == '\t' || *w->p == '\n' || *w->p == '\r')) w->p++;
}

static inline int wkt_char(Wkt *w, unsigned char c) {
    wkt_ws(w);
    if (w->p < w->end && *w->p == c) {
        w->p++;
        return 1;
    }
    return 0;
}

/* One number: written to json as Python's repr would write the double, its value returned. */
static double wkt_number(Wkt *w) {
    wkt_ws(w);
    const unsigned char *s = w->p, *e = w->end;
    int neg = 0;
    if (s < e && *s == '-') neg = 1, s++;
    const unsigned char *ip = s;
    while (s < e && *s >= '0' && *s <= '9') s++;
    const unsigned char *ie = s, *fp = s, *fe = s;
    if (s < e && *s == '.') {
        fp = ++s;
        while (s < e && *s >= '0' && *s <= '9') s++;
        fe = s;
        if (fe == fp) w->bad = 1; /* "1." */
    }
    if (ie == ip || (s < e && ((*s | 0x20) == 'e' || *s == '.'))) w->bad = 1; /* ".5", exponents: shapely's */
    while (ip < ie - 1 && *ip == '0') ip++;                                      /* leading zeros */
    while (fe > fp && fe[-1] == '0') fe--;                                      /* trailing zeros */
    int int_zero = ie - ip == 1 && *ip == '0';
    const unsigned char *sig = int_zero ? fp : ip; /* first significant digit */
    if (int_zero)
        while (sig < fe && *sig == '0') sig++;
    size_t ndig = (int_zero ? 0 : (size_t)(ie - ip)) + (size_t)(fe - fp) - (int_zero ? (size_t)(sig - fp) : 0);
    if (ie - ip > 15 || ndig > 15 || fe - fp > 22 || (int_zero && sig < fe && sig - fp >= 4)) w->bad = 1;
    if (w->bad) return 0;
    uint64_t m = 0;
    for (const unsigned char *q = ip; q < ie; q++) m = m * 10 + (uint64_t)(*q - '0');
    for (const unsigned char *q = fp; q < fe; q++) m = m * 10 + (uint64_t)(*q - '0');
    double v = (double)m / POW10_22[fe - fp];
    if (neg) v = -v;
    int err = (neg && buf_byte(w->json, '-')) || buf_put(w->json, ip, (size_t)(ie - ip)) || buf_byte(w->json, '.');
    err = err || (fe > fp ? buf_put(w->json, fp, (size_t)(fe - fp)) : buf_byte(w->json, '0'));
    if (err) w->bad = 1;
    w->p = s;
    return v;
}

static void wkt_coord(Wkt *w) {
    double c[3];
    int n = 0;
    if (buf_byte(w->json, '[')) w->bad = 1;
    for (; n < 3 && !w->bad; n++) {
        wkt_ws(w);
        if (w->p >= w->end || !((*w->p >= '0' && *w->p <= '9') || *w->p == '-' || *w->p == '.' || *w->p == '+')) break;
        if (n && buf_byte(w->json, ',')) w->bad = 1;
        c[n] = wkt_number(w);
    }
    if (w->bad) return;
    wkt_ws(w);
    if (n < 2 || (w->p < w->end && ((*w->p >= '0' && *w->p <= '9') || *w->p == '-'))) { /* one or 4 numbers */
        w->bad = 1;
        return;
    }
    if (!w->dims) w->dims = n;
    if (n != w->dims || buf_byte(w->json, ']')) {
        w->bad = 1;
        return;
    }
    int err = buf_byte(w->canon, '[');
    for (int k = 0; k < n; k++) err = err || buf_f64(w->wkb, c[k]) || put_double(w->canon, c[k]);
    if (err || buf_byte(w->canon, ']')) w->bad = 1;
    if (w->hole) return;
    if (c[0] < w->box[0]) w->box[0] = c[0];
    if (c[1] < w->box[1]) w->box[1] = c[1];
    if (c[0] > w->box[2]) w->box[2] = c[0];
    if (c[1] > w->box[3]) w->box[3] = c[1];
}

/* '(' item, item, ... ')': a GeoJSON array of the items, their count in the WKB before them. `w->nth` holds the
 * item's position when `item` starts. Returns the count (0 when bad). */
typedef void (*WktItem)(Wkt *w, int arg);

static uint32_t wkt_list(Wkt *w, WktItem item, int arg) {
    if (!wkt_char(w, '(') || buf_byte(w->json, '[') || buf_byte(w->canon, '[')) {
        w->bad = 1;
        return 0;
    }
    size_t at = w->wkb->len;
    uint32_t n = 0;
    if (buf_u32(w->wkb, 0)) w->bad = 1;
    do {
        if (n && buf_byte(w->json, ',')) w->bad = 1;
        w->nth = n++;
        item(w, arg);
    } while (!w->bad && wkt_char(w, ','));
    if (w->bad || !wkt_char(w, ')') || buf_byte(w->json, ']') || buf_byte(w->canon, ']')) {
        w->bad = 1;
        return 0;
    }
    memcpy(w->wkb->p + at, &n, 4);
    return n;
}

static void item_coord(Wkt *w, int arg) {
    (void)arg;
    wkt_coord(w);
}

/* A line (min_points 2) or a ring (4: closed in x and y, as GEOS wants; an inner ring is a hole for the bounds) */
static void item_points(Wkt *w, int min_points) {
    w->hole = min_points == 4 && w->nth > 0;
    size_t at = w->wkb->len;
    uint32_t n = wkt_list(w, item_coord, 0);
    w->hole = 0;
    if (w->bad || n < (uint32_t)min_points) {
        w->bad = 1;
        return;
    }
    if (min_points == 4 && memcmp(w->wkb->p + at + 4, w->wkb->p + w->wkb->len - 8 * (size_t)w->dims, 16)) w->bad = 1;
}

static void wkt_head(Wkt *w, uint32_t type) {
    if (wkb_head(w->wkb, type)) w->bad = 1; /* _kernel_scan.h: little-endian byte, then the type code */
}

static void item_polygon(Wkt *w, int with_head) {
    if (with_head) wkt_head(w, 3);
    wkt_list(w, item_points, 4);
}

static void item_line(Wkt *w, int arg) {
    (void)arg;
    wkt_head(w, 2);
    item_points(w, 2);
}

static void item_point(Wkt *w, int arg) { /* MULTIPOINT (1 2, 3 4) or ((1 2), (3 4)) */
    (void)arg;
    wkt_head(w, 1);
    int wrapped = wkt_char(w, '(');
    wkt_coord(w);
    if (wrapped && !wkt_char(w, ')')) w->bad = 1;
}

static void wkt_geometry(Wkt *w, int depth);

static void item_geometry(Wkt *w, int depth) { wkt_geometry(w, depth); }

static const char *const WKT_TAGS[] = {"POINT",      "LINESTRING",      "POLYGON",           "MULTIPOINT",
                                       "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"};
static const char *const GEOJSON_TYPES[] = {"Point",      "LineString",      "Polygon",           "MultiPoint",
                                            "MultiLineString", "MultiPolygon", "GeometryCollection"};

static int wkt_word(Wkt *w, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(w->end - w->p) < n) return 0;
    for (size_t i = 0; i < n; i++)
        if ((w->p[i] & 0xDF) != (unsigned char)word[i]) return 0;
    if ((size_t)(w->end - w->p) > n && ((w->p[n] | 0x20) >= 'a' && (w->p[n] | 0x20) <= 'z')) return 0;
    w->p += n;
    return 1;
}

static void wkt_geometry(Wkt *w, int depth) {
    wkt_ws(w);
    int t = -1;
    /* longest tags first where one is a prefix of another */
    static const int order[] = {6, 5, 4, 3, 2, 1, 0};
    for (int k = 0; k < 7 && t < 0; k++)
        if (wkt_word(w, WKT_TAGS[order[k]])) t = order[k];
    if (t < 0 || depth > 16) {
        w->bad = 1;
        return;
    }
    wkt_ws(w);
    if (wkt_word(w, "Z")) {
        if (w->dims && w->dims != 3) w->bad = 1;
        w->dims = 3;
    } else if (wkt_word(w, "ZM") || wkt_word(w, "M") || wkt_word(w, "EMPTY")) {
        w->bad = 1; /* shapely's: M coordinates, empty geometries */
    }
    if (w->bad) return;
    const char *type = GEOJSON_TYPES[t];
    /* canonical: {"coordinates" | "geometries" ... "type" ...}, the keys in byte order */
    const char *key = t == 6 ? "geometries" : "coordinates";
    if (buf_put(w->json, "{\"type\":\"", 9) || buf_put(w->json, type, strlen(type)) ||
        buf_put(w->json, t == 6 ? "\",\"geometries\":" : "\",\"coordinates\":", t == 6 ? 15 : 16) ||
        buf_byte(w->canon, '{') || buf_byte(w->canon, 's') || buf_u32(w->canon, (uint32_t)strlen(key)) ||
        buf_put(w->canon, key, strlen(key))) {
        w->bad = 1;
        return;
    }
    /* WKB header: little endian; the type code gets +1000 for Z once the dimension is known (wkb_mark_z) */
    if (buf_byte(w->wkb, 1) || buf_u32(w->wkb, (uint32_t)t + 1)) {
        w->bad = 1;
        return;
    }
    switch (t) {
    case 0:
        if (!wkt_char(w, '(')) {
            w->bad = 1;
            break;
        }
        wkt_coord(w);
        if (!w->bad && !wkt_char(w, ')')) w->bad = 1;
        break;
    case 1:
        item_points(w, 2);
        break;
    case 2:
        item_polygon(w, 0);
        break;
    case 3:
        wkt_list(w, item_point, 0);
        break;
    case 4:
        wkt_list(w, item_line, 0);
        break;
    case 5:
        wkt_list(w, item_polygon, 1);
        break;
    default:
        wkt_list(w, item_geometry, depth + 1);
    }
    if (w->bad || buf_byte(w->json, '}')) w->bad = 1;
    size_t tl = strlen(type);
    if (w->bad || buf_byte(w->canon, 's') || buf_u32(w->canon, 4) || buf_put(w->canon, "type", 4) ||
        buf_byte(w->canon, 's') || buf_u32(w->canon, (uint32_t)tl) || buf_put(w->canon, type, tl) ||
        buf_byte(w->canon, '}'))
        w->bad = 1;
}

/* Set the Z flag (+1000) on every WKB header of one geometry written 2-D-coded, when its coordinates were 3-D. */
static void wkb_mark_z(unsigned char *p, size_t len);

/* wkt_geometries(offsets, data) -> (ok, json offsets, json, wkb offsets, wkb, bounds, canonical offsets,
 * canonical): per text of an Arrow large_string column (int64 offsets), 1 when taken (0: leave it to shapely), its
 * GeoJSON, ISO WKB and the GeoJSON's canonical stream (empty when not taken), and xmin, ymin, xmax, ymax as
 * float64. No GIL. */
static PyObject *py_wkt_geometries(PyObject *self, PyObject *args) {
    Py_buffer offv, datav;
    if (!PyArg_ParseTuple(args, "y*y*", &offv, &datav)) return NULL;
    Py_ssize_t n = offv.len / 8 - 1;
    Buf ok = {0}, joff = {0}, json = {0}, woff = {0}, wkb = {0}, box = {0}, coff = {0}, canon = {0};
    int err = 0, range = n < 0;
    Py_BEGIN_ALLOW_THREADS
    err = range || buf_u64(&joff, 0) || buf_u64(&woff, 0) || buf_u64(&coff, 0);
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        int64_t a = load_i64(offv.buf, i), b = load_i64(offv.buf, i + 1);
        if (a < 0 || b < a || b > (int64_t)datav.len) {
            range = 1;
            break;
        }
        size_t jl = json.len, wl = wkb.len, cl = canon.len;
        Wkt w = {(const unsigned char *)datav.buf + a, (const unsigned char *)datav.buf + b, &json, &wkb, &canon,
                 {INFINITY, INFINITY, -INFINITY, -INFINITY}, 0, 0, 0, 0};
        wkt_geometry(&w, 0);
        wkt_ws(&w);
        int taken = !w.bad && w.p == w.end;
        if (taken && w.dims == 3) wkb_mark_z((unsigned char *)wkb.p + wl, wkb.len - wl);
        if (!taken) {
            json.len = jl, wkb.len = wl, canon.len = cl;
            w.box[0] = w.box[1] = w.box[2] = w.box[3] = NAN;
        }
        err = buf_byte(&ok, (char)taken) || buf_u64(&joff, json.len) || buf_u64(&woff, wkb.len) ||
              buf_u64(&coff, canon.len);
        for (int k = 0; k < 4 && !err; k++) err = buf_f64(&box, w.box[k]);
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (range) PyErr_SetString(PyExc_ValueError, n < 0 ? "offsets must hold at least one int64" : "offsets out of range");
    else if (err) PyErr_NoMemory();
    else
        res = Py_BuildValue("(NNNNNNNN)", buf_to_block(&ok), buf_to_block(&joff), buf_to_block(&json),
                            buf_to_block(&woff), buf_to_block(&wkb), buf_to_block(&box), buf_to_block(&coff),
                            buf_to_block(&canon));
    buf_free(&ok), buf_free(&joff), buf_free(&json), buf_free(&woff), buf_free(&wkb), buf_free(&box);
    buf_free(&coff), buf_free(&canon);
    PyBuffer_Release(&offv);
    PyBuffer_Release(&datav);
    return res;
}

/* Walk one ISO WKB geometry (as written above: little endian, 2-D type codes, 3 doubles a coordinate) and add
 * 1000 to each type code. Returns the bytes it spans. */
static size_t wkb_z_walk(unsigned char *p, size_t len) {
    if (len < 5) return len;
    uint32_t t;
    memcpy(&t, p + 1, 4);
    uint32_t z = t + 1000;
    memcpy(p + 1, &z, 4);
    size_t at = 5;
    uint32_t n, m;
    switch (t) {
    case 1:
        return at + 24;
    case 2:
        memcpy(&n, p + at, 4);
        return at + 4 + (size_t)n * 24;
    case 3:
        memcpy(&n, p + at, 4);
        at += 4;
        for (uint32_t k = 0; k < n; k++) {
            memcpy(&m, p + at, 4);
            at += 4 + (size_t)m * 24;
        }
        return at;
    default: /* multi and collections: a count, then whole geometries */
        memcpy(&n, p + at, 4);
        at += 4;
        for (uint32_t k = 0; k < n && at < len; k++) at += wkb_z_walk(p + at, len - at);
        return at;
    }
}

static void wkb_mark_z(unsigned char *p, size_t len) { wkb_z_walk(p, len); }

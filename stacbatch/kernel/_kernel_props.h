/* property_values: the top-level "properties" members of a column of STAC item texts, one entry per member, as flat
 * Arrow buffers (issue 19: the typed queryable columns of a stage file). Another member can be asked for
 * ("assets": an entry per asset, its object's raw text), or none: each row is the object (an asset's fields). Included by _kernel.c after
 * _kernel_scan.h (uses Buf, Block, parse_string, plain_run, ws, parse_rfc3339, POW10, MAX_DEPTH).
 *
 * Per entry: row, kind (K_* below), int64 (K_INT), double (K_INT, K_FLOAT, K_BIGINT), RFC 3339 stamp and its flag
 * (K_STRING), the decoded key, and a text: the decoded string (K_STRING), the raw JSON (K_ARRAY, K_OBJECT) or the
 * literal (K_BIGINT). Duplicate members are all listed; of duplicate "properties" the last counts.
 *
 * The texts are untrusted: each row is checked whole to orjson's rules (strict JSON, UTF-8 everywhere, no lone
 * surrogates, no number that is infinite as a double), so a row taken here is one orjson reads, and its entries
 * are what decoding it gives. A row that fails, or nests deeper than MAX_DEPTH, gets no entries and is listed in
 * `unread` for the Python path. Only strings with an escape or a non-ASCII byte go through parse_string; the rest
 * are checked sixteen bytes at a time and copied only when they are a property's key or value.
 */

#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { PV_ROWS, PV_KINDS, PV_INTS, PV_FLOATS, PV_STAMPS, PV_STAMP_OK, PV_KEY_OFF, PV_KEYS, PV_TEXT_OFF, PV_TEXT,
       PV_UNREAD, PV_BUFS };

enum { K_NULL, K_FALSE, K_TRUE, K_INT, K_FLOAT, K_BIGINT, K_STRING, K_ARRAY, K_OBJECT };

enum { PV_OOM = 1, PV_OVERFLOW = 2 };

#define PV_MAX_BUFS 17 /* the most output buffers a reader here writes (asset_fields: _kernel_assets.h) */

typedef struct {
    const unsigned char *end; /* of the row; the read position goes from call to call by value (kept in the struct,
                               * it was stored and reloaded with end as one 16-byte load: a store-forwarding stall
                               * that cost a third of the time) */
    int fatal;                /* PV_OOM or PV_OVERFLOW: the whole call fails, not only the row */
    int32_t row;
    const unsigned char *member; /* the item member whose object's members are listed ("properties", "assets") */
    size_t member_len;           /* 0: the row itself is that object (an asset's text) */
    Parser dec; /* parse_string's state; its out is scratch */
    Buf num;    /* a number's digits for strtod */
    int nout;   /* output buffers rolled back with a row (all but the last, the unread rows) */
    int assets; /* asset_fields: each member of the member's object is read by af_asset */
    int keys;   /* the output buffer of the members' keys (their offsets: the one before) */
    Buf o[PV_MAX_BUFS];
} Pv;

/* Each reader below takes the position of what it reads and returns the position after it, or NULL when the row
 * cannot be read there (v->fatal set when the whole call must fail). */

static inline const unsigned char *pv_oom(Pv *v) {
    v->fatal = PV_OOM;
    return NULL;
}

/* Offsets are int32 in Arrow's string layout: past that the caller splits the chunk. */
static inline int pv_off(Pv *v, Buf *off, size_t at) {
    if (at > INT32_MAX) {
        v->fatal = PV_OVERFLOW;
        return -1;
    }
    if (buf_u32(off, (uint32_t)at)) {
        v->fatal = PV_OOM;
        return -1;
    }
    return 0;
}

/* The string whose contents start at p, checked, its decoded bytes appended to `to` when given: escapes and
 * non-ASCII bytes (rare) through parse_string, out of line. */
__attribute__((noinline)) static const unsigned char *pv_string_slow(Pv *v, const unsigned char *p, Buf *to) {
    Parser *d = &v->dec;
    d->p = p, d->end = v->end, d->err = NULL, d->out.len = 0;
    if (parse_string(d)) {
        if (d->err && !strcmp(d->err, "out of memory")) pv_oom(v);
        return NULL;
    }
    if (to && d->out.len > 5 && buf_put(to, d->out.p + 5, d->out.len - 5)) return pv_oom(v); /* past 's', length */
    return d->p;
}

#ifdef __SSE2__
/* plain_run sixteen bytes at a time (SSE2 is in every x86-64): item texts are mostly strings. One signed
 * compare flags both control and non-ASCII bytes. */
static inline const unsigned char *pv_plain_run(const unsigned char *p, const unsigned char *end) {
    const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, slash)),
                                 _mm_cmplt_epi8(x, space));
        unsigned bits = (unsigned)_mm_movemask_epi8(m);
        if (bits) return p + __builtin_ctz(bits);
        p += 16;
    }
    return plain_run(p, end);
}
#else
#define pv_plain_run plain_run
#endif

static inline const unsigned char *pv_string(Pv *v, const unsigned char *p, Buf *to) {
    const unsigned char *q = pv_plain_run(p, v->end);
    if (q < v->end && *q == '"') { /* no escape, ASCII only: the bytes are the value */
        if (to && q > p && buf_put(to, p, (size_t)(q - p))) return pv_oom(v); /* (memcpy of 0 to NULL: UB) */
        return q + 1;
    }
    return pv_string_slow(v, p, to);
}

static inline int pv_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The end of the JSON number at p, or NULL when it is not one (the caller checks what follows it). *big: it may
 * be infinite as a double (an exponent, or 309 characters or more); below that it is finite. */
static inline const unsigned char *pv_number_end(const unsigned char *p, const unsigned char *end, int *big) {
    const unsigned char *s = p;
    if (p < end && *p == '-') p++;
    if (p >= end || !pv_is_digit(*p)) return NULL;
    if (*p++ != '0')
        while (p < end && pv_is_digit(*p)) p++;
    if (p < end && *p == '.') {
        const unsigned char *d = ++p;
        while (p < end && pv_is_digit(*p)) p++;
        if (p == d) return NULL;
    }
    *big = p - s > 308;
    if (p < end && (*p | 0x20) == 'e') {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        const unsigned char *d = p;
        while (p < end && pv_is_digit(*p)) p++;
        if (p == d) return NULL;
        *big = 1;
    }
    return p;
}

/* strtod over the digits of [s, e) (a checked JSON number) rewritten without a decimal point as digits + "e" +
 * exponent: the only locale-dependent part of strtod is the point, and lex_number's correctly rounded path takes
 * the GIL. glibc's strtod rounds correctly. -1: infinite as a double (orjson refuses it). */
static int pv_strtod(Pv *v, const unsigned char *s, const unsigned char *e, double *d) {
    Buf *b = &v->num;
    b->len = 0;
    int64_t fraclen = 0, exp10 = 0;
    int eneg = 0;
    if (buf_reserve(b, (size_t)(e - s) + 32)) {
        pv_oom(v);
        return -1;
    }
    for (const unsigned char *p = s; p < e; p++) {
        if (*p == '.') {
            for (p++; p < e && pv_is_digit(*p); p++) b->p[b->len++] = (char)*p, fraclen++;
        }
        if (p >= e) break;
        if ((*p | 0x20) == 'e') {
            p++;
            if (*p == '+' || *p == '-') eneg = *p++ == '-';
            for (; p < e; p++)
                if (exp10 < 1000000000000000LL) exp10 = exp10 * 10 + (*p - '0'); /* beyond: 0 or inf either way */
            break;
        }
        b->p[b->len++] = (char)*p;
    }
    b->len += (size_t)snprintf(b->p + b->len, 32, "e%lld", (long long)((eneg ? -exp10 : exp10) - fraclen));
    char *stop;
    *d = strtod(b->p, &stop);
    return isinf(*d) || stop != b->p + b->len ? -1 : 0;
}

/* The value of the checked number [s, e): its kind, int64 value (K_INT) and double. -1: infinite as a double. */
static int pv_number_value(Pv *v, const unsigned char *s, const unsigned char *e, int *kind, int64_t *iv,
                           double *dv) {
    const unsigned char *p = s;
    int neg = *p == '-';
    p += neg;
    const unsigned char *ip = p;
    while (p < e && pv_is_digit(*p)) p++;
    if (p == e) { /* an integer literal */
        if (p - ip <= 19) {
            uint64_t m = 0;
            for (const unsigned char *q = ip; q < p; q++) m = m * 10 + (uint64_t)(*q - '0'); /* < 10^19 < 2^64 */
            if (m <= (uint64_t)INT64_MAX + (uint64_t)neg) {
                *iv = neg ? (int64_t)(0 - m) : (int64_t)m;
                *dv = (double)*iv; /* round to nearest even, as Python's float(int) */
                *kind = K_INT;
                return 0;
            }
        }
        *kind = K_BIGINT;
        return pv_strtod(v, s, e, dv);
    }
    /* Clinger's fast path as lex_number takes it: at most 19 significant digits below 2^53, times or over an
     * exact power of ten, is one correctly rounded operation. */
    uint64_t m = 0;
    int digits = 0, dropped = 0;
    int64_t frac = 0, exp10 = 0;
    for (const unsigned char *q = ip; q < p; q++) {
        if (m == 0 && *q == '0') continue;
        if (digits < 19) m = m * 10 + (uint64_t)(*q - '0'), digits++;
        else dropped++;
    }
    if (*p == '.') {
        for (p++; p < e && pv_is_digit(*p); p++) {
            if (m == 0 && *p == '0') frac++;
            else if (digits < 19) m = m * 10 + (uint64_t)(*p - '0'), digits++, frac++;
            else dropped++;
        }
    }
    if (p < e) { /* the exponent */
        p++;
        int eneg = 0;
        if (*p == '+' || *p == '-') eneg = *p++ == '-';
        for (; p < e; p++)
            if (exp10 < 1000000000000000LL) exp10 = exp10 * 10 + (*p - '0'); /* saturates: then strtod decides */
        if (eneg) exp10 = -exp10;
    }
    *kind = K_FLOAT;
    int64_t e10 = exp10 - frac;
    if (!dropped && m < (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        double d = (double)m;
        d = e10 < 0 ? d / POW10[-e10] : d * POW10[e10];
        *dv = neg ? -d : d;
        return 0;
    }
    return pv_strtod(v, s, e, dv);
}

static const unsigned char *pv_container(Pv *v, const unsigned char *p, int depth);

/* A number that may be infinite as a double: orjson refuses the whole text for one, wherever it is. */
__attribute__((noinline)) static const unsigned char *pv_finite(Pv *v, const unsigned char *s, const unsigned char *e) {
    int kind;
    int64_t iv;
    double dv;
    return pv_number_value(v, s, e, &kind, &iv, &dv) ? NULL : e;
}

/* The value at p, checked (depth: the containers around it). Scalars inline: a call per number or string was a
 * fifth of the time. */
static inline const unsigned char *pv_skip(Pv *v, const unsigned char *p, int depth) {
    const unsigned char *end = v->end;
    if (p >= end) return NULL;
    switch (*p) {
        case '"': return pv_string(v, p + 1, NULL);
        case '{':
        case '[': return pv_container(v, p, depth + 1);
        case 't': return end - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
        case 'f': return end - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
        case 'n': return end - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
        default: {
            int big;
            const unsigned char *q = pv_number_end(p, end, &big);
            return q && big ? pv_finite(v, p, q) : q;
        }
    }
}

/* The object or array at p, at the given depth. */
__attribute__((noinline)) static const unsigned char *pv_container(Pv *v, const unsigned char *p, int depth) {
    const unsigned char *end = v->end;
    if (depth > MAX_DEPTH) return NULL;
    unsigned char c = *p, close = c == '{' ? '}' : ']';
    p = ws(p + 1, end);
    if (p < end && *p == close) return p + 1;
    for (;;) {
        if (c == '{') {
            if (p >= end || *p != '"' || !(p = pv_string(v, p + 1, NULL))) return NULL;
            p = ws(p, end);
            if (p >= end || *p != ':') return NULL;
            p = ws(p + 1, end);
        }
        if (!(p = pv_skip(v, p, depth))) return NULL;
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == close) return p + 1;
        return NULL;
    }
}

/* 1 when [p, end) is one JSON value (whitespace around it) that orjson reads, and nests at most MAX_DEPTH deep; 0
 * when not; -1 out of memory. Nothing is written: the STAC API page readers (_kernel_patch.h) take only pages the
 * Python path would decode, and patch_items only texts it would. */
static int pv_valid(const unsigned char *p, const unsigned char *end) {
    Pv v;
    memset(&v, 0, sizeof v);
    v.end = end;
    v.dec.strict = 1;
    const unsigned char *q = pv_skip(&v, ws(p, end), 0);
    int r = v.fatal ? -1 : q != NULL && ws(q, end) == end;
    buf_free(&v.num);
    parser_free(&v.dec);
    return r;
}

/* One member value of properties at s: checked, its entry written (the key is already). */
static const unsigned char *pv_entry(Pv *v, const unsigned char *s, int depth) {
    Buf *o = v->o;
    const unsigned char *p;
    int kind, big;
    int64_t iv = 0, stamp = 0;
    double dv = 0;
    unsigned char ok = 0;
    if (s >= v->end) return NULL;
    switch (*s) {
        case '"': {
            size_t at = o[PV_TEXT].len;
            if (!(p = pv_string(v, s + 1, &o[PV_TEXT]))) return NULL;
            const unsigned char *t = (const unsigned char *)o[PV_TEXT].p + at;
            size_t tl = o[PV_TEXT].len - at;
            if (tl >= 10 && t[4] == '-') ok = (unsigned char)parse_rfc3339(t, tl, &stamp);
            if (!ok) stamp = 0;
            kind = K_STRING;
            break;
        }
        case '{':
        case '[':
            if (!(p = pv_skip(v, s, depth))) return NULL;
            if (buf_put(&o[PV_TEXT], s, (size_t)(p - s))) return pv_oom(v); /* the raw text, as written */
            kind = *s == '{' ? K_OBJECT : K_ARRAY;
            break;
        case 't':
        case 'f':
        case 'n':
            if (!(p = pv_skip(v, s, depth))) return NULL;
            kind = *s == 'n' ? K_NULL : *s == 'f' ? K_FALSE : K_TRUE;
            break;
        default:
            if (!(p = pv_number_end(s, v->end, &big)) || pv_number_value(v, s, p, &kind, &iv, &dv)) return NULL;
            if (kind == K_BIGINT && buf_put(&o[PV_TEXT], s, (size_t)(p - s))) return pv_oom(v);
    }
    int32_t row = v->row;
    unsigned char k = (unsigned char)kind;
    if (buf_put(&o[PV_ROWS], &row, 4) || buf_byte(&o[PV_KINDS], (char)k) || buf_put(&o[PV_INTS], &iv, 8) ||
        buf_put(&o[PV_FLOATS], &dv, 8) || buf_put(&o[PV_STAMPS], &stamp, 8) || buf_byte(&o[PV_STAMP_OK], (char)ok))
        return pv_oom(v);
    return pv_off(v, &o[PV_TEXT_OFF], o[PV_TEXT].len) ? NULL : p;
}

static const unsigned char *af_asset(Pv *v, const unsigned char *s);

/* The properties (or assets) object at p ('{', depth 2: a member of the item): an entry per member, in document
 * order, duplicates included. */
static const unsigned char *pv_properties(Pv *v, const unsigned char *p) {
    const unsigned char *end = v->end;
    Buf *keys = &v->o[v->keys], *key_off = &v->o[v->keys - 1]; /* (both layouts: offsets just before the keys) */
    p = ws(p + 1, end);
    if (p < end && *p == '}') return p + 1;
    for (;;) {
        if (p >= end || *p != '"' || !(p = pv_string(v, p + 1, keys)) || pv_off(v, key_off, keys->len)) return NULL;
        p = ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p = ws(p + 1, end);
        if (!(p = v->assets ? af_asset(v, p) : pv_entry(v, p, 2))) return NULL;
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') return p + 1;
        return NULL;
    }
}

/* The key whose contents start at p, checked; *is_props: it is the member asked for (decoded: "propert\u0069es"
 * too). */
static const unsigned char *pv_top_key(Pv *v, const unsigned char *p, int *is_props) {
    const unsigned char *q = pv_plain_run(p, v->end);
    size_t m = v->member_len;
    if (q < v->end && *q == '"') {
        *is_props = (size_t)(q - p) == m && !memcmp(p, v->member, m);
        return q + 1;
    }
    if (!(q = pv_string(v, p, NULL))) return NULL;
    Buf *d = &v->dec.out;
    *is_props = d->len == m + 5 && !memcmp(d->p + 5, v->member, m);
    return q;
}

/* One row: 0 read (its entries written), -1 not read (the caller drops what it wrote). */
static int pv_row(Pv *v, const unsigned char *p, const unsigned char *end, const size_t *mark) {
    v->end = end;
    p = ws(p, end);
    if (!v->member_len) { /* the row is the object: an entry per member of it */
        if (p >= end || *p != '{' || !(p = pv_properties(v, p))) return -1;
        return ws(p, end) == end ? 0 : -1;
    }
    if (p < end && *p == '{') {
        p = ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
        } else {
            for (;;) {
                int is_props;
                if (p >= end || *p != '"' || !(p = pv_top_key(v, p + 1, &is_props))) return -1;
                p = ws(p, end);
                if (p >= end || *p != ':') return -1;
                p = ws(p + 1, end);
                if (is_props) {
                    /* the last "properties" wins: drop the entries of an earlier one */
                    for (int i = 0; i < v->nout; i++) v->o[i].len = mark[i];
                    p = p < end && *p == '{' ? pv_properties(v, p) : pv_skip(v, p, 1);
                } else {
                    p = pv_skip(v, p, 1);
                }
                if (!p) return -1;
                p = ws(p, end);
                if (p < end && *p == ',') {
                    p = ws(p + 1, end);
                    continue;
                }
                if (p < end && *p == '}') break;
                return -1;
            }
            p++;
        }
    } else if (!(p = pv_skip(v, p, 0))) {
        return -1;
    }
    return ws(p, end) == end ? 0 : -1;
}

/* Every row of a string column through pv_row with v set up (member, assets, nout: the unread rows' buffer; the
 * output buffers starting with an offset, in `starts`), then the output buffers as a tuple of Blocks. Frees v and
 * releases both buffers. No GIL while reading. */
static PyObject *pv_run(Pv *v, Py_buffer *offv, Py_buffer *datav, const int *starts, int nstarts, const char *name) {
    Py_ssize_t n = offv->len / 4 - 1;
    PyObject *res = NULL;
    int nbufs = v ? v->nout + 1 : 0;
    if (!v) {
        PyErr_NoMemory();
        goto done;
    }
    if (n < 0 || n > INT32_MAX) {
        PyErr_SetString(n < 0 ? PyExc_ValueError : PyExc_OverflowError,
                        n < 0 ? "offsets must hold at least one int32" : "more than 2^31 - 1 rows");
        goto done;
    }
    v->dec.strict = 1; /* orjson's rules */
    int range = 0, nout = v->nout;
    const unsigned char *d = datav->buf, *offs = offv->buf;
    Py_ssize_t dlen = datav->len;
    Py_BEGIN_ALLOW_THREADS
    Buf *o = v->o;
    for (int k = 0; k < nstarts && !v->fatal; k++) pv_off(v, &o[starts[k]], 0);
    for (Py_ssize_t i = 0; i < n && !v->fatal; i++) {
        int32_t a, b;
        memcpy(&a, offs + 4 * i, 4); /* the buffer may be unaligned (a bytes object) */
        memcpy(&b, offs + 4 * (i + 1), 4);
        if (a < 0 || b < a || (Py_ssize_t)b > dlen) {
            range = 1;
            break;
        }
        size_t mark[PV_MAX_BUFS];
        for (int k = 0; k < nout; k++) mark[k] = o[k].len;
        v->row = (int32_t)i;
        if (pv_row(v, d + a, d + b, mark)) {
            for (int k = 0; k < nout; k++) o[k].len = mark[k];
            if (!v->fatal && buf_u32(&o[nout], (uint32_t)i)) v->fatal = PV_OOM;
        }
    }
    Py_END_ALLOW_THREADS
    if (range) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
    } else if (v->fatal == PV_OVERFLOW) {
        /* A guard, not reached: every key and value written is a part of its row's text (decoded escapes only
         * shrink), rows follow one another (offsets that go back are refused above) and int32 offsets end at
         * 2^31 - 1, so the outputs hold fewer bytes than the rows read. */
        PyErr_Format(PyExc_OverflowError,
                     "%s: the keys or values of these rows pass 2^31 - 1 bytes (int32 offsets); pass fewer rows a call",
                     name);
    } else if (v->fatal) {
        PyErr_NoMemory();
    } else {
        res = PyTuple_New(nbufs);
        for (int k = 0; res && k < nbufs; k++) {
            PyObject *blk = buf_to_block(&v->o[k]);
            if (!blk) Py_CLEAR(res);
            else PyTuple_SET_ITEM(res, k, blk);
        }
    }
done:
    if (v) {
        for (int k = 0; k < PV_MAX_BUFS; k++) buf_free(&v->o[k]);
        buf_free(&v->num);
        parser_free(&v->dec);
        free(v);
    }
    PyBuffer_Release(offv);
    PyBuffer_Release(datav);
    return res;
}

/* property_values(offsets, data[, member]) -> 11 Blocks (see _kernel.pyi): offsets are an Arrow string column's
 * int32 offsets (n + 1, already sliced to the chunk), data its data buffer; member (default b"properties") names
 * the item member whose object's members are listed, b"": each row is that object itself (a row that is not an
 * object is unread). */
static PyObject *py_property_values(PyObject *self, PyObject *args) {
    Py_buffer offv, datav;
    const char *member = "properties";
    Py_ssize_t member_len = 10;
    if (!PyArg_ParseTuple(args, "y*y*|y#", &offv, &datav, &member, &member_len)) return NULL;
    Pv *v = calloc(1, sizeof(Pv));
    if (v) {
        v->member = (const unsigned char *)member, v->member_len = (size_t)member_len;
        v->nout = PV_UNREAD, v->keys = PV_KEYS;
    }
    static const int starts[] = {PV_KEY_OFF, PV_TEXT_OFF};
    return pv_run(v, &offv, &datav, starts, 2, "property_values");
}

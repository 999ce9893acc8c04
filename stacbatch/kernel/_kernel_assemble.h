/* Item texts from a compiled mapping (mapping/_assemble.py): the item's JSON text and its canonical stream, in
 * one pass over typed Arrow columns that DuckDB computed, so neither DuckDB builds the text by concatenation nor
 * the stage parses it again to hash it.
 *
 * Included by _kernel.c (uses Buf, Block, Parser and canonicalise). The item is compiled (mapping/_tree.py) into
 * two straight programs, one writing the text and one the canonical stream (keys in byte order), of 4 int64 per
 * operation: COPY (pool offset, length): constant bytes, merged across constants, keys and punctuation;
 * VALUE (column): a leaf's value, null written as null; MEMBER (column, key offset, key length): key and value,
 * nothing when the value is null (STAC leaves out null members); OPEN / CLOSE: an object whose first member may be
 * left out; VALUE_OR (column, pool offset, length): a leaf's value, the pool bytes (its default) where it is null;
 * TEMPLATE (first piece, pieces, member): a string of literal pieces and text or int64 column pieces (3 int64 each:
 * column or -1 with pool offset and length; -2: the member's key, written first), null where a column is null (a
 * member is then left out); SPLIT (column, pool offset, key length | separator length << 32): a text column's value
 * split at a separator (not empty) into an array of strings, as DuckDB's string_split; the key first (a member,
 * left out where the value is null) unless its length is 0 (a value: null). Columns are Arrow arrays as (kind, offset, validity or None, buffer, buffer or None): text (int32 or
 * int64 offsets; written as a JSON string), JSON text (copied as it is; the text "null" is null), int64, boolean,
 * microseconds since 1970 (written as RFC 3339 text), double (written as DuckDB's to_json writes it: put_json_double). A JSON text column may come with a sixth element, the
 * canonical stream of each value where it is known already (the WKT reader writes it): it is then copied, not
 * parsed from the text.
 */

enum { OP_COPY = 1, OP_VALUE, OP_MEMBER, OP_OPEN, OP_CLOSE, OP_VALUE_OR, OP_TEMPLATE, OP_SPLIT };
#define ASM_DEPTH 64
enum { C_STR32 = 1, C_STR64, C_JSON32, C_JSON64, C_I64, C_BOOL, C_TIME, C_F64 };

typedef struct {
    int kind;
    int64_t offset;
    const uint8_t *valid;
    const unsigned char *a; /* offsets or values */
    const unsigned char *b; /* string data */
    /* a JSON text column's companion: each value's canonical stream where not null (binary, int32/int64 offsets) */
    int has_canon, canon_wide;
    int64_t canon_offset;
    const uint8_t *canon_valid;
    const unsigned char *canon_offsets, *canon_data;
    Py_buffer views[6];
    int nviews;
    /* a time column's last text (row, length, text): both programs of a row write it, formatted once */
    int64_t last_row;
    size_t last_n;
    char last[40];
} AsmColumn;

typedef struct {
    const unsigned char *pool;
    int64_t npool;
    AsmColumn *cols;
    int64_t ncols;
    const int64_t *pieces; /* TEMPLATE pieces, 3 int64 each */
    int64_t npieces;
    Buf tpl; /* a template's string, unescaped */
    Buf *text, *canon;
    Parser frag; /* a JSON text column's value, canonicalised */
    int64_t row;
    const char *err;
} Asm;

static inline int asm_valid(const AsmColumn *c, int64_t row) {
    int64_t i = c->offset + row;
    return !c->valid || (c->valid[i >> 3] >> (i & 7)) & 1;
}

static inline void asm_span(const AsmColumn *c, int64_t row, const unsigned char **s, size_t *n) {
    int64_t i = c->offset + row, a, b;
    if (c->kind == C_STR32 || c->kind == C_JSON32) {
        int32_t x, y;
        memcpy(&x, c->a + 4 * i, 4);
        memcpy(&y, c->a + 4 * (i + 1), 4);
        a = x, b = y;
    } else {
        memcpy(&a, c->a + 8 * i, 8);
        memcpy(&b, c->a + 8 * (i + 1), 8);
    }
    *s = c->b + a;
    *n = (size_t)(b - a);
}

static int asm_null(const AsmColumn *c, int64_t row) {
    if (!asm_valid(c, row)) return 1;
    if (c->kind == C_JSON32 || c->kind == C_JSON64) {
        const unsigned char *s;
        size_t n;
        asm_span(c, row, &s, &n);
        return n == 4 && !memcmp(s, "null", 4);
    }
    return 0;
}

/* A JSON string of s[0:n] (valid UTF-8: DuckDB's VARCHAR): quote, backslash and control characters escaped. */
static int put_json_string(Buf *o, const unsigned char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF"; /* as DuckDB's to_json (the SQL path) writes them */
    if (buf_reserve(o, n + 2)) return -1;
    o->p[o->len++] = '"';
    const unsigned char *p = s, *end = s + n;
    while (p < end) {
        const unsigned char *q = plain_run(p, end);
        while (q < end && *q >= 0x80) q = plain_run(q + 1, end); /* UTF-8 goes as it is */
        if (buf_put(o, p, (size_t)(q - p))) return -1;
        if (q == end) break;
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (*q) {
            case '"': e[1] = '"'; break;
            case '\\': e[1] = '\\'; break;
            case '\n': e[1] = 'n'; break;
            case '\r': e[1] = 'r'; break;
            case '\t': e[1] = 't'; break;
            case '\b': e[1] = 'b'; break;
            case '\f': e[1] = 'f'; break;
            default:
                e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[*q >> 4], e[5] = hex[*q & 15];
                el = 6;
        }
        if (buf_put(o, e, el)) return -1;
        p = q + 1;
    }
    return buf_byte(o, '"');
}

static int put_int(Buf *o, int64_t v) {
    char s[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        s[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) s[n++] = '-';
    if (buf_reserve(o, (size_t)n)) return -1;
    while (n) o->p[o->len++] = s[--n];
    return 0;
}

/* Microseconds since 1970 as RFC 3339 UTC text, as mapping/_compile._ts_text writes it: seconds always, a fraction
 * only when there is one (trailing zeros dropped), Z. Years 0001-9999 (the compiled SELECT refuses others). */
static size_t rfc3339(int64_t us, char *out) {
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) frac += 1000000, secs--;
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) sod += 86400, days--;
    /* civil from days (proleptic Gregorian), after H. Hinnant's algorithm */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097, yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9, y = yoe + era * 400 + (m <= 2);
    if (y < 1 || y > 9999) return 0;
    int64_t f[] = {y / 1000, y / 100 % 10, y / 10 % 10, y % 10};
    char *p = out;
    for (int k = 0; k < 4; k++) *p++ = (char)('0' + f[k]);
    int64_t parts[] = {m, d, sod / 3600, sod / 60 % 60, sod % 60};
    const char seps[] = "--T::";
    for (int k = 0; k < 5; k++) {
        *p++ = seps[k];
        *p++ = (char)('0' + parts[k] / 10);
        *p++ = (char)('0' + parts[k] % 10);
    }
    if (frac) {
        *p++ = '.';
        int digits = 6;
        while (frac % 10 == 0) frac /= 10, digits--;
        for (int k = digits - 1; k >= 0; k--) p[k] = (char)('0' + frac % 10), frac /= 10;
        p += digits;
    }
    *p++ = 'Z';
    return (size_t)(p - out);
}

/* The shortest decimal digits of a > 0 that read back as a (no leading or trailing zeros; the value is
 * 0.DIGITS x 10^point); returns their count, 0 on failure. Fast and exact for 1e-5 <= a < 1e15 with at most 15
 * significant digits (what tabular sources hold): the 15-digit decimal nearest a is checked by one correctly
 * rounded division (both operands exact), and a decimal of at most 15 digits that reads back as a is the only one
 * (DBL_DIG), hence the shortest. Anything else asks Python's repr (shortest round trip, ties to the nearest)
 * under the GIL: rare. */
static int shortest_digits(double a, char *digits, int *point) {
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    if (a >= 1e-5 && a < 1e15) {
        uint64_t bits;
        memcpy(&bits, &a, 8);
        int b2 = (int)((bits >> 52) & 0x7ff) - 1023; /* 2^b2 <= a */
        int k = 14 - ((b2 * 78913) >> 18);           /* floor(b2 log10 2) is a's decimal exponent or one less */
        double mf = a * POW10[k];
        if (mf >= 1e15) mf = a * POW10[--k];
        uint64_t m = (uint64_t)(mf + 0.5);
        if (m && m <= 1000000000000000ULL && (double)m / POW10[k] == a) {
            int zeros = 0;
            if (m % 100000000 == 0) m /= 100000000, zeros += 8;
            if (m % 10000 == 0) m /= 10000, zeros += 4;
            if (m % 100 == 0) m /= 100, zeros += 2;
            if (m % 10 == 0) m /= 10, zeros += 1;
            char t[20];
            int n = 20;
            for (; m >= 100; m /= 100) {
                unsigned r = (unsigned)(m % 100);
                t[--n] = pairs[2 * r + 1], t[--n] = pairs[2 * r];
            }
            if (m >= 10) {
                t[--n] = pairs[2 * m + 1], t[--n] = pairs[2 * m];
            } else {
                t[--n] = (char)('0' + m);
            }
            int nd = 20 - n;
            for (int i = 0; i < nd; i++) digits[i] = t[n + i];
            *point = nd + zeros - k;
            return nd;
        }
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    char *r = PyOS_double_to_string(a, 'r', 0, 0, NULL); /* e.g. 0.0001234, 1.2345678901234568e+17, 1e-07 */
    if (!r) PyErr_Clear();
    int nd = 0, dot = -1, lead = 0, exp10 = 0;
    if (r) {
        const char *q = r;
        for (; *q && *q != 'e'; q++) {
            if (*q == '.') {
                dot = nd + lead;
            } else if (nd == 0 && *q == '0') {
                lead++;
            } else if (nd < 20) {
                digits[nd++] = *q;
            }
        }
        if (*q == 'e') exp10 = atoi(q + 1);
        PyMem_Free(r);
    }
    PyGILState_Release(gil);
    if (!nd) return 0;
    *point = (dot < 0 ? nd + lead : dot) - lead + exp10;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    return nd;
}

/* A double as DuckDB's to_json writes it (yyjson): shortest round-trip digits, plain notation when the decimal
 * point falls after digit -5 and up to digit 21 (whole numbers end in ".0"), else d.ddde-x; NaN and the infinities
 * as words, as DuckDB writes them. */
static int put_json_double(Buf *o, double d) {
    if (d != d) return buf_put(o, "NaN", 3);
    if (isinf(d)) return d > 0 ? buf_put(o, "Infinity", 8) : buf_put(o, "-Infinity", 9);
    char digits[40]; /* 24-byte and 16-byte copies from it below */
    int point = 1, nd = 1;
    double a = fabs(d);
    if (a == 0) {
        digits[0] = '0';
    } else if (!(nd = shortest_digits(a, digits, &point))) {
        return -1;
    }
    if (buf_reserve(o, 64)) return -1; /* the longest: "-0.00000" and 17 digits, or "-" 21 digits ".0" */
    char *out = o->p + o->len, *p = out;
    if (signbit(d)) *p++ = '-';
    if (point > -6 && point <= 21) {
        if (point <= 0) {
            *p++ = '0', *p++ = '.';
            for (int i = 0; i < -point; i++) *p++ = '0';
            memcpy(p, digits, 24), p += nd; /* fixed-size copies (inlined); the bytes past nd are overwritten */
        } else if (point >= nd) {
            memcpy(p, digits, 24), p += nd;
            for (int i = nd; i < point; i++) *p++ = '0';
            *p++ = '.', *p++ = '0';
        } else {
            memcpy(p, digits, 24), p += point;
            *p++ = '.';
            memcpy(p, digits + point, 16), p += nd - point; /* nd - point < 16: point >= 1, nd <= 17 */
        }
    } else {
        *p++ = digits[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, 16), p += nd - 1;
        }
        p += snprintf(p, 8, "e%d", point - 1);
    }
    o->len += (size_t)(p - out);
    return 0;
}

/* A leaf's value (not null) as JSON text, or (canon) as canonical stream. */
static int asm_leaf(Asm *m, AsmColumn *c, int canon) {
    Buf *o = canon ? m->canon : m->text;
    int64_t i = c->offset + m->row, v;
    const unsigned char *s;
    size_t n;
    switch (c->kind) {
        case C_STR32:
        case C_STR64:
            asm_span(c, m->row, &s, &n);
            if (!canon) return put_json_string(o, s, n);
            return buf_byte(o, 's') || buf_u32(o, (uint32_t)n) || buf_put(o, s, n);
        case C_JSON32:
        case C_JSON64:
            if (canon && c->has_canon) {
                int64_t k = c->canon_offset + m->row, lo, hi;
                if (!c->canon_valid || (c->canon_valid[k >> 3] >> (k & 7)) & 1) {
                    if (c->canon_wide) {
                        memcpy(&lo, c->canon_offsets + 8 * k, 8);
                        memcpy(&hi, c->canon_offsets + 8 * (k + 1), 8);
                    } else {
                        int32_t x, y;
                        memcpy(&x, c->canon_offsets + 4 * k, 4);
                        memcpy(&y, c->canon_offsets + 4 * (k + 1), 4);
                        lo = x, hi = y;
                    }
                    return buf_put(o, c->canon_data + lo, (size_t)(hi - lo));
                }
            }
            asm_span(c, m->row, &s, &n);
            if (!canon) return buf_put(o, s, n);
            if (canonicalise(&m->frag, s, s + n, 0)) {
                m->err = "a JSON value DuckDB computed does not parse";
                return -1;
            }
            return buf_put(o, m->frag.out.p, m->frag.out.len);
        case C_I64:
            memcpy(&v, c->a + 8 * i, 8);
            return canon ? buf_byte(o, 'i') || buf_u64(o, (uint64_t)v) : put_int(o, v);
        case C_TIME: {
            char *t = c->last;
            if (c->last_row == m->row) {
                n = c->last_n;
            } else {
                memcpy(&v, c->a + 8 * i, 8);
                c->last_n = n = rfc3339(v, t);
                c->last_row = m->row;
            }
            if (!n) {
                m->err = "a datetime outside the years 0001-9999";
                return -1;
            }
            if (canon) return buf_byte(o, 's') || buf_u32(o, (uint32_t)n) || buf_put(o, t, n);
            return buf_byte(o, '"') || buf_put(o, t, n) || buf_byte(o, '"');
        }
        case C_F64: {
            double d;
            memcpy(&d, c->a + 8 * i, 8);
            if (canon) return put_double(o, d);
            if (put_json_double(o, d)) {
                m->err = "a double could not be written";
                return -1;
            }
            return 0;
        }
        default: {
            int yes = (c->a[i >> 3] >> (i & 7)) & 1;
            if (canon) return buf_byte(o, yes ? 't' : 'f');
            return yes ? buf_put(o, "true", 4) : buf_put(o, "false", 5);
        }
    }
}

/* A TEMPLATE operation (see the top): the string into m->tpl, then as JSON text or canonical stream. */
static int asm_template(Asm *m, const int64_t *op, int canon) {
    Buf *o = canon ? m->canon : m->text;
    const int64_t *p = m->pieces + 3 * op[1], *end = p + 3 * op[2];
    for (const int64_t *q = p; q < end; q += 3)
        if (q[0] >= 0 && !asm_valid(&m->cols[q[0]], m->row)) {
            if (op[3]) return 0; /* a member: left out */
            return canon ? buf_byte(o, 'n') : buf_put(o, "null", 4);
        }
    m->tpl.len = 0;
    if (p < end && p[0] == -2) {
        if (buf_put(o, m->pool + p[1], (size_t)p[2])) return -1;
        p += 3;
    }
    for (; p < end; p += 3) {
        const AsmColumn *c = p[0] >= 0 ? &m->cols[p[0]] : NULL;
        int r;
        if (!c) {
            r = buf_put(&m->tpl, m->pool + p[1], (size_t)p[2]);
        } else if (c->kind == C_I64) {
            int64_t v;
            memcpy(&v, c->a + 8 * (c->offset + m->row), 8);
            r = put_int(&m->tpl, v);
        } else {
            const unsigned char *s;
            size_t n;
            asm_span(c, m->row, &s, &n);
            r = buf_put(&m->tpl, s, n);
        }
        if (r) return -1;
    }
    if (!canon) return put_json_string(o, (const unsigned char *)m->tpl.p, m->tpl.len);
    return buf_byte(o, 's') || buf_u32(o, (uint32_t)m->tpl.len) || buf_put(o, m->tpl.p, m->tpl.len);
}

/* A SPLIT operation (see the top). */
static int asm_split(Asm *m, const int64_t *op, int canon) {
    Buf *o = canon ? m->canon : m->text;
    const AsmColumn *c = &m->cols[op[1]];
    size_t klen = (size_t)(op[3] & 0xFFFFFFFF), slen = (size_t)(op[3] >> 32);
    if (!asm_valid(c, m->row)) {
        if (klen) return 0;
        return canon ? buf_byte(o, 'n') : buf_put(o, "null", 4);
    }
    const unsigned char *sep = m->pool + op[2] + klen, *s, *end;
    size_t n;
    asm_span(c, m->row, &s, &n);
    end = s + n;
    if (buf_put(o, m->pool + op[2], klen) || buf_byte(o, '[')) return -1;
    for (int first = 1;; first = 0) {
        const unsigned char *q = s;
        while (q + slen <= end && (*q != sep[0] || memcmp(q, sep, slen))) q++;
        if (q + slen > end) q = end;
        size_t len = (size_t)(q - s);
        if (!canon) {
            if ((!first && buf_byte(o, ',')) || put_json_string(o, s, len)) return -1;
        } else if (buf_byte(o, 's') || buf_u32(o, (uint32_t)len) || buf_put(o, s, len)) {
            return -1;
        }
        if (q == end) break;
        s = q + slen;
    }
    return buf_byte(o, ']');
}

/* One program over one row: COPY pool bytes, VALUE a leaf (null written as null), MEMBER a leaf with its key (left
 * out when null), OPEN / CLOSE an object whose first member may be left out (its members all start with a comma:
 * CLOSE turns the first one into the brace, or writes {} when none was written). */
static int asm_run(Asm *m, const int64_t *ops, int64_t nops, int canon) {
    Buf *o = canon ? m->canon : m->text;
    size_t stack[ASM_DEPTH];
    int sp = 0;
    for (int64_t i = 0; i < nops; i++) {
        const int64_t *op = ops + 4 * i;
        int r = 0;
        switch (op[0]) {
            case OP_COPY:
                r = buf_put(o, m->pool + op[1], (size_t)op[2]);
                break;
            case OP_VALUE:
            case OP_MEMBER:
            case OP_VALUE_OR: {
                AsmColumn *c = &m->cols[op[1]];
                if (asm_null(c, m->row)) {
                    if (op[0] == OP_MEMBER) break;
                    if (op[0] == OP_VALUE_OR) {
                        r = buf_put(o, m->pool + op[2], (size_t)op[3]);
                        break;
                    }
                    r = canon ? buf_byte(o, 'n') : buf_put(o, "null", 4);
                    break;
                }
                if (op[0] == OP_MEMBER) r = buf_put(o, m->pool + op[2], (size_t)op[3]);
                if (!r) r = asm_leaf(m, c, canon);
                break;
            }
            case OP_TEMPLATE:
                r = asm_template(m, op, canon);
                break;
            case OP_SPLIT:
                r = asm_split(m, op, canon);
                break;
            case OP_OPEN:
                stack[sp++] = o->len;
                break;
            default: { /* OP_CLOSE */
                size_t at = stack[--sp];
                if (o->len > at) {
                    o->p[at] = '{';
                } else {
                    r = buf_byte(o, '{');
                }
                r = r || buf_byte(o, '}');
            }
        }
        if (r) return -1;
    }
    return 0;
}

/* Ask for transparent huge pages over a large fresh buffer: its first touch then faults once per 2 MB instead of
 * once per 4 KB (measured on the VMs here: a fresh 42 MB block took ~70 ms to fault in, 10x copying it). Advice
 * only: nothing changes where the kernel does not offer them. */
static void huge_pages(char *p, size_t n) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1), hi = ((uintptr_t)p + n) & ~(huge - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p, (void)n;
#endif
}

/* Checks a program's numbers once, so the per-row run need not. */
static const char *asm_check(const Asm *m, const int64_t *ops, int64_t nops) {
    int depth = 0;
    for (int64_t i = 0; i < nops; i++) {
        const int64_t *op = ops + 4 * i;
        switch (op[0]) {
            case OP_COPY:
                if (op[1] < 0 || op[2] < 0 || op[1] + op[2] > m->npool) return "copy out of range";
                break;
            case OP_MEMBER:
            case OP_VALUE_OR:
                if (op[2] < 0 || op[3] < 0 || op[2] + op[3] > m->npool) return "key out of range";
                /* fall through */
            case OP_VALUE:
                if (op[1] < 0 || op[1] >= m->ncols || !m->cols[op[1]].kind) return "column out of range";
                break;
            case OP_SPLIT: {
                int64_t klen = op[3] & 0xFFFFFFFF, slen = op[3] >> 32;
                if (op[1] < 0 || op[1] >= m->ncols) return "column out of range";
                if (m->cols[op[1]].kind != C_STR32 && m->cols[op[1]].kind != C_STR64) return "a split value is not text";
                if (op[2] < 0 || slen < 1 || op[3] < 0 || op[2] + klen + slen > m->npool) return "separator out of range";
                break;
            }
            case OP_TEMPLATE:
                if (op[1] < 0 || op[2] < 0 || op[1] + op[2] > m->npieces) return "pieces out of range";
                for (int64_t k = op[1]; k < op[1] + op[2]; k++) {
                    const int64_t *q = m->pieces + 3 * k;
                    if (q[0] < -2 || q[0] >= m->ncols) return "piece column out of range";
                    if (q[0] >= 0 && m->cols[q[0]].kind != C_I64 && m->cols[q[0]].kind != C_STR32 &&
                        m->cols[q[0]].kind != C_STR64)
                        return "a template piece is not text or an integer";
                    if (q[0] < 0 && (q[1] < 0 || q[2] < 0 || q[1] + q[2] > m->npool)) return "piece out of range";
                    if (q[0] == -2 && (k != op[1] || !op[3])) return "a key piece not first in a member";
                }
                break;
            case OP_OPEN:
                if (++depth > ASM_DEPTH) return "objects nested too deeply";
                break;
            case OP_CLOSE:
                if (--depth < 0) return "close without open";
                break;
            default:
                return "unknown operation";
        }
    }
    return depth ? "open without close" : NULL;
}

/* Offsets [first, last] of an Arrow offsets buffer (int32 or int64), each within [0, limit]. */
static int offsets_within(const unsigned char *offsets, int wide, int64_t first, int64_t last, Py_ssize_t limit) {
    for (int64_t i = first; i <= last; i++) { /* the walk reads them unchecked */
        int64_t v;
        if (wide) {
            memcpy(&v, offsets + 8 * i, 8);
        } else {
            int32_t x;
            memcpy(&x, offsets + 4 * i, 4);
            v = x;
        }
        if (v < 0 || v > limit) return 0;
    }
    return 1;
}

/* One of the column's buffers, held until the call ends (len: its size); NULL with an exception set if obj has
 * none, or (validity: obj None) no buffer at all. */
static const unsigned char *asm_view(AsmColumn *c, PyObject *obj, Py_ssize_t *len) {
    *len = 0;
    if (obj == Py_None) return NULL;
    Py_buffer *v = &c->views[c->nviews];
    if (PyObject_GetBuffer(obj, v, PyBUF_SIMPLE)) return NULL;
    c->nviews++;
    *len = v->len;
    return v->buf ? (const unsigned char *)v->buf : (const unsigned char *)"";
}

/* A validity bitmap (or None) covering rows up to last: 0, or -1 (an exception set). */
static int asm_validity(AsmColumn *c, PyObject *obj, int64_t last, const uint8_t **out) {
    Py_ssize_t len;
    *out = asm_view(c, obj, &len);
    if (obj != Py_None && (!*out || len * 8 < last)) {
        if (*out) PyErr_SetString(PyExc_ValueError, "a validity bitmap is shorter than its rows");
        return -1;
    }
    return 0;
}

/* The companion (wide, offset, validity or None, offsets, data) of a JSON text column. */
static int asm_canon_column(PyObject *spec, int64_t rows, AsmColumn *c) {
    PyObject *valid, *offs, *data;
    int wide;
    long long offset;
    if (!PyArg_ParseTuple(spec, "pLOOO", &wide, &offset, &valid, &offs, &data)) return -1;
    int64_t last = offset + rows;
    Py_ssize_t olen, dlen;
    c->has_canon = 1, c->canon_wide = wide, c->canon_offset = offset;
    if (offset < 0 || asm_validity(c, valid, last, &c->canon_valid)) goto bad;
    if (!(c->canon_offsets = asm_view(c, offs, &olen)) || !(c->canon_data = asm_view(c, data, &dlen))) goto bad;
    if (olen < (wide ? 8 : 4) * (last + 1) || !offsets_within(c->canon_offsets, wide, offset, last, dlen)) goto bad;
    return 0;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a canonical column's buffers are shorter than its rows");
    return -1;
}

static int asm_column(PyObject *spec, int64_t rows, AsmColumn *c) {
    PyObject *valid, *a, *b, *canon = Py_None;
    long long kind, offset;
    c->last_row = -1;
    if (spec == Py_None) return 0; /* a leaf no operation reads (kind 0: asm_check refuses any that does) */
    if (!PyArg_ParseTuple(spec, "LLOOO|O", &kind, &offset, &valid, &a, &b, &canon)) return -1;
    c->kind = (int)kind;
    c->offset = offset;
    if (kind < C_STR32 || kind > C_F64 || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "bad column kind or offset");
        return -1;
    }
    int64_t last = offset + rows;
    Py_ssize_t alen, blen;
    if (asm_validity(c, valid, last, &c->valid) || !(c->a = asm_view(c, a, &alen))) goto bad;
    int wide = kind == C_STR64 || kind == C_JSON64;
    int fixed = kind == C_I64 || kind == C_TIME || kind == C_F64;
    if (fixed ? alen < 8 * last : kind == C_BOOL ? alen * 8 < last : alen < (wide ? 8 : 4) * (last + 1)) goto bad;
    if (kind <= C_JSON64) {
        if (!(c->b = asm_view(c, b, &blen)) || !offsets_within(c->a, wide, offset, last, blen)) goto bad;
    }
    if (canon != Py_None) {
        if (kind != C_JSON32 && kind != C_JSON64) {
            PyErr_SetString(PyExc_ValueError, "only a JSON text column has canonical streams beside it");
            return -1;
        }
        return asm_canon_column(canon, rows, c);
    }
    return 0;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a column's buffers are shorter than its rows");
    return -1;
}

#ifdef STACBATCH_XXH3
/* xxh3-128 of a stream as 32 lowercase hex digits of its canonical (big-endian) form: xxhash's xxh3_128_hexdigest */
static int put_hex_hash(Buf *o, const char *p, size_t n) {
    static const char hex[] = "0123456789abcdef";
    XXH128_hash_t h = XXH3_128bits(p, n);
    if (buf_reserve(o, 32)) return -1;
    for (int k = 0; k < 16; k++) {
        uint64_t word = k < 8 ? h.high64 : h.low64;
        unsigned byte = (unsigned)(word >> (8 * (7 - (k & 7)))) & 0xff;
        o->p[o->len++] = hex[byte >> 4];
        o->p[o->len++] = hex[byte & 15];
    }
    return 0;
}
#endif

/* assemble_items(text ops, canonical ops, pool, columns, rows[, pieces]) -> (text offsets int64, texts, canonical ends
 * uint32, canonical streams) per row: the item's JSON text and its canonical stream; or, built with xxHash
 * (STACBATCH_XXH3), (text offsets, texts, None, content hashes as 32 hex digits each). */
static PyObject *py_assemble_items(PyObject *self, PyObject *args) {
    Py_buffer tv, cv, pv, kv = {0};
    PyObject *columns;
    long long rows;
    if (!PyArg_ParseTuple(args, "y*y*y*OL|y*", &tv, &cv, &pv, &columns, &rows, &kv)) return NULL;
    Buf text = {0}, toff = {0}, canon = {0}, coff = {0};
    Asm m = {pv.buf, pv.len, NULL, 0, kv.buf, kv.len / 24, {0}, &text, &canon, {0}, 0, NULL};
    const int64_t *tops = tv.buf, *cops = cv.buf;
    int64_t ntops = tv.len / 32, ncops = cv.len / 32;
    PyObject *res = NULL;
    const char *bad = NULL;
    int err = 0;
    if (!PyList_Check(columns) || rows < 0) {
        PyErr_SetString(PyExc_TypeError, "columns must be a list and rows not negative");
        goto done;
    }
    Py_ssize_t ncols = PyList_GET_SIZE(columns);
    m.cols = calloc((size_t)ncols + 1, sizeof(AsmColumn));
    if (!m.cols) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < ncols; i++) {
        m.ncols = i + 1;
        if (asm_column(PyList_GET_ITEM(columns, i), rows, &m.cols[i])) goto done;
    }
    if ((bad = asm_check(&m, tops, ntops)) != NULL || (bad = asm_check(&m, cops, ncops)) != NULL) {
        PyErr_SetString(PyExc_ValueError, bad);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    err = buf_u64(&toff, 0);
#ifndef STACBATCH_XXH3
    err = err || buf_u32(&coff, 0);
#endif
    for (int64_t r = 0; r < rows && !err; r++) {
        m.row = r;
#ifdef STACBATCH_XXH3
        /* the stream is hashed at once (xxh3-128, as _json.content_hash): it stays in cache, never handed out */
        canon.len = 0;
        err = asm_run(&m, tops, ntops, 0) || asm_run(&m, cops, ncops, 1) || buf_u64(&toff, text.len) ||
              put_hex_hash(&coff, canon.p, canon.len);
#else
        err = asm_run(&m, tops, ntops, 0) || asm_run(&m, cops, ncops, 1) || buf_u64(&toff, text.len) ||
              put_off(&coff, canon.len);
#endif
        if (r == 0 && !err) { /* room for all rows at once, from the first row's size: no copies as they grow */
            size_t more = (size_t)rows + (size_t)rows / 8;
            err = buf_reserve(&text, text.len * more) || buf_reserve(&toff, 8 * (size_t)rows) ||
                  buf_reserve(&coff, 32 * (size_t)rows);
#ifndef STACBATCH_XXH3
            err = err || buf_reserve(&canon, canon.len * more);
#endif
            if (!err) huge_pages(text.p, text.cap);
        }
    }
    Py_END_ALLOW_THREADS
    if (err && m.err) {
        PyErr_Format(PyExc_ValueError, "row %lld: %s", (long long)m.row, m.err);
    } else if (err) {
        PyErr_NoMemory();
    } else {
#ifdef STACBATCH_XXH3
        res = Py_BuildValue("(NNON)", buf_to_block(&toff), buf_to_block(&text), Py_None, buf_to_block(&coff));
#else
        res = Py_BuildValue("(NNNN)", buf_to_block(&toff), buf_to_block(&text), buf_to_block(&coff),
                            buf_to_block(&canon));
#endif
    }
done:
    for (int64_t i = 0; i < m.ncols; i++)
        for (int k = 0; k < m.cols[i].nviews; k++) PyBuffer_Release(&m.cols[i].views[k]);
    free(m.cols);
    buf_free(&text), buf_free(&toff), buf_free(&canon), buf_free(&coff);
    parser_free(&m.frag);
    buf_free(&m.tpl);
    PyBuffer_Release(&tv), PyBuffer_Release(&cv), PyBuffer_Release(&pv);
    if (kv.obj) PyBuffer_Release(&kv);
    return res;
}

/* json_double(x) -> str: x as put_json_double writes it (for tests against DuckDB's to_json). */
static PyObject *py_json_double(PyObject *self, PyObject *arg) {
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred()) return NULL;
    Buf b = {0};
    if (put_json_double(&b, d)) {
        buf_free(&b);
        return PyErr_NoMemory();
    }
    PyObject *res = PyUnicode_FromStringAndSize(b.p, (Py_ssize_t)b.len);
    buf_free(&b);
    return res;
}

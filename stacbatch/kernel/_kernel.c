/* stacbatch.kernel._kernel: the per-item work of staging, in C, over raw JSON bytes and Arrow buffers.
 *
 * The one list of entry points, with their types, is _kernel.pyi (tests/test_kernel_fuzz.py checks this module
 * against it, and that a test `make fuzz` runs calls each one); methods[] at the end of this file registers them.
 * docs/kernel.md says what each does, its pure-Python twin that must agree with it, its invariants and how it is
 * fuzzed (make fuzz: ASan and UBSan). Lines or rows a reader cannot take exactly as the Python path would (bad
 * JSON, errors, unusual forms) are handed back for that path, which owns every error message: this file holds no
 * policy, only the fast common case.
 *
 * Most readers release the GIL while they read, so nothing here is shared between calls but thread-local state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#ifdef STACBATCH_XXH3 /* pyarrow's copy of xxHash (setup.py): content hashes in C */
#define XXH_INLINE_ALL
#include "arrow/vendored/xxhash/xxhash.h"
#endif

/* ---------------------------------------------------------------- growable byte buffer */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

/* The growing path, out of line: the checks below inline into every writer (the item assembly calls them ~200
 * times a row; as calls they cost ~10% of it, measured with callgrind). */
/* One large block kept back from the last Block freed (its capacity in its first 8 bytes): the next large buffer
 * takes it with its pages already faulted in. A mapping worker assembles ~40 MB of item text per batch; fresh each
 * time, that was ~670 huge-page faults (zeroing ~1.3 GB) per million items. Taken and given back atomically:
 * buffers grow without the GIL. */
#define SPARE_MIN ((size_t)8 << 20)
static char *spare_block = NULL;

static char *spare_take(void) { return __atomic_exchange_n(&spare_block, NULL, __ATOMIC_ACQ_REL); }

/* Keep p (capacity cap) as the spare, or free it. */
static void spare_give(char *p, size_t cap) {
    char *none = NULL;
    if (p && cap >= SPARE_MIN) {
        memcpy(p, &cap, sizeof cap);
        if (__atomic_compare_exchange_n(&spare_block, &none, p, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return;
    }
    free(p);
}

__attribute__((noinline)) static int buf_grow(Buf *b, size_t n) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    char *spare = cap >= SPARE_MIN ? spare_take() : NULL;
    if (spare) {
        size_t have;
        memcpy(&have, spare, sizeof have);
        char *q = have >= cap ? spare : realloc(spare, cap);
        if (!q) {
            free(spare);
            return -1;
        }
        if (b->len) memcpy(q, b->p, b->len);
        free(b->p);
        b->p = q;
        b->cap = have >= cap ? have : cap;
        return 0;
    }
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

__attribute__((always_inline)) static inline int buf_reserve(Buf *b, size_t n) {
    return b->len + n <= b->cap ? 0 : buf_grow(b, n);
}

__attribute__((always_inline)) static inline int buf_put(Buf *b, const void *s, size_t n) {
    if (!n) return 0; /* memcpy of 0 bytes from or to NULL is undefined (UBSan: make fuzz) */
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

__attribute__((always_inline)) static inline int buf_byte(Buf *b, char c) {
    if (b->len == b->cap && buf_grow(b, 1)) return -1;
    b->p[b->len++] = c;
    return 0;
}

static inline int buf_u32(Buf *b, uint32_t v) {
    unsigned char s[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return buf_put(b, s, 4);
}

static inline int buf_u64(Buf *b, uint64_t v) {
    unsigned char s[8];
    for (int i = 0; i < 8; i++) s[i] = (unsigned char)(v >> (8 * i));
    return buf_put(b, s, 8);
}

static inline int buf_f64(Buf *b, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    return buf_u64(b, v);
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Element i of an int32 or int64 array handed in as a buffer: any bytes-like object, so maybe unaligned (a bytes
 * object sliced anywhere); memcpy is one load on x86-64 and defined for any address. */
static inline int32_t load_i32(const void *p, Py_ssize_t i) {
    int32_t v;
    memcpy(&v, (const char *)p + 4 * i, 4);
    return v;
}

static inline int64_t load_i64(const void *p, Py_ssize_t i) {
    int64_t v;
    memcpy(&v, (const char *)p + 8 * i, 8);
    return v;
}

/* ---------------------------------------------------------------- Block: a Buf handed to Python without a copy
 *
 * A read-only buffer-protocol object that owns the Buf's memory: numpy and Arrow wrap it as it is (copying tens
 * of megabytes into a bytes object cost as much as parsing them).
 */

typedef struct {
    PyObject_HEAD
    char *p;
    Py_ssize_t len;
    size_t cap;
} Block;

static void block_dealloc(Block *self) {
    spare_give(self->p, self->cap);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int block_getbuffer(Block *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->p ? self->p : (char *)"", self->len, 1, flags);
}

static Py_ssize_t block_length(Block *self) { return self->len; }

static PyBufferProcs block_as_buffer = {(getbufferproc)block_getbuffer, NULL};
static PySequenceMethods block_as_sequence = {.sq_length = (lenfunc)block_length};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "stacbatch.kernel._kernel.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &block_as_buffer,
    .tp_as_sequence = &block_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Bytes the kernel wrote, read-only, exposed through the buffer protocol.",
};

/* The Buf's memory moves into a new Block (the Buf is left empty); trailing spare capacity is given back, except
 * from a large buffer (never-touched pages cost nothing, and it may become the spare block). */
static PyObject *buf_to_block(Buf *b) {
    Block *blk = PyObject_New(Block, &BlockType);
    if (!blk) return NULL;
    if (b->p && b->cap - b->len > 65536 && b->cap < SPARE_MIN) {
        char *q = realloc(b->p, b->len ? b->len : 1);
        if (q) {
            b->p = q;
            b->cap = b->len ? b->len : 1;
        }
    }
    blk->p = b->p;
    blk->len = (Py_ssize_t)b->len;
    blk->cap = b->cap;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)blk;
}

/* ---------------------------------------------------------------- canonical stream
 *
 * null n | true t | false f | integer in int64 (also an integral double): i + int64 LE
 * | integer beyond int64: I + u32 length + decimal text | other number: d + float64 LE (NaN as one bit pattern)
 * | string: s + u32 length + UTF-8 (lone surrogates as 3 bytes, as Python's 'surrogatepass')
 * | array: [ values ] | object: { (key value)* } with keys sorted by their UTF-8 bytes, the last of equal keys kept.
 */

#define MAX_DEPTH 512

typedef struct {
    size_t seg;     /* offset in out of the member (key then value) */
    size_t seglen;  /* length of the member */
    uint32_t order; /* position in the source object */
} Member;

typedef struct {
    const unsigned char *p, *end;
    int strict; /* orjson's rules: no NaN/Infinity, no lone surrogates */
    int depth;
    const char *err;
    Buf out;
    Buf scratch;
    Member *members;
    size_t nmembers, capmembers;
    /* spans of chosen members of the top-level object (scan_lines): start and end offsets in the input */
    int want_fields;
    const unsigned char *f_start[8], *f_end[8];
} Parser;

enum { F_ID, F_COLLECTION, F_BBOX, F_GEOMETRY, F_PROPERTIES, F_DATETIME, F_START, F_END };

/* qsort has no context argument: the stream being sorted, per thread (the readers sort without the GIL, so two
 * threads of one process may sort at once) */
static _Thread_local const char *g_base;

static int key_cmp(const Member *x, const Member *y) {
    const unsigned char *kx = (const unsigned char *)g_base + x->seg + 1;
    const unsigned char *ky = (const unsigned char *)g_base + y->seg + 1;
    uint32_t lx = kx[0] | kx[1] << 8 | kx[2] << 16 | (uint32_t)kx[3] << 24;
    uint32_t ly = ky[0] | ky[1] << 8 | ky[2] << 16 | (uint32_t)ky[3] << 24;
    int c = memcmp(kx + 4, ky + 4, lx < ly ? lx : ly);
    if (c) return c;
    return lx < ly ? -1 : lx > ly;
}

static int member_cmp(const void *a, const void *b) {
    const Member *x = a, *y = b;
    int c = key_cmp(x, y);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order; /* equal keys: source order, the last is kept */
}

static inline void skip_ws(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')) ps->p++;
}

static int fail(Parser *ps, const char *msg) {
    if (!ps->err) ps->err = msg;
    return -1;
}

static int oom(Parser *ps) { return fail(ps, "out of memory"); }

static inline int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(Parser *ps, uint32_t *cp) {
    if (ps->end - ps->p < 4) return fail(ps, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0) return fail(ps, "bad \\u escape");
        v = v << 4 | (uint32_t)h;
    }
    ps->p += 4;
    *cp = v;
    return 0;
}

static int put_utf8(Buf *b, uint32_t cp) {
    unsigned char s[4];
    size_t n;
    if (cp < 0x80) {
        s[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        s[0] = (unsigned char)(0xC0 | cp >> 6);
        s[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        s[0] = (unsigned char)(0xE0 | cp >> 12);
        s[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        s[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        s[0] = (unsigned char)(0xF0 | cp >> 18);
        s[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        s[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        s[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_put(b, s, n);
}

/* Length of the valid UTF-8 sequence at p (non-ASCII lead byte), or 0 when invalid (surrogates included). */
static inline int utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    ptrdiff_t left = end - p;
#define CONT(i) (left > (i) && (p[i] & 0xC0) == 0x80)
    if (c >= 0xC2 && c <= 0xDF) return CONT(1) ? 2 : 0;
    if (c == 0xE0) return left > 2 && p[1] >= 0xA0 && p[1] <= 0xBF && CONT(2) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return CONT(1) && CONT(2) ? 3 : 0;
    if (c == 0xED) return left > 2 && p[1] >= 0x80 && p[1] <= 0x9F && CONT(2) ? 3 : 0;
    if (c == 0xF0) return left > 3 && p[1] >= 0x90 && p[1] <= 0xBF && CONT(2) && CONT(3) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return CONT(1) && CONT(2) && CONT(3) ? 4 : 0;
    if (c == 0xF4) return left > 3 && p[1] >= 0x80 && p[1] <= 0x8F && CONT(2) && CONT(3) ? 4 : 0;
#undef CONT
    return 0;
}

/* The end of the run of plain ASCII string bytes at p: no quote, backslash, control or non-ASCII byte. Eight bytes
 * at a time (SWAR) while eight remain in the buffer (short keys too: a line goes on after them). */
static inline const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\');
        uint64_t special = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((x - ones * 0x20) & ~x) | x;
        special &= high;
        /* the lowest flagged byte is a true one (false alarms only come from borrows out of a true one) */
        if (special) return p + (__builtin_ctzll(special) >> 3);
        p += 8;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80) p++;
    return p;
}

/* A string (ps->p after the opening quote) written as s + length + UTF-8. */
static int parse_string(Parser *ps) {
    Buf *o = &ps->out;
    if (buf_byte(o, 's') || buf_u32(o, 0)) return oom(ps);
    size_t at = o->len;
    for (;;) {
        const unsigned char *q = plain_run(ps->p, ps->end);
        if (q > ps->p && buf_put(o, ps->p, (size_t)(q - ps->p))) return oom(ps);
        ps->p = q;
        if (q >= ps->end) return fail(ps, "unterminated string");
        unsigned char c = *q;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) return fail(ps, "control character in string");
        if (c >= 0x80) {
            int n = utf8_len(q, ps->end);
            /* a surrogate written as UTF-8 (ED A0..BF 80..BF): not strict, read as the stdlib reads bytes
             * ('surrogatepass'), and kept as it is, as a lone surrogate escape is */
            if (!n && !ps->strict && c == 0xED && ps->end - q > 2 && q[1] >= 0xA0 && q[1] <= 0xBF &&
                (q[2] & 0xC0) == 0x80)
                n = 3;
            if (!n) return fail(ps, "invalid UTF-8");
            if (buf_put(o, q, (size_t)n)) return oom(ps);
            ps->p += n;
            continue;
        }
        /* backslash */
        if (ps->end - q < 2) return fail(ps, "truncated escape");
        ps->p += 2;
        char e;
        switch (q[1]) {
            case '"': e = '"'; break;
            case '\\': e = '\\'; break;
            case '/': e = '/'; break;
            case 'b': e = '\b'; break;
            case 'f': e = '\f'; break;
            case 'n': e = '\n'; break;
            case 'r': e = '\r'; break;
            case 't': e = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (read_hex4(ps, &cp)) return -1;
                if (cp >= 0xD800 && cp <= 0xDBFF && ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u') {
                    const unsigned char *save = ps->p;
                    uint32_t lo;
                    ps->p += 2;
                    if (read_hex4(ps, &lo)) return -1;
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else {
                        ps->p = save; /* a lone high surrogate followed by another escape */
                    }
                }
                if (cp >= 0xD800 && cp <= 0xDFFF && ps->strict) return fail(ps, "lone surrogate");
                if (put_utf8(o, cp)) return oom(ps);
                continue;
            }
            default:
                return fail(ps, "bad escape");
        }
        if (buf_byte(o, e)) return oom(ps);
    }
    size_t n = o->len - at;
    if (n > 0xFFFFFFFFu) return fail(ps, "string too long");
    unsigned char *L = (unsigned char *)o->p + at - 4;
    L[0] = (unsigned char)n;
    L[1] = (unsigned char)(n >> 8);
    L[2] = (unsigned char)(n >> 16);
    L[3] = (unsigned char)(n >> 24);
    return 0;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number at ps->p. Sets *is_int (and *ival) for integer literals within int64, else *dval; *big for integer
 * literals beyond int64 (then the caller uses the text span). Returns -1 on a grammar error. */
static int lex_number(Parser *ps, int *kind, int64_t *ival, double *dval) {
    const unsigned char *s = ps->p, *p = ps->p, *end = ps->end;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') return fail(ps, "bad number");
    uint64_t m = 0;
    int digits = 0, dropped = 0; /* significant digits kept in m; integer digits beyond 19 */
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                dropped++;
            }
            p++;
        }
    }
    int frac = 0, exp10 = 0, isfloat = 0;
    if (p < end && *p == '.') {
        isfloat = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9') return fail(ps, "bad number");
        while (p < end && *p >= '0' && *p <= '9') {
            if (m == 0 && *p == '0') {
                frac++; /* zeros before the first significant digit add none */
            } else if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits++;
                frac++;
            } else {
                dropped++; /* too many digits for the fast path */
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        isfloat = 1;
        p++;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9') return fail(ps, "bad number");
        int e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000) e = e * 10 + (*p - '0');
            p++;
        }
        exp10 = eneg ? -e : e;
    }
    ps->p = p;
    if (!isfloat) {
        if (!dropped && (digits < 19 || m <= (uint64_t)INT64_MAX + (uint64_t)neg)) {
            *ival = neg ? (int64_t)(0 - m) : (int64_t)m;
            *kind = 'i';
            return 0;
        }
        *kind = 'I';
        return 0;
    }
    int e10 = exp10 - frac;
    if (digits <= 19 && !dropped && m < (1ULL << 53) && e10 >= -22 && e10 <= 22) {
        /* Clinger's fast path: both operands exact, one correctly rounded operation */
        double d = (double)m;
        d = e10 < 0 ? d / POW10[-e10] : d * POW10[e10];
        *dval = neg ? -d : d;
        *kind = 'd';
        return 0;
    }
    size_t n = (size_t)(p - s);
    char local[64];
    char *txt = n < sizeof local ? local : malloc(n + 1);
    if (!txt) return oom(ps);
    memcpy(txt, s, n);
    txt[n] = 0;
    /* The one Python call of the parse path (scan_lines runs without the GIL): rare, for numbers the fast path
     * above cannot round exactly. PyGILState_Ensure also works where the caller holds the GIL. */
    PyGILState_STATE gil = PyGILState_Ensure();
    double d = PyOS_string_to_double(txt, NULL, NULL); /* correctly rounded, locale-free; inf on overflow */
    int bad = d == -1.0 && PyErr_Occurred();
    if (bad) PyErr_Clear();
    PyGILState_Release(gil);
    if (txt != local) free(txt);
    if (bad) return fail(ps, "bad number");
    if (ps->strict && isinf(d)) return fail(ps, "number is infinite as a double"); /* as orjson */
    *dval = d;
    *kind = 'd';
    return 0;
}

static int put_double(Buf *o, double d) {
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        return buf_byte(o, 'i') || buf_u64(o, (uint64_t)(int64_t)d);
    }
    if (d != d) return buf_byte(o, 'd') || buf_u64(o, 0x7ff8000000000000ULL);
    return buf_byte(o, 'd') || buf_f64(o, d);
}

static int parse_value(Parser *ps, int field_depth);

static int parse_number(Parser *ps) {
    const unsigned char *s = ps->p;
    int kind;
    int64_t iv = 0;
    double dv = 0;
    if (lex_number(ps, &kind, &iv, &dv)) return -1;
    Buf *o = &ps->out;
    int r;
    if (kind == 'i') {
        r = buf_byte(o, 'i') || buf_u64(o, (uint64_t)iv);
    } else if (kind == 'I') {
        size_t n = (size_t)(ps->p - s);
        r = buf_byte(o, 'I') || buf_u32(o, (uint32_t)n) || buf_put(o, s, n);
    } else {
        r = put_double(o, dv);
    }
    return r ? oom(ps) : 0;
}

static int match_word(Parser *ps, const char *w, size_t n) {
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n)) return 0;
    ps->p += n;
    return 1;
}

/* field_depth: 1 while parsing the top-level object's members (record spans of id, collection, ...), 2 inside
 * its "properties" (datetime fields), 0 elsewhere. */
static int parse_object(Parser *ps, int field_depth) {
    Buf *o = &ps->out;
    if (buf_byte(o, '{')) return oom(ps);
    size_t first = ps->nmembers;
    size_t region = o->len;
    uint32_t order = 0;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return buf_byte(o, '}') ? oom(ps) : 0;
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a key");
        ps->p++;
        size_t seg = o->len;
        if (parse_string(ps)) return -1;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
        ps->p++;
        skip_ws(ps);
        int which = -1, sub = 0;
        if (field_depth) {
            const char *k = o->p + seg + 5;
            size_t kl = o->len - seg - 5;
#define IS(lit) (kl == sizeof(lit) - 1 && !memcmp(k, lit, kl))
            if (field_depth == 1) {
                if (IS("id")) which = F_ID;
                else if (IS("collection")) which = F_COLLECTION;
                else if (IS("bbox")) which = F_BBOX;
                else if (IS("geometry")) which = F_GEOMETRY;
                else if (IS("properties")) which = F_PROPERTIES, sub = 2;
            } else {
                if (IS("datetime")) which = F_DATETIME;
                else if (IS("start_datetime")) which = F_START;
                else if (IS("end_datetime")) which = F_END;
            }
#undef IS
        }
        const unsigned char *vstart = ps->p;
        if (which == F_PROPERTIES) {
            /* a later "properties" replaces an earlier one: forget datetimes seen in the earlier one */
            ps->f_start[F_DATETIME] = ps->f_start[F_START] = ps->f_start[F_END] = NULL;
        }
        if (parse_value(ps, sub)) return -1;
        if (which >= 0) {
            ps->f_start[which] = vstart;
            ps->f_end[which] = ps->p;
        }
        if (ps->nmembers == ps->capmembers) {
            size_t cap = ps->capmembers ? ps->capmembers * 2 : 64;
            Member *m = realloc(ps->members, cap * sizeof(Member));
            if (!m) return oom(ps);
            ps->members = m;
            ps->capmembers = cap;
        }
        ps->members[ps->nmembers++] = (Member){seg, o->len - seg, order++};
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        return fail(ps, "expected ',' or '}'");
    }
    size_t n = ps->nmembers - first;
    Member *ms = ps->members + first;
    int sorted = 1; /* strictly increasing keys: nothing to move or drop (the common case) */
    g_base = o->p;
    for (size_t i = 1; i < n && sorted; i++)
        if (key_cmp(&ms[i - 1], &ms[i]) >= 0) sorted = 0;
    if (!sorted) {
        g_base = o->p;
        if (n <= 24) { /* insertion sort: objects are small, and qsort's indirect calls cost more */
            for (size_t i = 1; i < n; i++) {
                Member m = ms[i];
                size_t j = i;
                while (j > 0 && member_cmp(&ms[j - 1], &m) > 0) {
                    ms[j] = ms[j - 1];
                    j--;
                }
                ms[j] = m;
            }
        } else {
            qsort(ms, n, sizeof(Member), member_cmp);
        }
        size_t total = o->len - region;
        ps->scratch.len = 0;
        if (buf_put(&ps->scratch, o->p + region, total)) return oom(ps);
        o->len = region;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n) { /* equal keys sort together by order: keep the last */
                const unsigned char *a = (const unsigned char *)ps->scratch.p + (ms[i].seg - region) + 1;
                const unsigned char *b = (const unsigned char *)ps->scratch.p + (ms[i + 1].seg - region) + 1;
                uint32_t la = a[0] | a[1] << 8 | a[2] << 16 | (uint32_t)a[3] << 24;
                uint32_t lb = b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24;
                if (la == lb && !memcmp(a + 4, b + 4, la)) continue;
            }
            if (buf_put(o, ps->scratch.p + (ms[i].seg - region), ms[i].seglen)) return oom(ps);
        }
    }
    ps->nmembers = first;
    return buf_byte(o, '}') ? oom(ps) : 0;
}

static int parse_array(Parser *ps) {
    Buf *o = &ps->out;
    if (buf_byte(o, '[')) return oom(ps);
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return buf_byte(o, ']') ? oom(ps) : 0;
    }
    for (;;) {
        skip_ws(ps);
        if (parse_value(ps, 0)) return -1;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            break;
        }
        return fail(ps, "expected ',' or ']'");
    }
    return buf_byte(o, ']') ? oom(ps) : 0;
}

static int parse_value(Parser *ps, int field_depth) {
    if (ps->p >= ps->end) return fail(ps, "expected a value");
    unsigned char c = *ps->p;
    int r;
    switch (c) {
        case '{':
        case '[':
            if (++ps->depth > MAX_DEPTH) return fail(ps, "nested too deeply");
            ps->p++;
            r = c == '{' ? parse_object(ps, field_depth) : parse_array(ps);
            ps->depth--;
            return r;
        case '"':
            ps->p++;
            return parse_string(ps);
        case 't':
            if (match_word(ps, "true", 4)) return buf_byte(&ps->out, 't') ? oom(ps) : 0;
            break;
        case 'f':
            if (match_word(ps, "false", 5)) return buf_byte(&ps->out, 'f') ? oom(ps) : 0;
            break;
        case 'n':
            if (match_word(ps, "null", 4)) return buf_byte(&ps->out, 'n') ? oom(ps) : 0;
            break;
        case 'N':
            if (!ps->strict && match_word(ps, "NaN", 3)) return put_double(&ps->out, NAN) ? oom(ps) : 0;
            break;
        case 'I':
            if (!ps->strict && match_word(ps, "Infinity", 8)) return put_double(&ps->out, INFINITY) ? oom(ps) : 0;
            break;
        case '-':
            if (!ps->strict && match_word(ps, "-Infinity", 9)) return put_double(&ps->out, -INFINITY) ? oom(ps) : 0;
            return parse_number(ps);
        default:
            if (c >= '0' && c <= '9') return parse_number(ps);
    }
    return fail(ps, "unexpected character");
}

/* Canonical stream of the document in [p, end) into ps->out (reset first). */
static int canonicalise(Parser *ps, const unsigned char *p, const unsigned char *end, int fields) {
    ps->p = p;
    ps->end = end;
    ps->err = NULL;
    ps->depth = 0;
    ps->nmembers = 0;
    ps->out.len = 0;
    memset(ps->f_start, 0, sizeof ps->f_start);
    memset(ps->f_end, 0, sizeof ps->f_end);
    skip_ws(ps);
    if (parse_value(ps, fields)) return -1;
    skip_ws(ps);
    if (ps->p != ps->end) return fail(ps, "trailing characters");
    return 0;
}

static void parser_free(Parser *ps) {
    buf_free(&ps->out);
    buf_free(&ps->scratch);
    free(ps->members);
    ps->members = NULL;
}

static PyObject *py_canonical(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"data", "strict", NULL};
    Py_buffer view;
    int strict = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|p", names, &view, &strict)) return NULL;
    Parser ps = {0};
    ps.strict = strict;
    const unsigned char *s = view.buf;
    int r = canonicalise(&ps, s, s + view.len, 0);
    PyObject *res = NULL;
    if (r) {
        PyErr_Format(PyExc_ValueError, "%s at byte %zd", ps.err, (Py_ssize_t)(ps.p - s));
    } else {
        res = PyBytes_FromStringAndSize(ps.out.p, (Py_ssize_t)ps.out.len);
    }
    parser_free(&ps);
    PyBuffer_Release(&view);
    return res;
}

/* hash_strings(offsets, data): a 64-bit hash of each string of an Arrow string column (int32 offsets). FNV-1a
 * with a splitmix64 finish: not cryptographic, only to prove quickly that keys are distinct (equal hashes send the
 * caller to an exact check). */
static PyObject *py_hash_strings(PyObject *self, PyObject *args) {
    Py_buffer offv, datav;
    if (!PyArg_ParseTuple(args, "y*y*", &offv, &datav)) return NULL;
    Py_ssize_t n = offv.len / 4 - 1;
    Buf out = {0};
    PyObject *res = NULL;
    if (n < 0 || buf_reserve(&out, (size_t)(n > 0 ? n : 0) * 8 + 1)) {
        if (n < 0) PyErr_SetString(PyExc_ValueError, "offsets must hold at least one int32");
        else PyErr_NoMemory();
        goto done;
    }
    const unsigned char *d = datav.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t a = load_i32(offv.buf, i), b = load_i32(offv.buf, i + 1);
        if (a < 0 || b < a || (Py_ssize_t)b > datav.len) {
            PyErr_SetString(PyExc_ValueError, "offsets out of range");
            goto done;
        }
        uint64_t h = 0xcbf29ce484222325ULL;
        for (int32_t k = a; k < b; k++) h = (h ^ d[k]) * 0x100000001b3ULL;
        h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ULL, h ^= h >> 27, h *= 0x94d049bb133111ebULL, h ^= h >> 31;
        memcpy(out.p + out.len, &h, 8);
        out.len += 8;
    }
    res = buf_to_block(&out);
done:
    buf_free(&out);
    PyBuffer_Release(&offv);
    PyBuffer_Release(&datav);
    return res;
}

#include "_kernel_scan.h"
#include "_kernel_props.h"
#include "_kernel_assets.h"
#include "_kernel_patch.h" /* after _kernel_props.h: it checks texts and pages with pv_valid */

/* canonical_texts(offsets, data) -> (ok, offsets, streams): the canonical stream of each JSON text of a string
 * column (int64 offsets into data), end to end (uint32 offsets), as `canonical` gives it one at a time; ok[i] is
 * 0 where text i does not parse (its stream is empty: the caller takes the Python path for it). No GIL. */
static PyObject *py_canonical_texts(PyObject *self, PyObject *args) {
    Py_buffer offv, datav;
    if (!PyArg_ParseTuple(args, "y*y*", &offv, &datav)) return NULL;
    Py_ssize_t n = offv.len / 8 - 1;
    Buf ok = {0}, coff = {0}, canon = {0};
    Parser ps = {0};
    PyObject *res = NULL;
    int err = 0, bad = 0;
    const unsigned char *d = datav.buf;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold at least one int64");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    err = put_off(&coff, 0) || buf_reserve(&ok, (size_t)n + 1);
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        int64_t a = load_i64(offv.buf, i), b = load_i64(offv.buf, i + 1);
        if (a < 0 || b < a || b > (int64_t)datav.len) {
            bad = 1;
            break;
        }
        int r = canonicalise(&ps, d + a, d + b, 0);
        ps.err = NULL;
        err = buf_byte(&ok, r ? 0 : 1) || (!r && buf_put(&canon, ps.out.p, ps.out.len)) || put_off(&coff, canon.len);
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
    } else if (err) {
        PyErr_NoMemory();
    } else {
        res = Py_BuildValue("(NNN)", buf_to_block(&ok), buf_to_block(&coff), buf_to_block(&canon));
    }
done:
    buf_free(&ok), buf_free(&coff), buf_free(&canon);
    parser_free(&ps);
    PyBuffer_Release(&offv);
    PyBuffer_Release(&datav);
    return res;
}


#include "_kernel_parquet.h"
#include "_kernel_wkt.h"
#include "_kernel_assemble.h"

static PyObject *py_drop_spare(PyObject *self, PyObject *unused) {
    char *p = spare_take();
    size_t cap = 0;
    if (p) memcpy(&cap, p, sizeof cap);
    free(p);
    return PyLong_FromSize_t(cap);
}

static PyMethodDef methods[] = {
    {"canonical", (PyCFunction)(void (*)(void))py_canonical, METH_VARARGS | METH_KEYWORDS,
     "canonical(data, strict=False) -> bytes: the canonical stream of one JSON document."},
    {"scan_lines", (PyCFunction)(void (*)(void))py_scan_lines, METH_VARARGS,
     "scan_lines(data, default_collection) -> tuple: stage columns of an NDJSON block as raw buffers, the lines\n"
     "left to Python, and the number of lines."},
    {"page_index", (PyCFunction)py_page_index, METH_VARARGS,
     "page_index(page) -> (head, rows) | None: a STAC API page without its features, and per feature the texts "
     "of id and properties.datetime/start_datetime/end_datetime."},
    {"page_features", (PyCFunction)py_page_features, METH_VARARGS,
     "page_features(page) -> (block, count) | None: a STAC API page's features, minified, one per line."},
    {"canonical_texts", (PyCFunction)py_canonical_texts, METH_VARARGS,
     "canonical_texts(offsets, data) -> (ok, offsets, streams): canonical streams of a column of JSON texts."},
    {"hash_strings", (PyCFunction)py_hash_strings, METH_VARARGS,
     "hash_strings(offsets, data) -> Block: a 64-bit hash (uint64) of each string of an Arrow string column."},
    {"property_values", (PyCFunction)py_property_values, METH_VARARGS,
     "property_values(offsets, data[, member]) -> 11 Blocks: the members of each item's properties (or member) "
     "object in a string column of item texts, an entry per member (see _kernel_props.h), and the rows left to "
     "Python."},
    {"asset_fields", (PyCFunction)py_asset_fields, METH_VARARGS,
     "asset_fields(offsets, data) -> 17 Blocks: per asset of each item text its key, whether it is an object, "
     "href, type and roles (see _kernel_assets.h), and the rows left to Python."},
    {"patch_items", (PyCFunction)py_patch_items, METH_VARARGS,
     "patch_items(offsets, data, paths, values, stamp) -> tuple: `update --set` on item texts (see _kernel_patch.h)."},
    {"plain_take", (PyCFunction)py_plain_take, METH_VARARGS,
     "plain_take(page, rows) -> (offsets, data): chosen values of a PLAIN BYTE_ARRAY Parquet page."},
    {"wkt_geometries", (PyCFunction)py_wkt_geometries, METH_VARARGS,
     "wkt_geometries(offsets, data) -> (ok, json offsets, json, wkb offsets, wkb, bounds, canonical offsets, "
     "canonical): WKT as shapely reads it."},
    {"take_chunk", (PyCFunction)py_take_chunk, METH_VARARGS,
     "take_chunk(chunk, codec, rows) -> (offsets, data) | None: chosen values of a required BYTE_ARRAY column chunk."},
    {"parquet_pages", (PyCFunction)py_parquet_pages, METH_VARARGS,
     "parquet_pages(chunk) -> Block: per page of a Parquet column chunk, 7 int64 (see _kernel_parquet.h)."},
    {"assemble_items", (PyCFunction)py_assemble_items, METH_VARARGS,
     "assemble_items(text ops, canonical ops, pool, columns, rows[, pieces]) -> (text offsets, texts, canonical ends, "
     "canonical streams): item texts from a compiled mapping (see _kernel_assemble.h)."},
    {"drop_spare", (PyCFunction)py_drop_spare, METH_NOARGS,
     "drop_spare() -> int: free the large block kept back for the next large buffer; its size (0: none)."},
    {"json_double", (PyCFunction)py_json_double, METH_O,
     "json_double(x) -> str: x as JSON text, as the item assembly (and DuckDB's to_json) writes it."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (PyType_Ready(&BlockType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
#ifdef STACBATCH_XXH3
    if (PyModule_AddIntConstant(m, "XXH3", 1) < 0) {
#else
    if (PyModule_AddIntConstant(m, "XXH3", 0) < 0) {
#endif
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&BlockType);
    if (PyModule_AddObject(m, "Block", (PyObject *)&BlockType) < 0) {
        Py_DECREF(&BlockType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

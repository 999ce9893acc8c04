/* Parquet column chunks for stage/_pages.py (types: _kernel.pyi): the Thrift compact page headers of a chunk, the
 * values at chosen rows of a PLAIN BYTE_ARRAY page, and a whole chunk read page by page with a bounds-checked
 * decoder of LZ4 blocks (Parquet's LZ4_RAW), so only the pages holding a wanted row are decompressed. Other codecs
 * stay with pyarrow (the caller decompresses and calls plain_take). Every length read from the chunk is checked
 * against it: a malformed chunk is a ValueError, never a read outside it.
 *
 * Included by _kernel.c (uses Buf and Block).
 */

/* ---------------------------------------------------------------- Thrift compact protocol (reading only) */

typedef struct {
    const unsigned char *p, *end;
    int bad;
} TReader;

static uint64_t t_varint(TReader *r) {
    uint64_t v = 0;
    for (int shift = 0; r->p < r->end && shift < 64; shift += 7) {
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = 1;
    return 0;
}

static int64_t t_zigzag(uint64_t n) { return (int64_t)(n >> 1) ^ -(int64_t)(n & 1); }

static void t_skip(TReader *r, int type, int depth, int in_container);

/* Read a struct's fields; the integer fields listed in ids[0..n) land in vals (others are skipped). */
static void t_struct(TReader *r, int depth, const int *ids, int64_t *vals, int n, int sub_id, int64_t *sub_vals,
                     const int *sub_ids, int sub_n) {
    if (depth > 32) {
        r->bad = 1;
        return;
    }
    int fid = 0;
    while (!r->bad) {
        if (r->p >= r->end) {
            r->bad = 1;
            return;
        }
        unsigned char h = *r->p++;
        if (h == 0) return;
        int type = h & 0x0F, delta = h >> 4;
        fid = delta ? fid + delta : (int)t_zigzag(t_varint(r));
        int k = 0;
        while (k < n && ids[k] != fid) k++;
        if (k < n && type >= 3 && type <= 6) {
            vals[k] = type == 3 ? (r->p < r->end ? (int64_t)(signed char)*r->p++ : (r->bad = 1, 0))
                                : t_zigzag(t_varint(r));
        } else if (fid == sub_id && type == 12) {
            t_struct(r, depth + 1, sub_ids, sub_vals, sub_n, -1, NULL, NULL, 0);
        } else {
            t_skip(r, type, depth + 1, 0);
        }
    }
}

static void t_skip(TReader *r, int type, int depth, int in_container) {
    if (depth > 32) {
        r->bad = 1;
        return;
    }
    switch (type) {
    case 1:
    case 2: /* a boolean is in its field header, but takes a byte inside lists and maps */
        if (in_container) {
            if (r->p >= r->end) r->bad = 1;
            else r->p++;
        }
        return;
    case 3:
        if (r->p >= r->end) r->bad = 1;
        else r->p++;
        return;
    case 4:
    case 5:
    case 6:
        t_varint(r);
        return;
    case 7:
        if (r->end - r->p < 8) r->bad = 1;
        else r->p += 8;
        return;
    case 8: {
        uint64_t n = t_varint(r);
        if ((uint64_t)(r->end - r->p) < n) r->bad = 1;
        else r->p += n;
        return;
    }
    case 9:
    case 10: {
        if (r->p >= r->end) {
            r->bad = 1;
            return;
        }
        unsigned char h = *r->p++;
        uint64_t n = h >> 4;
        if (n == 15) n = t_varint(r);
        for (uint64_t i = 0; i < n && !r->bad; i++) t_skip(r, h & 0x0F, depth + 1, 1);
        return;
    }
    case 11: {
        uint64_t n = t_varint(r);
        if (!n) return;
        if (r->p >= r->end) {
            r->bad = 1;
            return;
        }
        unsigned char kv = *r->p++;
        for (uint64_t i = 0; i < n && !r->bad; i++) {
            t_skip(r, kv >> 4, depth + 1, 1);
            t_skip(r, kv & 0x0F, depth + 1, 1);
        }
        return;
    }
    case 12:
        t_struct(r, depth, NULL, NULL, 0, -1, NULL, NULL, 0);
        return;
    default:
        r->bad = 1;
    }
}

/* parquet_pages(chunk) -> Block: for each page of a column chunk (headers and bodies end to end), 7 int64:
 * first row (counting the values of the data pages before it), values, offset of the body in the chunk, body size,
 * uncompressed size, page type, encoding (-1 when the page has no DataPageHeader). Only v1 data pages count values:
 * other pages give 0 (the caller refuses chunks with them). ValueError on a malformed header. No GIL. */
static PyObject *py_parquet_pages(PyObject *self, PyObject *args) {
    Py_buffer cv;
    if (!PyArg_ParseTuple(args, "y*", &cv)) return NULL;
    Buf out = {0};
    int err = 0, bad = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *base = cv.buf;
    TReader r = {base, base + cv.len, 0};
    static const int head_ids[3] = {1, 2, 3}, data_ids[2] = {1, 2};
    int64_t row = 0;
    while (r.p < r.end && !err) {
        int64_t head[3] = {-1, -1, -1}, data[2] = {0, -1};
        t_struct(&r, 0, head_ids, head, 3, 5, data, data_ids, 2);
        if (r.bad || head[0] < 0 || head[1] < 0 || head[2] < 0 || r.end - r.p < head[2]) {
            bad = 1;
            break;
        }
        int64_t n = head[0] == 0 ? data[0] : 0;
        if (n < 0 || n > INT64_MAX - row) { /* a count no page holds (and row must not overflow) */
            bad = 1;
            break;
        }
        int64_t rec[7] = {row, n, (int64_t)(r.p - base), head[2], head[1], head[0], data[1]};
        for (int k = 0; k < 7 && !err; k++) err = buf_u64(&out, (uint64_t)rec[k]);
        row += n;
        r.p += head[2];
    }
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (bad) PyErr_SetString(PyExc_ValueError, "malformed Parquet page header");
    else if (err) PyErr_NoMemory();
    else res = buf_to_block(&out);
    buf_free(&out);
    PyBuffer_Release(&cv);
    return res;
}

/* Copy out of a PLAIN BYTE_ARRAY page p[0..len) (each value: u32 LE length, then its bytes; no levels) the values
 * at rows[*i..] below `limit`, positions counted from `first` (the page's first value); *i moves past them.
 * 0, -1 (malformed page, or a position out of order or beyond it) or -2 (no memory). */
static int plain_copy(const unsigned char *p, size_t len, const void *rows, Py_ssize_t n, Py_ssize_t *i,
                      int64_t first, int64_t limit, Buf *off, Buf *out) {
    size_t pos = 0;
    int64_t at = 0;
    for (; *i < n && load_i64(rows, *i) < limit; (*i)++) {
        int64_t want = load_i64(rows, *i) - first;
        for (;;) {
            if (want < at || len - pos < 4) return -1;
            uint32_t l = (uint32_t)p[pos] | (uint32_t)p[pos + 1] << 8 | (uint32_t)p[pos + 2] << 16 |
                         (uint32_t)p[pos + 3] << 24;
            if (len - pos - 4 < l) return -1;
            pos += 4 + (size_t)l;
            if (at++ == want) {
                if (buf_put(out, p + pos - l, l) || buf_u64(off, out->len)) return -2;
                break;
            }
        }
    }
    return 0;
}

/* plain_take(page, rows) -> (offsets, data): the values at positions `rows` (int64, ascending, counted from the
 * page's first value) of a decompressed Parquet v1 data page of a required BYTE_ARRAY column in PLAIN encoding
 * (each value: u32 LE length, then its bytes; no levels), as int64 offsets (n + 1) and the values end to end.
 * Raises ValueError when a position is out of order or beyond the page. No GIL. */
static PyObject *py_plain_take(PyObject *self, PyObject *args) {
    Py_buffer pv, rv;
    if (!PyArg_ParseTuple(args, "y*y*", &pv, &rv)) return NULL;
    const unsigned char *p = pv.buf;
    const size_t len = (size_t)pv.len;
    const void *rows = rv.buf; /* int64, maybe unaligned: load_i64 */
    const Py_ssize_t n = rv.len / 8;
    Buf off = {0}, out = {0};
    PyObject *res = NULL;
    int err = 0, bad = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    int r = buf_u64(&off, 0) ? -2 : plain_copy(p, len, rows, n, &i, 0, INT64_MAX, &off, &out);
    err = r == -2;
    bad = r == -1;
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "row positions out of order or beyond the page");
    } else if (err) {
        PyErr_NoMemory();
    } else {
        res = Py_BuildValue("(NN)", buf_to_block(&off), buf_to_block(&out));
    }
    buf_free(&off), buf_free(&out);
    PyBuffer_Release(&pv);
    PyBuffer_Release(&rv);
    return res;
}


/* ---------------------------------------------------------------- LZ4 block format (raw, as Parquet's LZ4_RAW)
 *
 * Decode one block into dst (exactly `cap` bytes expected: a page's uncompressed size). Every read and write is
 * bounds-checked: a malformed block gives -1, never a read or write outside the buffers. */
static int lz4_block(const unsigned char *ip, size_t n, unsigned char *dst, size_t cap) {
    const unsigned char *iend = ip + n;
    unsigned char *op = dst, *oend = dst + cap;
    for (;;) {
        if (ip >= iend) return -1;
        unsigned token = *ip++;
        size_t lit = token >> 4;
        if (lit == 15) {
            unsigned char b;
            do {
                if (ip >= iend) return -1;
                b = *ip++;
                lit += b;
            } while (b == 255);
        }
        if (lit <= 16 && iend - ip >= 16 && oend - op >= 16) {
            memcpy(op, ip, 16); /* short literals: one fixed-size copy (the extra bytes are overwritten later) */
        } else {
            if ((size_t)(iend - ip) < lit || (size_t)(oend - op) < lit) return -1;
            memcpy(op, ip, lit);
        }
        op += lit, ip += lit;
        if (ip == iend) break; /* the last sequence has literals only */
        if (iend - ip < 2) return -1;
        size_t off = (size_t)ip[0] | (size_t)ip[1] << 8;
        ip += 2;
        if (off == 0 || off > (size_t)(op - dst)) return -1;
        size_t len = token & 15;
        if (len == 15) {
            unsigned char b;
            do {
                if (ip >= iend) return -1;
                b = *ip++;
                len += b;
            } while (b == 255);
        }
        len += 4;
        if ((size_t)(oend - op) < len) return -1;
        const unsigned char *m = op - off;
        if (off >= 8 && (size_t)(oend - op) >= len + 8) {
            for (size_t k = 0; k < len; k += 8) memcpy(op + k, m + k, 8); /* 8 behind or more: each read is written */
        } else if (off >= len) {
            memcpy(op, m, len);
        } else { /* the match overlaps what it writes: a repeating pattern */
            for (size_t i = 0; i < len; i++) op[i] = m[i];
        }
        op += len;
    }
    return op == oend ? 0 : -1;
}

/* take_chunk(chunk, codec, rows) -> (offsets, data) | None: plain_take over a whole column chunk of a required
 * BYTE_ARRAY column: only the pages holding one of `rows` (int64, ascending, counted from the chunk's first value)
 * are decompressed (codec 0: stored, 1: LZ4_RAW). None when a page is not a PLAIN v1 data page (the caller reads
 * the chunk another way); ValueError when the chunk or a page is malformed. No GIL. */
static PyObject *py_take_chunk(PyObject *self, PyObject *args) {
    Py_buffer cv, rv;
    int codec;
    if (!PyArg_ParseTuple(args, "y*iy*", &cv, &codec, &rv)) return NULL;
    const void *rows = rv.buf; /* int64, maybe unaligned: load_i64 */
    const Py_ssize_t n = rv.len / 8;
    Buf off = {0}, out = {0}, scratch = {0};
    int err = 0, bad = 0, unsupported = codec != 0 && codec != 1;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *base = cv.buf;
    TReader r = {base, base + cv.len, 0};
    static const int head_ids[3] = {1, 2, 3}, data_ids[2] = {1, 2};
    int64_t first = 0;
    Py_ssize_t i = 0;
    err = buf_u64(&off, 0);
    while (i < n && r.p < r.end && !err && !bad && !unsupported) {
        int64_t head[3] = {-1, -1, -1}, data[2] = {0, -1};
        t_struct(&r, 0, head_ids, head, 3, 5, data, data_ids, 2);
        if (r.bad || head[0] < 0 || head[1] < 0 || head[2] < 0 || r.end - r.p < head[2]) {
            bad = 1;
            break;
        }
        if (head[0] != 0 || data[1] != 0) {
            unsupported = 1;
            break;
        }
        const unsigned char *body = r.p;
        r.p += head[2];
        int64_t count = data[0];
        /* LZ4 writes at most 255 bytes per byte read (a match length byte): a larger uncompressed size is a broken
         * header, not a buffer to allocate */
        if (count < 0 || count > INT64_MAX - first || (codec == 1 && head[1] / 256 > head[2] + 1)) {
            bad = 1;
            break;
        }
        int64_t want = load_i64(rows, i);
        if (want < first) {
            bad = 1;
            break;
        }
        if (want - first >= count) {
            first += count;
            continue;
        }
        const unsigned char *p = body;
        size_t len = (size_t)head[2];
        if (codec == 1) {
            scratch.len = 0;
            if (buf_reserve(&scratch, (size_t)head[1] + 1)) {
                err = 1;
                break;
            }
            if (lz4_block(body, (size_t)head[2], (unsigned char *)scratch.p, (size_t)head[1])) {
                bad = 1;
                break;
            }
            p = (const unsigned char *)scratch.p;
            len = (size_t)head[1];
        }
        int got = plain_copy(p, len, rows, n, &i, first, first + count, &off, &out);
        err = got == -2;
        bad = got == -1;
        first += count;
    }
    if (!bad && !unsupported && !err && i < n) bad = 1; /* rows beyond the chunk */
    Py_END_ALLOW_THREADS
    PyObject *res = NULL;
    if (unsupported) {
        res = Py_NewRef(Py_None);
    } else if (bad) {
        PyErr_SetString(PyExc_ValueError, "malformed page, or row positions out of order or beyond the chunk");
    } else if (err) {
        PyErr_NoMemory();
    } else {
        res = Py_BuildValue("(NN)", buf_to_block(&off), buf_to_block(&out));
    }
    buf_free(&off), buf_free(&out), buf_free(&scratch);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&rv);
    return res;
}

/* Edits and reads of JSON texts by their bytes, without parsing them into Python objects: `update --set` on stored
 * item texts (patch_items), and the STAC API page readers (page_features, page_index; types: _kernel.pyi).
 * Included by _kernel.c after _kernel_scan.h (its readers over validated JSON) and _kernel_props.h (pv_valid).
 *
 * patch_items: per item, each step sets the value at a path of object keys to a JSON text: the member's value is
 * replaced in place (the rest of the text keeps its bytes) or, when absent from an existing parent object, appended
 * to it as Python's dict assignment would. A step "moves" when the value changes under canonical equality. When any
 * step moved, properties.updated is set the same way. Anything else (a missing, null or non-object parent, duplicate
 * or escaped keys on the way, a text or value orjson would not read) leaves the item to the Python path, which
 * creates parents and words the errors.
 *
 * The page readers check the whole page to orjson's rules first (pv_valid): a page that is not valid JSON as a
 * whole is a broken response, which the Python path refuses (and asks again for), so they refuse it too (None),
 * even when the damage is inside one feature. Only then do they walk it with the readers of _kernel_scan.h.
 */

typedef struct {
    const unsigned char *vs, *ve; /* the member's value, when found */
    const unsigned char *close;   /* the object's closing brace */
    int empty;                    /* the object has no members */
} Slot;

/* In the object at p (its '{'), the member named key. 1 found, 0 absent, -1 leave to Python. */
static int find_member(const unsigned char *p, const unsigned char *end, const char *key, size_t klen, Slot *slot) {
    p = ws(p, end);
    if (p >= end || *p != '{') return -1;
    p = ws(p + 1, end);
    slot->vs = slot->ve = NULL;
    slot->empty = 0;
    if (p < end && *p == '}') {
        slot->close = p;
        slot->empty = 1;
        return 0;
    }
    int found = 0;
    for (;;) {
        const unsigned char *k;
        size_t kl;
        if (!plain_string(p, end, &k, &kl)) return -1; /* an escaped key might equal ours: let Python decide */
        p = ws(k + kl + 1, end);
        if (p >= end || *p != ':') return -1;
        const unsigned char *v = ws(p + 1, end);
        p = skip(v, end);
        if (kl == klen && !memcmp(k, key, klen)) {
            if (found) return -1; /* duplicate keys */
            found = 1;
            slot->vs = v;
            slot->ve = p;
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            slot->close = p;
            return found;
        }
        return -1;
    }
}

static int plain_key(const char *k, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 0x20 || c == '"' || c == '\\') return 0;
    }
    return 1;
}

/* Where the object under the first key of the last path stands in the document (its '{'), so that the next path
 * under the same key starts there instead of scanning the members before it again (a set per asset key walked past
 * the geometry and properties once per key). Valid while every edit falls inside that object: its start does not
 * move. A path under another key, or of depth 1, forgets it. */
typedef struct {
    PyObject *key; /* the first key (the path tuple's own object: compared by value) */
    size_t off;    /* offset of its object's '{' */
} FirstLevel;

/* Set path = value (JSON text) in the document held by `doc` (replaced by the result in `tmp`, then swapped).
 * 1 moved, 0 unchanged, -1 leave to Python. optional: a missing or non-object parent means nothing to do.
 * first: the FirstLevel cache of this document, or NULL. */
static int set_path(Parser *cmp, Buf *doc, Buf *tmp, PyObject *path, const char *val, size_t vlen, int optional,
                    FirstLevel *first) {
    const unsigned char *s = (const unsigned char *)doc->p, *end = s + doc->len;
    const unsigned char *obj = s;
    Py_ssize_t depth = PyTuple_GET_SIZE(path);
    Slot slot;
    Py_ssize_t start = 0;
    if (first) {
        PyObject *k0 = PyTuple_GET_ITEM(path, 0);
        if (depth > 1 && first->key && PyUnicode_Check(k0) && PyUnicode_Compare(first->key, k0) == 0) {
            obj = s + first->off;
            start = 1;
        } else {
            first->key = NULL; /* another key, or a member of the document itself: edits may move anything */
        }
    }
    for (Py_ssize_t i = start; i < depth; i++) {
        Py_ssize_t klen;
        const char *key = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(path, i), &klen);
        if (!key) {
            PyErr_Clear();
            return -1;
        }
        int r = find_member(obj, end, key, (size_t)klen, &slot);
        if (r < 0) return -1;
        if (i + 1 < depth) {
            if (r == 0) return optional ? 0 : -1; /* a missing parent: Python creates it */
            obj = ws(slot.vs, end);
            if (*obj != '{') return optional ? 0 : -1; /* null (Python creates it), or not an object (an error) */
            if (i == 0 && first) {
                first->key = PyTuple_GET_ITEM(path, 0);
                first->off = (size_t)(obj - s);
            }
            continue;
        }
        tmp->len = 0;
        if (r == 1) {
            /* compare under canonical equality: the old value's stream, then the new one's */
            if (canonicalise(cmp, slot.vs, slot.ve, 0)) return -1;
            Buf old = cmp->out;
            cmp->out = (Buf){0};
            int c = canonicalise(cmp, (const unsigned char *)val, (const unsigned char *)val + vlen, 0);
            int same = !c && old.len == cmp->out.len && !memcmp(old.p, cmp->out.p, old.len);
            buf_free(&cmp->out);
            cmp->out = old;
            if (c) return -1;
            if (same) return 0;
            if (buf_put(tmp, s, (size_t)(slot.vs - s)) || buf_put(tmp, val, vlen) ||
                buf_put(tmp, slot.ve, (size_t)(end - slot.ve)))
                return -1;
        } else {
            if (!plain_key(key, (size_t)klen)) return -1;
            if (canonicalise(cmp, (const unsigned char *)val, (const unsigned char *)val + vlen, 0)) return -1;
            if (buf_put(tmp, s, (size_t)(slot.close - s)) || (!slot.empty && buf_byte(tmp, ',')) ||
                buf_byte(tmp, '"') || buf_put(tmp, key, (size_t)klen) || buf_put(tmp, "\":", 2) ||
                buf_put(tmp, val, vlen) || buf_put(tmp, slot.close, (size_t)(end - slot.close)))
                return -1;
        }
        Buf swap = *doc;
        *doc = *tmp;
        *tmp = swap;
        return 1;
    }
    return -1;
}

/* patch_items(offsets, data, paths, values, stamp) -> (status, moved, text_offsets, texts, canon_offsets, canon)
 * offsets/data: the item texts (int32 offsets, n + 1 of them); paths: tuple of tuples of keys; values: per step a
 * list of n JSON texts, or None where that step leaves the item alone; stamp: the JSON text of properties.updated,
 * or None for no stamp.
 * status per item: 0 unchanged, 1 changed, 2 left to Python; moved: per item a uint32 mask of the steps that
 * moved (bit 31: properties.updated). Texts and streams are given for changed items only, in order. ValueError
 * when an offset is negative, goes back or points past data (checked for every item before any work). */
static PyObject *py_patch_items(PyObject *self, PyObject *args) {
    Py_buffer offv, datav;
    PyObject *paths, *values, *stamp;
    if (!PyArg_ParseTuple(args, "y*y*O!O!O", &offv, &datav, &PyTuple_Type, &paths, &PyList_Type, &values, &stamp))
        return NULL;
    Py_ssize_t steps = PyTuple_GET_SIZE(paths);
    Py_ssize_t n = offv.len / 4 - 1;
    PyObject *res = NULL, *updated = NULL;
    const char *stamp_text = NULL;
    Py_ssize_t stamp_len = 0;
    if (steps > 31 || PyList_GET_SIZE(values) != steps) {
        PyErr_SetString(PyExc_ValueError, "patch_items: one list of values per path, at most 31");
        goto done;
    }
    for (Py_ssize_t k = 0; k < steps; k++) {
        PyObject *v = PyList_GET_ITEM(values, k);
        if (!PyList_Check(v) || PyList_GET_SIZE(v) != n || !PyTuple_Check(PyTuple_GET_ITEM(paths, k))) {
            PyErr_SetString(PyExc_ValueError, "patch_items: values must be lists of one text per item");
            goto done;
        }
    }
    if (stamp != Py_None) {
        stamp_text = PyUnicode_AsUTF8AndSize(stamp, &stamp_len);
        if (!stamp_text) goto done;
        updated = Py_BuildValue("(ss)", "properties", "updated");
        if (!updated) goto done;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold at least one int32");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* all checked before any work: a bad column is refused whole */
        int32_t a = load_i32(offv.buf, i), b = load_i32(offv.buf, i + 1);
        if (a < 0 || b < a || (Py_ssize_t)b > datav.len) {
            PyErr_SetString(PyExc_ValueError, "offsets out of range");
            goto done;
        }
    }
    const char *data = datav.buf;
    Buf status = {0}, moved = {0}, toff = {0}, texts = {0}, coff = {0}, canon = {0}, doc = {0}, tmp = {0};
    Parser cmp = {0};
    cmp.strict = 1; /* a text or value orjson would not read (NaN, 1e400, a lone surrogate) goes to Python */
    int err = put_off(&toff, 0) || put_off(&coff, 0);
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        int32_t a = load_i32(offv.buf, i), b = load_i32(offv.buf, i + 1);
        doc.len = 0;
        err = buf_put(&doc, data + a, (size_t)(b - a));
        uint32_t mask = 0;
        int st = 0;
        FirstLevel first = {NULL, 0};
        for (Py_ssize_t k = 0; k < steps && !err; k++) {
            Py_ssize_t vlen;
            PyObject *value = PyList_GET_ITEM(PyList_GET_ITEM(values, k), i);
            if (value == Py_None) continue; /* nothing to set at this path for this item (keep_if_null) */
            const char *v = PyUnicode_AsUTF8AndSize(value, &vlen);
            if (!v) {
                PyErr_Clear();
                st = 2;
                break;
            }
            int r = set_path(&cmp, &doc, &tmp, PyTuple_GET_ITEM(paths, k), v, (size_t)vlen, 0, &first);
            if (r < 0) {
                st = 2;
                break;
            }
            if (r) mask |= 1u << k;
        }
        if (st == 0 && mask && updated) { /* properties.updated, when properties is an object (as Python) */
            int u = set_path(&cmp, &doc, &tmp, updated, stamp_text, (size_t)stamp_len, 1, NULL);
            if (u < 0) st = 2;
            else if (u) mask |= 1u << 31;
        }
        if (st == 0 && !mask) {
            /* Unchanged: the steps read only the members on their paths, so check the rest as the Python path would
             * read it (a changed item is checked by its canonical stream below, the values it replaced by theirs). */
            int valid = pv_valid((const unsigned char *)doc.p, (const unsigned char *)doc.p + doc.len);
            if (valid < 0) err = 1;
            else if (!valid) st = 2;
        }
        if (st == 0 && mask) {
            st = 1;
            if (canonicalise(&cmp, (const unsigned char *)doc.p, (const unsigned char *)doc.p + doc.len, 0)) {
                st = 2;
            } else {
                err = buf_put(&texts, doc.p, doc.len) || put_off(&toff, texts.len) ||
                      buf_put(&canon, cmp.out.p, cmp.out.len) || put_off(&coff, canon.len);
            }
        }
        if (!err) err = buf_byte(&status, (char)st) || buf_u32(&moved, st == 1 ? mask : 0);
    }
    if (err) {
        PyErr_NoMemory();
    } else {
        /* handed over as Blocks, not copied into bytes */
        Buf *outs[6] = {&status, &moved, &toff, &texts, &coff, &canon};
        res = PyTuple_New(6);
        for (int i = 0; res && i < 6; i++) {
            PyObject *b = buf_to_block(outs[i]);
            if (!b) {
                Py_CLEAR(res);
                break;
            }
            PyTuple_SET_ITEM(res, i, b);
        }
    }
    buf_free(&status), buf_free(&moved), buf_free(&toff), buf_free(&texts), buf_free(&coff), buf_free(&canon);
    buf_free(&doc), buf_free(&tmp);
    parser_free(&cmp);
done:
    Py_XDECREF(updated);
    PyBuffer_Release(&offv);
    PyBuffer_Release(&datav);
    return res;
}

/* In an array, after the element ending at e: 1 and *p at the next element, 0 at the closing bracket, -1 for
 * anything else. */
static int next_element(const unsigned char **p, const unsigned char *e, const unsigned char *end) {
    const unsigned char *q = ws(e, end);
    if (q < end && *q == ',') {
        *p = ws(q + 1, end);
        return 1;
    }
    return q < end && *q == ']' ? 0 : -1;
}

/* page_features(page) -> (block, count): the members of the page's top-level "features" array, each minified
 * (whitespace outside strings dropped; nothing else changes) on a line of its own, for scan_lines. None when the
 * page is not valid JSON as orjson reads it, has no such array, or holds something the minifier does not take (the
 * caller decodes it then, and refuses what is not JSON). */
/* A page's "features" array, after checking the whole page is JSON as orjson reads it (a page that is not is a
 * broken response: refused whole). Sets *ok (0: not a page of features), *nomem; returns the first feature's
 * position, or slot->ve when there are none. Runs without the GIL. */
static const unsigned char *open_features(const unsigned char *s, const unsigned char *end, Slot *slot, int *ok,
                                          int *nomem) {
    int valid = pv_valid(s, end);
    *nomem = valid < 0;
    *ok = valid > 0 && find_member(s, end, "features", 8, slot) == 1;
    const unsigned char *p = *ok ? ws(slot->vs, slot->ve) : NULL;
    if (*ok && (p >= slot->ve || *p != '[')) *ok = 0;
    if (!*ok) return NULL;
    p = ws(p + 1, slot->ve);
    return (p < slot->ve && *p == ']') ? slot->ve : p; /* no features: at the end */
}

static PyObject *py_page_features(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    const unsigned char *s = view.buf, *end = s + view.len;
    PyObject *res = NULL;
    Slot slot;
    Buf out = {0};
    Py_ssize_t count = 0;
    int ok, nomem = 0;
    Py_BEGIN_ALLOW_THREADS /* pure C until the result is built */
    const unsigned char *p = open_features(s, end, &slot, &ok, &nomem);
    if (ok) {
        while (ok && p < slot.ve) {
            const unsigned char *e = skip(p, slot.ve);
            /* copy [p, e) without whitespace outside strings */
            const unsigned char *q = p;
            while (q < e) {
                unsigned char c = *q;
                if (c == '"') {
                    const unsigned char *t = string_end(q + 1, e);
                    if (buf_put(&out, q, (size_t)(t - q))) ok = 0;
                    q = t;
                } else {
                    if (!(c == ' ' || c == '\n' || c == '\r' || c == '\t') && buf_byte(&out, (char)c)) ok = 0;
                    q++;
                }
            }
            if (buf_byte(&out, '\n')) ok = 0;
            count++;
            int more = next_element(&p, e, slot.ve);
            if (more <= 0) {
                ok = more == 0 && ok;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (nomem) {
        PyErr_NoMemory();
    } else if (ok) {
        res = Py_BuildValue("(y#n)", out.p ? out.p : "", (Py_ssize_t)out.len, count);
    } else if (!PyErr_Occurred()) {
        res = Py_NewRef(Py_None);
    }
    buf_free(&out);
    PyBuffer_Release(&view);
    return res;
}

/* The span of a member's value in spans[0..1] (-1 when absent). 0 done, 1 not a plain object. */
static int member_span(const unsigned char *base, const unsigned char *obj, const unsigned char *end, const char *key,
                       int64_t *spans) {
    Slot slot;
    int r = find_member(obj, end, key, strlen(key), &slot);
    if (r < 0) return 1; /* not a plain object: the caller decodes the page */
    spans[0] = r ? slot.vs - base : -1;
    spans[1] = r ? slot.ve - base : -1;
    return 0;
}

/* page_index(page) -> (head, rows) | None: what the fetcher needs of a STAC API page without decoding its items.
 * head: the page with its "features" value replaced by [] (for the caller to decode: links, counts); rows: per
 * feature, the texts of id, properties.datetime, properties.start_datetime and properties.end_datetime (bytes of
 * the JSON value, None when absent). None when the page is not valid JSON as orjson reads it, has no features
 * array, or a feature (or its properties) is not a plain object: the caller decodes the page whole (and refuses
 * what is not JSON). The page is read without the GIL (the fetcher calls this from a thread, so its event loop
 * goes on meanwhile). */
static PyObject *py_page_index(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    const unsigned char *s = view.buf, *end = s + view.len;
    PyObject *rows = NULL, *res = NULL;
    Slot slot;
    Buf spans = {0}; /* 8 int64 per feature: (start, end) of id, datetime, start_datetime, end_datetime */
    int ok, nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *p = open_features(s, end, &slot, &ok, &nomem);
    if (ok) {
        static const char *props[3] = {"datetime", "start_datetime", "end_datetime"};
        while (ok && p < slot.ve) {
            const unsigned char *e = skip(p, slot.ve);
            int64_t sp[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
            int r = member_span(s, p, e, "id", sp);
            if (r == 0) {
                Slot ps;
                int pr = find_member(p, e, "properties", 10, &ps);
                const unsigned char *pv = pr == 1 ? ws(ps.vs, ps.ve) : NULL;
                if (pr < 0 || (pr == 1 && *pv != '{' && !is_null(pv, ps.ve))) {
                    r = 1; /* properties of another type: let the Python path word it */
                } else if (pr == 1 && *pv == '{') {
                    for (int i = 0; i < 3 && r == 0; i++) r = member_span(s, pv, ps.ve, props[i], sp + 2 * (i + 1));
                }
            }
            if (r) {
                ok = 0;
                break;
            }
            if (buf_put(&spans, sp, sizeof sp)) {
                nomem = 1;
                break;
            }
            int more = next_element(&p, e, slot.ve);
            if (more <= 0) {
                ok = more == 0;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    if (!ok) {
        res = Py_NewRef(Py_None);
        goto done;
    }
    size_t n = spans.len / (8 * sizeof(int64_t));
    const int64_t *sp = (const int64_t *)spans.p;
    if (!(rows = PyList_New((Py_ssize_t)n))) goto done;
    for (size_t k = 0; k < n; k++) {
        PyObject *row = PyTuple_New(4);
        if (!row) goto done;
        PyList_SET_ITEM(rows, (Py_ssize_t)k, row);
        for (int i = 0; i < 4; i++) {
            int64_t a = sp[8 * k + 2 * i], b = sp[8 * k + 2 * i + 1];
            PyObject *v = a < 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)s + a, b - a);
            if (!v) goto done;
            PyTuple_SET_ITEM(row, i, v);
        }
    }
    /* head = page before the value + "[]" + page after it */
    Py_ssize_t before = slot.vs - s, after = end - slot.ve;
    PyObject *head = PyBytes_FromStringAndSize(NULL, before + 2 + after);
    if (!head) goto done;
    char *h = PyBytes_AS_STRING(head);
    memcpy(h, s, (size_t)before);
    h[before] = '[', h[before + 1] = ']';
    memcpy(h + before + 2, slot.ve, (size_t)after);
    res = Py_BuildValue("(NO)", head, rows);
done:
    Py_XDECREF(rows);
    buf_free(&spans);
    PyBuffer_Release(&view);
    return res;
}

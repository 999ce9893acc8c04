/* asset_fields: per asset of each STAC item text, its key and its href, type and roles, as flat Arrow buffers (the
 * stage's asset_fields map column: stage/_assets.py defines it). Included by _kernel.c after _kernel_props.h (uses
 * Pv, pv_row, pv_string, pv_skip, pv_off, ws).
 *
 * One pass over the item: the "assets" member is found as property_values finds "properties" (the last one counts),
 * then each of its members gives an entry: the row, the decoded key, whether the value is an object, and from an
 * object the last "href", "type" and "roles" members: a string (href, type) or an array of strings and nulls
 * (roles) is the value; null is NULL; any other JSON type is NULL and sets the field's miss bit (1 href, 2 type,
 * 4 roles). Duplicate asset keys are all listed (the caller keeps the last). Rows are checked whole to orjson's
 * rules as in property_values; a row that fails is listed unread (for the Python path).
 */

enum { AF_ROWS, AF_KEY_OFF, AF_KEYS, AF_OBJ, AF_MISS, AF_HREF_OFF, AF_HREF, AF_HREF_OK, AF_TYPE_OFF, AF_TYPE,
       AF_TYPE_OK, AF_ROLES_OK, AF_ROLES_OFF, AF_ROLE_OFF, AF_ROLE, AF_ROLE_OK, AF_UNREAD, AF_BUFS };

_Static_assert(AF_BUFS <= PV_MAX_BUFS, "Pv holds every output buffer");
_Static_assert(AF_KEY_OFF + 1 == AF_KEYS && PV_KEY_OFF + 1 == PV_KEYS, "pv_properties: offsets before keys");

enum { AF_OTHER, AF_HREF_KEY, AF_TYPE_KEY, AF_ROLES_KEY };

/* The member key whose contents start at p, checked; *which: href, type, roles or another. */
static const unsigned char *af_key(Pv *v, const unsigned char *p, int *which) {
    const unsigned char *q = pv_plain_run(p, v->end), *k;
    size_t n;
    if (q < v->end && *q == '"') {
        k = p, n = (size_t)(q - p), q++;
    } else {
        if (!(q = pv_string(v, p, NULL))) return NULL;
        k = (const unsigned char *)v->dec.out.p + 5, n = v->dec.out.len - 5;
    }
    *which = n == 4 && !memcmp(k, "href", 4)    ? AF_HREF_KEY
             : n == 4 && !memcmp(k, "type", 4)  ? AF_TYPE_KEY
             : n == 5 && !memcmp(k, "roles", 5) ? AF_ROLES_KEY
                                                : AF_OTHER;
    return q;
}

/* A string field from its (checked) value at s, or NULL from a missing one (s NULL) or another type. */
static int af_text(Pv *v, const unsigned char *s, int off, int data, int ok, unsigned char bit, unsigned char *miss) {
    Buf *o = v->o;
    unsigned char good = 0;
    if (s && *s == '"') {
        if (!pv_string(v, s + 1, &o[data])) return -1;
        good = 1;
    } else if (s && *s != 'n') {
        *miss |= bit;
    }
    if (buf_byte(&o[ok], (char)good)) {
        pv_oom(v);
        return -1;
    }
    return pv_off(v, &o[off], o[data].len);
}

/* roles from its (checked) value at s: an array of strings and nulls, else NULL (another type: a miss). */
static int af_roles(Pv *v, const unsigned char *s, unsigned char *miss) {
    Buf *o = v->o;
    const unsigned char *end = v->end;
    size_t mark[3] = {o[AF_ROLE_OFF].len, o[AF_ROLE].len, o[AF_ROLE_OK].len};
    unsigned char good = 0;
    if (s && *s == '[') {
        good = 1;
        const unsigned char *p = ws(s + 1, end);
        while (good && p < end && *p != ']') {
            if (*p == '"') {
                if (!(p = pv_string(v, p + 1, &o[AF_ROLE]))) return -1;
                if (buf_byte(&o[AF_ROLE_OK], 1)) goto oom;
            } else if (*p == 'n') {
                p += 4; /* null: the array was checked whole */
                if (buf_byte(&o[AF_ROLE_OK], 0)) goto oom;
            } else {
                good = 0;
                break;
            }
            if (pv_off(v, &o[AF_ROLE_OFF], o[AF_ROLE].len)) return -1;
            p = ws(p, end);
            if (p < end && *p == ',') p = ws(p + 1, end);
        }
        if (!good) {
            o[AF_ROLE_OFF].len = mark[0], o[AF_ROLE].len = mark[1], o[AF_ROLE_OK].len = mark[2];
            *miss |= 4;
        }
    } else if (s && *s != 'n') {
        *miss |= 4;
    }
    if (buf_byte(&o[AF_ROLES_OK], (char)good)) goto oom;
    return pv_off(v, &o[AF_ROLES_OFF], o[AF_ROLE_OK].len);
oom:
    pv_oom(v);
    return -1;
}

/* One asset: the value at s (a member of assets, read by pv_properties), checked, its entry written (the key is
 * already). */
static const unsigned char *af_asset(Pv *v, const unsigned char *s) {
    Buf *o = v->o;
    const unsigned char *end = v->end, *p = s, *at[4] = {NULL, NULL, NULL, NULL};
    unsigned char obj = s < end && *s == '{', miss = 0;
    if (!obj) {
        if (!(p = pv_skip(v, s, 2))) return NULL;
    } else {
        p = ws(s + 1, end);
        if (p < end && *p == '}') {
            p++;
        } else {
            for (;;) {
                int which;
                if (p >= end || *p != '"' || !(p = af_key(v, p + 1, &which))) return NULL;
                p = ws(p, end);
                if (p >= end || *p != ':') return NULL;
                p = ws(p + 1, end);
                at[which] = p; /* the last of a duplicate member counts */
                if (!(p = pv_skip(v, p, 3))) return NULL;
                p = ws(p, end);
                if (p < end && *p == ',') {
                    p = ws(p + 1, end);
                    continue;
                }
                if (p < end && *p == '}') break;
                return NULL;
            }
            p++;
        }
    }
    if (af_text(v, at[AF_HREF_KEY], AF_HREF_OFF, AF_HREF, AF_HREF_OK, 1, &miss) ||
        af_text(v, at[AF_TYPE_KEY], AF_TYPE_OFF, AF_TYPE, AF_TYPE_OK, 2, &miss) || af_roles(v, at[AF_ROLES_KEY], &miss))
        return NULL;
    int32_t row = v->row;
    if (buf_put(&o[AF_ROWS], &row, 4) || buf_byte(&o[AF_OBJ], (char)obj) || buf_byte(&o[AF_MISS], (char)miss))
        return pv_oom(v);
    return p;
}

/* asset_fields(offsets, data) -> 17 Blocks (see _kernel.pyi): offsets are an Arrow string column's int32 offsets
 * (n + 1, already sliced to the chunk), data its data buffer. */
static PyObject *py_asset_fields(PyObject *self, PyObject *args) {
    Py_buffer offv, datav;
    if (!PyArg_ParseTuple(args, "y*y*", &offv, &datav)) return NULL;
    Pv *v = calloc(1, sizeof(Pv));
    if (v) {
        v->member = (const unsigned char *)"assets", v->member_len = 6;
        v->assets = 1, v->nout = AF_UNREAD, v->keys = AF_KEYS;
    }
    static const int starts[] = {AF_KEY_OFF, AF_HREF_OFF, AF_TYPE_OFF, AF_ROLES_OFF, AF_ROLE_OFF};
    return pv_run(v, &offv, &datav, starts, 5, "asset_fields");
}

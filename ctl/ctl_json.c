/*
 * ctl_json.c - parse JSON text into a tree (see ctl_json.h).
 *
 * A recursive-descent parser over RFC 8259: objects, arrays, strings with
 * every escape (\uXXXX, surrogate pairs included, becomes UTF-8), numbers
 * through strtod, true/false/null.  Small because rzkvctl only reads the
 * status objects rzkvd writes, yet strict, since those arrive over a
 * socket.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "ctl_json.h"

#define CJSON_MAX_DEPTH 32

struct cursor {
    const char *p;
    int depth;
};

static struct cjson *parse_value(struct cursor *c);

static void
skip_ws(struct cursor *c)
{
    while (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')
        c->p++;
}

static struct cjson *
new_value(enum cjson_type type)
{
    struct cjson *v = calloc(1, sizeof(*v));
    if (v != NULL)
        v->type = type;
    return v;
}

void
cjson_free(struct cjson *v)
{
    while (v != NULL) {
        struct cjson *next = v->next;
        cjson_free(v->child);
        free(v->key);
        free(v->str);
        free(v);
        v = next;
    }
}

static int
hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t
put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* \uXXXX at p (after the backslash-u), with a following low surrogate. */
static int
unicode_escape(const char **pp, char *out, size_t *n)
{
    unsigned cp, lo;
    if (hex4(*pp, &cp) != 0)
        return -1;
    *pp += 4;
    if (cp >= 0xd800 && cp < 0xdc00) {
        if ((*pp)[0] != '\\' || (*pp)[1] != 'u' || hex4(*pp + 2, &lo) != 0 ||
            lo < 0xdc00 || lo > 0xdfff)
            return -1;
        *pp += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp < 0xe000) {
        return -1;
    }
    *n += put_utf8(out + *n, cp);
    return 0;
}

/* A string at c->p (on the opening quote); malloc'd, NULL if invalid. */
static char *
parse_string(struct cursor *c)
{
    const char *p = c->p + 1;
    const char *end = p;
    while (*end != '"') {
        if (*end == '\0')
            return NULL;
        end += *end == '\\' && end[1] != '\0' ? 2 : 1;
    }
    /* Escapes never grow the text: \uXXXX (6) gives at most 3 bytes,
     * a surrogate pair (12) gives 4. */
    char *out = malloc((size_t)(end - p) + 1);
    size_t n = 0;
    if (out == NULL)
        return NULL;
    while (*p != '"') {
        unsigned char ch = (unsigned char)*p++;
        if (ch < 0x20)
            goto bad;
        if (ch != '\\') {
            out[n++] = (char)ch;
            continue;
        }
        switch (*p++) {
        case '"':  out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/':  out[n++] = '/'; break;
        case 'b':  out[n++] = '\b'; break;
        case 'f':  out[n++] = '\f'; break;
        case 'n':  out[n++] = '\n'; break;
        case 'r':  out[n++] = '\r'; break;
        case 't':  out[n++] = '\t'; break;
        case 'u':
            if (unicode_escape(&p, out, &n) != 0)
                goto bad;
            break;
        default:
            goto bad;
        }
    }
    out[n] = '\0';
    c->p = p + 1;
    return out;
bad:
    free(out);
    return NULL;
}

static struct cjson *
parse_number(struct cursor *c)
{
    const char *p = c->p;
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return NULL;
    char *end;
    double d = strtod(c->p, &end);
    if (end == c->p)
        return NULL;
    struct cjson *v = new_value(CJSON_NUMBER);
    if (v != NULL) {
        v->num = d;
        c->p = end;
    }
    return v;
}

/* Elements of an array or members of an object, after the opening. */
static struct cjson *
parse_container(struct cursor *c, int object)
{
    struct cjson *v = new_value(object ? CJSON_OBJECT : CJSON_ARRAY);
    struct cjson **tail = v != NULL ? &v->child : NULL;
    char close = object ? '}' : ']';

    if (v == NULL || ++c->depth > CJSON_MAX_DEPTH)
        goto bad;
    skip_ws(c);
    if (*c->p == close) {
        c->p++;
        c->depth--;
        return v;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(c);
        if (object) {
            if (*c->p != '"' || (key = parse_string(c)) == NULL)
                goto bad;
            skip_ws(c);
            if (*c->p != ':') {
                free(key);
                goto bad;
            }
            c->p++;
        }
        struct cjson *item = parse_value(c);
        if (item == NULL) {
            free(key);
            goto bad;
        }
        item->key = key;
        *tail = item;
        tail = &item->next;
        skip_ws(c);
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p != close)
            goto bad;
        c->p++;
        c->depth--;
        return v;
    }
bad:
    cjson_free(v);
    return NULL;
}

static struct cjson *
parse_literal(struct cursor *c, const char *word, enum cjson_type type,
              double num)
{
    size_t n = strlen(word);
    if (strncmp(c->p, word, n) != 0)
        return NULL;
    struct cjson *v = new_value(type);
    if (v != NULL) {
        v->num = num;
        c->p += n;
    }
    return v;
}

static struct cjson *
parse_value(struct cursor *c)
{
    skip_ws(c);
    switch (*c->p) {
    case '{':
        c->p++;
        return parse_container(c, 1);
    case '[':
        c->p++;
        return parse_container(c, 0);
    case '"': {
        char *s = parse_string(c);
        struct cjson *v = s != NULL ? new_value(CJSON_STRING) : NULL;
        if (v == NULL)
            free(s);
        else
            v->str = s;
        return v;
    }
    case 't':
        return parse_literal(c, "true", CJSON_BOOL, 1);
    case 'f':
        return parse_literal(c, "false", CJSON_BOOL, 0);
    case 'n':
        return parse_literal(c, "null", CJSON_NULL, 0);
    default:
        return parse_number(c);
    }
}

struct cjson *
cjson_parse(const char *text)
{
    struct cursor c = { text, 0 };
    struct cjson *v = parse_value(&c);
    if (v == NULL)
        return NULL;
    skip_ws(&c);
    if (*c.p != '\0') {
        cjson_free(v);
        return NULL;
    }
    return v;
}

const struct cjson *
cjson_get(const struct cjson *obj, const char *key)
{
    if (obj == NULL || obj->type != CJSON_OBJECT)
        return NULL;
    for (const struct cjson *m = obj->child; m != NULL; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

const char *
cjson_get_str(const struct cjson *obj, const char *key, const char *def)
{
    const struct cjson *m = cjson_get(obj, key);
    return m != NULL && m->type == CJSON_STRING ? m->str : def;
}

long long
cjson_get_int(const struct cjson *obj, const char *key, long long def)
{
    const struct cjson *m = cjson_get(obj, key);
    return m != NULL && m->type == CJSON_NUMBER ? (long long)m->num : def;
}

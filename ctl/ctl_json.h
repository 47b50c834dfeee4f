/*
 * ctl_json.h - a small JSON reader for what rzkvd's control socket says.
 *
 * rzkvctl reads the supervisor's status (one JSON object, see
 * supervisor/sup_control.c) to print it for people.  This parses any
 * JSON text into a tree; it is strict (no trailing garbage, nesting at
 * most 32 deep) and never trusts its input.
 */
#ifndef RZKV_CTL_JSON_H
#define RZKV_CTL_JSON_H

enum cjson_type {
    CJSON_NULL = 0,
    CJSON_BOOL,
    CJSON_NUMBER,
    CJSON_STRING,
    CJSON_ARRAY,
    CJSON_OBJECT,
};

struct cjson {
    enum cjson_type type;
    char *key;                  /* member name, inside an object */
    char *str;                  /* CJSON_STRING, NUL-terminated UTF-8 */
    double num;                 /* CJSON_NUMBER, CJSON_BOOL (0 or 1) */
    struct cjson *child;        /* first element or member */
    struct cjson *next;         /* next sibling */
};

/* Parse a whole text; NULL if it is not exactly one JSON value. */
struct cjson *cjson_parse(const char *text);
void cjson_free(struct cjson *v);

/* Member of an object, or NULL. */
const struct cjson *cjson_get(const struct cjson *obj, const char *key);
/* A member's string or number, or def when absent or of another type. */
const char *cjson_get_str(const struct cjson *obj, const char *key,
                          const char *def);
long long cjson_get_int(const struct cjson *obj, const char *key,
                        long long def);

#endif

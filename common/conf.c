/*
 * conf.c - node.yml and cluster.yml: libyaml events, a small tree, then
 * validated structs.
 *
 * Loading runs in three stages (twemproxy's nc_conf.c):
 *
 *   1. hygiene (tree_load): at most 1 MiB, exactly one document, no
 *      anchors, aliases or tags, no NUL bytes, nesting and value count
 *      bounded; libyaml's own syntax errors are reported at its
 *      problem_mark.  The result is a tree of scalars and mappings that
 *      remembers where each value started.
 *   2. shape (section_apply): every key of every section is declared once,
 *      in a table {key, type, offset, default, min, max, flags} (twemproxy
 *      conf_commands, Redis static_configs).  Unknown and duplicate keys,
 *      wrong types, out-of-range numbers and missing required keys are
 *      refused; defaults come from the same table.
 *   3. meaning (node_finish, cluster_finish): derived defaults (data_dir,
 *      run_dir, quorum sizes), relative paths made absolute against the
 *      file's own directory (so a file works from any cwd), replica_count
 *      against the node count, quorum bounds, duplicate node ids and
 *      addresses, unix socket path length, TLS cert/key pairing.
 *
 * Every error reads   FILE:LINE:COLUMN: KEY: what was expected, got "X"
 * with LINE and COLUMN 1-based, taken from the offending value's
 * start_mark, and KEY the dotted path (cluster.nodes.3.remote_address).
 * The first error stops the load; nothing is half-returned.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <yaml.h>

#include "conf.h"
#include "contract.h"
#include "log.h"
#include "ring.h"

#define CONF_MAX_FILE   (1024 * 1024)   /* bytes of YAML */
#define CONF_MAX_DEPTH  16              /* nested mappings/sequences */
#define CONF_MAX_VALUES 100000          /* scalars + collections */
#define CONF_MAX_ID     255             /* bytes of a node id */
#define CONF_SHOW_MAX   64              /* bytes of a bad value quoted */
#define CONF_KEY_MAX    320             /* dotted key path in messages */
#define CONF_SEEN_MAX   32              /* keys recorded for stage 3 */

/* ---- the tree ----------------------------------------------------------- */

enum ykind { Y_SCALAR, Y_MAP, Y_SEQ };

struct ynode {
    enum ykind kind;
    int line, col;              /* 1-based, from start_mark */
    bool plain;                 /* scalar written without quotes */
    char *text;                 /* scalar value, NUL-terminated */
    size_t len;
    size_t nkids, cap;
    struct ynode **kids;        /* Y_MAP: key0, value0, key1, value1, ... */
};

/* ---- the tables --------------------------------------------------------- */

enum ctype {
    CT_ID,          /* node id: 1..255 bytes; YAML ints accepted as text */
    CT_INT,         /* int field */
    CT_U32,         /* uint32_t field */
    CT_U64,         /* uint64_t field */
    CT_ENUM,        /* int field, one of a list of names */
    CT_ADDR,        /* "host:port" */
    CT_PATH,        /* a path, made absolute against the file's directory */
    CT_SECTION,     /* a mapping whose keys fill the same struct */
    CT_NODES,       /* cluster.nodes: ID -> {remote_address} */
};

#define CF_REQUIRED     0x01    /* no default: the key must be present */
#define CF_EMPTY_OK     0x02    /* "" is valid and means unset */
#define CF_LOG_TARGET   0x04    /* "" is stderr, "syslog" is not a path */
#define CF_LATE_BOUNDS  0x08    /* bounds depend on other keys (stage 3) */
#define CF_DERIVED      0x10    /* default computed in stage 3 */

struct conf_enum {
    const char *name;
    int value;
};

struct conf_section;

struct conf_key {
    const char *name;
    enum ctype type;
    size_t offset;
    const char *def_str;        /* CT_ID, CT_ADDR, CT_PATH */
    long long def_num;          /* numbers and enums */
    long long min, max;
    unsigned flags;
    const struct conf_enum *names;      /* CT_ENUM, NULL-terminated */
    const struct conf_section *sub;     /* CT_SECTION */
};

struct conf_section {
    const struct conf_key *keys;
    size_t nkeys;
    bool record;                /* remember values for stage 3 */
};

#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))
#define NODE_FIELD(f) offsetof(struct node_conf, f)
#define CLUSTER_FIELD(f) offsetof(struct cluster_conf, f)

static const struct conf_enum durability_names[] = {
    { "full", DURABILITY_FULL },
    { "normal", DURABILITY_NORMAL },
    { NULL, 0 },
};

static const struct conf_enum level_names[] = {
    { "error", LOG_LEVEL_ERROR },
    { "warn", LOG_LEVEL_WARN },
    { "notice", LOG_LEVEL_NOTICE },
    { "info", LOG_LEVEL_INFO },
    { "debug", LOG_LEVEL_DEBUG },
    { NULL, 0 },
};

static const struct conf_key log_keys[] = {
    { "file", CT_PATH, NODE_FIELD(log_file), "", 0, 0, 0,
      CF_EMPTY_OK | CF_LOG_TARGET, NULL, NULL },
    { "level", CT_ENUM, NODE_FIELD(log_level), NULL, LOG_LEVEL_INFO, 0, 0,
      0, level_names, NULL },
};
static const struct conf_section log_section = {
    log_keys, NKEYS(log_keys), true };

static const struct conf_key tls_keys[] = {
    { "cert_file", CT_PATH, NODE_FIELD(tls_cert), "", 0, 0, 0, CF_EMPTY_OK,
      NULL, NULL },
    { "key_file", CT_PATH, NODE_FIELD(tls_key), "", 0, 0, 0, CF_EMPTY_OK,
      NULL, NULL },
    { "ca_file", CT_PATH, NODE_FIELD(tls_ca), "", 0, 0, 0, CF_EMPTY_OK,
      NULL, NULL },
};
static const struct conf_section tls_section = {
    tls_keys, NKEYS(tls_keys), true };

static const struct conf_key node_keys[] = {
    { "id", CT_ID, NODE_FIELD(id), NULL, 0, 0, 0, CF_REQUIRED, NULL, NULL },
    { "local_address", CT_ADDR, NODE_FIELD(local_address), NULL, 0, 0, 0,
      CF_REQUIRED, NULL, NULL },
    { "local_metrics_address", CT_ADDR, NODE_FIELD(local_metrics_address),
      "", 0, 0, 0, CF_EMPTY_OK, NULL, NULL },
    { "data_dir", CT_PATH, NODE_FIELD(data_dir), "", 0, 0, 0, CF_DERIVED,
      NULL, NULL },
    { "run_dir", CT_PATH, NODE_FIELD(run_dir), "", 0, 0, 0, CF_DERIVED,
      NULL, NULL },
    /* 1: SQLite has one writer anyway, one worker gathers twice the
     * operations per group commit, and peers' batches go straight to it
     * undecoded from the coordinator (coord_front.c), with no split. */
    { "storage_workers", CT_INT, NODE_FIELD(storage_workers), NULL, 1, 1, 64,
      0, NULL, NULL },
    { "coordinator_workers", CT_INT, NODE_FIELD(coordinator_workers), NULL,
      1, 1, 64, 0, NULL, NULL },
    { "durability", CT_ENUM, NODE_FIELD(durability), NULL, DURABILITY_FULL,
      0, 0, 0, durability_names, NULL },
    { "max_value_size", CT_U64, NODE_FIELD(max_value_size), NULL,
      16 * 1024 * 1024, 1, 256 * 1024 * 1024, 0, NULL, NULL },
    { "anti_entropy_interval_ms", CT_INT,
      NODE_FIELD(anti_entropy_interval_ms), NULL, 600000, 0, 86400000, 0,
      NULL, NULL },
    { "tombstone_purge_delay_ms", CT_INT,
      NODE_FIELD(tombstone_purge_delay_ms), NULL, 3600000, 0, 864000000, 0,
      NULL, NULL },
    { "log", CT_SECTION, 0, NULL, 0, 0, 0, 0, NULL, &log_section },
    { "tls", CT_SECTION, 0, NULL, 0, 0, 0, 0, NULL, &tls_section },
};
static const struct conf_section node_section = {
    node_keys, NKEYS(node_keys), true };

static const struct conf_key node_root_keys[] = {
    { "node", CT_SECTION, 0, NULL, 0, 0, 0, CF_REQUIRED, NULL,
      &node_section },
};
static const struct conf_section node_root = {
    node_root_keys, NKEYS(node_root_keys), true };

static const struct conf_enum member_state_names[] = {
    { "member", MEMBER },
    { "joining", MEMBER_JOINING },
    { "leaving", MEMBER_LEAVING },
    { NULL, 0 },
};

/* One entry of cluster.nodes; fills a struct cluster_node. */
static const struct conf_key member_keys[] = {
    { "remote_address", CT_ADDR, offsetof(struct cluster_node, remote_address),
      NULL, 0, 0, 0, CF_REQUIRED, NULL, NULL },
    { "state", CT_ENUM, offsetof(struct cluster_node, state), NULL, MEMBER,
      0, 0, 0, member_state_names, NULL },
};
static const struct conf_section member_section = {
    member_keys, NKEYS(member_keys), false };

static const struct conf_key cluster_keys[] = {
    { "seed", CT_U32, CLUSTER_FIELD(seed), NULL, 0, 0, UINT32_MAX, 0,
      NULL, NULL },
    { "replica_count", CT_INT, CLUSTER_FIELD(replica_count), NULL, 0, 1, 0,
      CF_REQUIRED | CF_LATE_BOUNDS, NULL, NULL },
    { "read_quorum", CT_INT, CLUSTER_FIELD(read_quorum), NULL, 0, 1, 0,
      CF_LATE_BOUNDS | CF_DERIVED, NULL, NULL },
    { "write_quorum", CT_INT, CLUSTER_FIELD(write_quorum), NULL, 0, 1, 0,
      CF_LATE_BOUNDS | CF_DERIVED, NULL, NULL },
    { "timeout_ms", CT_INT, CLUSTER_FIELD(timeout_ms), NULL, 2000, 1, 600000,
      0, NULL, NULL },
    { "max_clock_skew_ms", CT_INT, CLUSTER_FIELD(max_clock_skew_ms), NULL,
      10000, 0, 600000, 0, NULL, NULL },
    { "nodes", CT_NODES, 0, NULL, 0, 0, 0, CF_REQUIRED, NULL, NULL },
};
static const struct conf_section cluster_section = {
    cluster_keys, NKEYS(cluster_keys), true };

static const struct conf_key cluster_root_keys[] = {
    { "cluster", CT_SECTION, 0, NULL, 0, 0, 0, CF_REQUIRED, NULL,
      &cluster_section },
};
static const struct conf_section cluster_root = {
    cluster_root_keys, NKEYS(cluster_root_keys), true };

/* ---- one load ----------------------------------------------------------- */

struct conf_ctx {
    const char *name;           /* file name for messages */
    char *err;
    size_t errlen;
    const char *text;
    size_t len;
    char basedir[PATH_MAX];     /* absolute directory of the file */
    yaml_parser_t parser;
    size_t values;              /* tree nodes built so far */
    struct {                    /* values given, for stage 3 */
        const struct conf_key *key;
        const struct ynode *value;
    } seen[CONF_SEEN_MAX];
    size_t nseen;
    const struct ynode **member_addr;   /* cluster.nodes.X.remote_address */
};

static int conf_error(struct conf_ctx *cx, const struct ynode *at,
                      const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
conf_error_at(struct conf_ctx *cx, int line, int col, const char *key,
              const char *fmt, va_list ap)
{
    char msg[CONF_ERR_MAX];
    char where[64] = "";
    const char *sep = key != NULL && *key != '\0' ? ": " : "";

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (line > 0)
        snprintf(where, sizeof(where), ":%d:%d", line, col);
    if (cx->errlen > 0)
        snprintf(cx->err, cx->errlen, "%s%s: %s%s%s", cx->name, where,
                 key != NULL ? key : "", sep, msg);
    return -1;
}

/* Report an error at a tree node (or, with NULL, at no position). */
static int
conf_error(struct conf_ctx *cx, const struct ynode *at, const char *key,
           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_error_at(cx, at ? at->line : 0, at ? at->col : 0, key, fmt, ap);
    va_end(ap);
    return -1;
}

static int
conf_error_mark(struct conf_ctx *cx, int line, int col, const char *key,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
conf_error_mark(struct conf_ctx *cx, int line, int col, const char *key,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_error_at(cx, line, col, key, fmt, ap);
    va_end(ap);
    return -1;
}

/* Quote bytes for a message: "text", escaped, cut at CONF_SHOW_MAX. */
static const char *
quote(const char *s, size_t len, char *buf, size_t size)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < len && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == CONF_SHOW_MAX) {
            o += (size_t)snprintf(buf + o, size - o, "...");
            break;
        }
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, size - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static bool
is_null(const struct ynode *y)
{
    static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
    if (y == NULL)
        return true;
    if (y->kind != Y_SCALAR || !y->plain)
        return false;
    for (size_t i = 0; i < NKEYS(nulls); i++)
        if (strcmp(y->text, nulls[i]) == 0)
            return true;
    return false;
}

/* What a value is, for "got ..." in messages. */
static const char *
show(const struct ynode *y, char *buf, size_t size)
{
    if (y == NULL || is_null(y))
        return "an empty value";
    if (y->kind == Y_MAP)
        return "a mapping";
    if (y->kind == Y_SEQ)
        return "a sequence";
    return quote(y->text, y->len, buf, size);
}

#define SHOW_BUF (CONF_SHOW_MAX * 4 + 16)

/*
 * parent.name, the dotted key path of a message; control bytes in a name
 * are escaped so a message stays one line, and a long path is cut.
 */
static void
key_join(char *out, size_t size, const char *parent, const char *name)
{
    size_t o = 0;
    if (parent != NULL && *parent != '\0') {
        o = strlen(parent);
        if (o + 2 > size)
            o = size - 2;
        memmove(out, parent, o);
        out[o++] = '.';
    }
    for (const char *p = name; *p != '\0' && o + 5 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* ---- stage 1: hygiene, building the tree --------------------------------- */

static void
tree_free(struct ynode *y)
{
    if (y == NULL)
        return;
    for (size_t i = 0; i < y->nkids; i++)
        tree_free(y->kids[i]);
    free(y->kids);
    free(y->text);
    free(y);
}

static int
tree_append(struct conf_ctx *cx, struct ynode *parent, struct ynode *kid)
{
    if (parent->nkids == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        struct ynode **k = realloc(parent->kids, cap * sizeof(*k));
        if (k == NULL) {
            tree_free(kid);
            return conf_error(cx, NULL, NULL, "out of memory");
        }
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

static void
offset_to_mark(const char *text, size_t len, size_t offset, int *line,
               int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int
syntax_error(struct conf_ctx *cx)
{
    const yaml_parser_t *p = &cx->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    int line, col;

    if (p->error == YAML_MEMORY_ERROR)
        return conf_error(cx, NULL, NULL, "out of memory");
    if (p->error == YAML_READER_ERROR) {
        offset_to_mark(cx->text, cx->len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            return conf_error_mark(cx, line, col, NULL,
                                   "YAML syntax error: %s (byte 0x%02x)",
                                   problem, (unsigned)p->problem_value);
        return conf_error_mark(cx, line, col, NULL, "YAML syntax error: %s",
                               problem);
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    if (p->context != NULL)
        return conf_error_mark(cx, line, col, NULL,
                               "YAML syntax error: %s (%s at %d:%d)", problem,
                               p->context, (int)p->context_mark.line + 1,
                               (int)p->context_mark.column + 1);
    return conf_error_mark(cx, line, col, NULL, "YAML syntax error: %s",
                           problem);
}

static int
next_event(struct conf_ctx *cx, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&cx->parser, ev))
        return syntax_error(cx);
    return 0;
}

/* Anchors, aliases and tags make a config mean more than it shows. */
static int
check_hygiene(struct conf_ctx *cx, const yaml_event_t *ev, const char *key)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    int line = (int)ev->start_mark.line + 1;
    int col = (int)ev->start_mark.column + 1;
    char buf[SHOW_BUF];

    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        anchor = ev->data.alias.anchor;
        return conf_error_mark(cx, line, col, key,
                               "expected a plain value (aliases are not "
                               "supported), got the alias *%s",
                               quote((const char *)anchor,
                                     strlen((const char *)anchor), buf,
                                     sizeof(buf)));
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    default:
        return 0;
    }
    if (anchor != NULL)
        return conf_error_mark(cx, line, col, key,
                               "expected a plain value (anchors are not "
                               "supported), got the anchor &%s",
                               quote((const char *)anchor,
                                     strlen((const char *)anchor), buf,
                                     sizeof(buf)));
    if (tag != NULL)
        return conf_error_mark(cx, line, col, key,
                               "expected a plain value (tags are not "
                               "supported), got the tag %s",
                               quote((const char *)tag,
                                     strlen((const char *)tag), buf,
                                     sizeof(buf)));
    return 0;
}

static int tree_build(struct conf_ctx *cx, const yaml_event_t *ev,
                      int depth, const char *key, struct ynode **out);

/* Read the children of a mapping or sequence up to its end event. */
static int
tree_build_kids(struct conf_ctx *cx, struct ynode *y, int depth,
                const char *key)
{
    yaml_event_type_t end = y->kind == Y_MAP ? YAML_MAPPING_END_EVENT
                                             : YAML_SEQUENCE_END_EVENT;
    char kidkey[CONF_KEY_MAX];

    for (;;) {
        yaml_event_t ev;
        struct ynode *kid = NULL;
        if (next_event(cx, &ev) != 0)
            return -1;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (y->kind == Y_SEQ) {
            char idx[32];
            snprintf(idx, sizeof(idx), "%zu", y->nkids);
            key_join(kidkey, sizeof(kidkey), key, idx);
        } else if (y->nkids % 2 == 1) {     /* a value: name it by its key */
            const struct ynode *k = y->kids[y->nkids - 1];
            key_join(kidkey, sizeof(kidkey), key,
                     k->kind == Y_SCALAR ? k->text : "?");
        } else {
            snprintf(kidkey, sizeof(kidkey), "%s", key);
        }
        int rc = tree_build(cx, &ev, depth + 1, kidkey, &kid);
        yaml_event_delete(&ev);
        if (kid != NULL && tree_append(cx, y, kid) != 0)
            return -1;
        if (rc != 0)
            return -1;
    }
}

/*
 * Build the tree node that starts with event ev.  *out is set as soon as
 * the node exists, so the caller frees a partial tree on error.
 */
static int
tree_build(struct conf_ctx *cx, const yaml_event_t *ev, int depth,
           const char *key, struct ynode **out)
{
    *out = NULL;
    if (check_hygiene(cx, ev, key) != 0)
        return -1;
    int line = (int)ev->start_mark.line + 1;
    int col = (int)ev->start_mark.column + 1;
    if (++cx->values > CONF_MAX_VALUES)
        return conf_error_mark(cx, line, col, key,
                               "expected at most %d values in the file, "
                               "got more", CONF_MAX_VALUES);
    struct ynode *y = calloc(1, sizeof(*y));
    if (y == NULL)
        return conf_error(cx, NULL, NULL, "out of memory");
    *out = y;
    y->line = line;
    y->col = col;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        y->kind = Y_SCALAR;
        y->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        y->len = ev->data.scalar.length;
        y->text = malloc(y->len + 1);
        if (y->text == NULL)
            return conf_error(cx, NULL, NULL, "out of memory");
        memcpy(y->text, ev->data.scalar.value, y->len);
        y->text[y->len] = '\0';
        if (memchr(y->text, '\0', y->len) != NULL)
            return conf_error(cx, y, key, "expected text without NUL bytes, "
                              "got a value with one");
        return 0;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        y->kind = ev->type == YAML_MAPPING_START_EVENT ? Y_MAP : Y_SEQ;
        if (depth > CONF_MAX_DEPTH)
            return conf_error(cx, y, key, "expected at most %d levels of "
                              "nesting, got more", CONF_MAX_DEPTH);
        return tree_build_kids(cx, y, depth, key);
    default:
        return conf_error(cx, y, key, "unexpected YAML event %d",
                          (int)ev->type);
    }
}

/* Stage 1: the text becomes one tree, or an error.  *root NULL: empty. */
static int
tree_load(struct conf_ctx *cx, struct ynode **root)
{
    int docs = 0, rc = 0;

    *root = NULL;
    if (!yaml_parser_initialize(&cx->parser))
        return conf_error(cx, NULL, NULL, "out of memory");
    yaml_parser_set_input_string(&cx->parser,
                                 (const unsigned char *)cx->text, cx->len);
    for (;;) {
        yaml_event_t ev;
        if (next_event(cx, &ev) != 0) {
            rc = -1;
            break;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1)
            rc = conf_error_mark(cx, (int)ev.start_mark.line + 1,
                                 (int)ev.start_mark.column + 1, NULL,
                                 "expected a single YAML document, "
                                 "got a second one");
        else if (type == YAML_SCALAR_EVENT || type == YAML_ALIAS_EVENT ||
                 type == YAML_MAPPING_START_EVENT ||
                 type == YAML_SEQUENCE_START_EVENT)
            rc = tree_build(cx, &ev, 1, "", root);
        yaml_event_delete(&ev);
        if (rc != 0 || type == YAML_STREAM_END_EVENT)
            break;
    }
    yaml_parser_delete(&cx->parser);
    return rc;
}

/* ---- paths -------------------------------------------------------------- */

/* Drop "." components and repeated slashes of an absolute path. */
static void
path_clean(char *p)
{
    char *out = p, *in = p;
    while (*in != '\0') {
        while (*in == '/')
            in++;
        char *end = strchr(in, '/');
        size_t n = end ? (size_t)(end - in) : strlen(in);
        if (n == 0)
            break;
        if (!(n == 1 && in[0] == '.')) {
            *out++ = '/';
            memmove(out, in, n);
            out += n;
        }
        in += n;
    }
    if (out == p)
        *out++ = '/';
    *out = '\0';
}

/* The absolute directory of the file, for relative paths in it. */
static int
base_dir(struct conf_ctx *cx)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(cx->name, '/');

    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == cx->name)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - cx->name) >= sizeof(dir))
        return conf_error(cx, NULL, NULL, "path too long");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - cx->name),
                 cx->name);
    if (realpath(dir, cx->basedir) != NULL)
        return 0;
    /* Text parsed from memory may name a file that does not exist. */
    if (dir[0] == '/') {
        snprintf(cx->basedir, sizeof(cx->basedir), "%s", dir);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return conf_error(cx, NULL, NULL,
                              "cannot find the current directory: %s",
                              strerror(errno));
        if ((size_t)snprintf(cx->basedir, sizeof(cx->basedir), "%s/%s", cwd,
                             dir) >= sizeof(cx->basedir))
            return conf_error(cx, NULL, NULL, "path too long");
    }
    path_clean(cx->basedir);
    return 0;
}

/* rel made absolute against the file's directory, malloc'd; NULL: long. */
static char *
path_resolve(const struct conf_ctx *cx, const char *rel)
{
    char buf[PATH_MAX];
    int n = rel[0] == '/'
        ? snprintf(buf, sizeof(buf), "%s", rel)
        : snprintf(buf, sizeof(buf), "%s/%s", cx->basedir, rel);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    path_clean(buf);
    return strdup(buf);
}

/* ---- addresses ---------------------------------------------------------- */

static bool
host_chars_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '/')
            return false;
    }
    return true;
}

static int
parse_port(const char *s)
{
    int port = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

int
conf_parse_address(const char *addr, char *host, size_t hostlen, int *port)
{
    const char *h, *colon;
    size_t hlen;

    if (addr == NULL)
        return -1;
    if (addr[0] == '[') {                   /* [v6addr]:port */
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (hlen == 0 || memchr(h, ':', hlen) == NULL ||
            !host_chars_ok(h, hlen))
            return -1;
    } else {                                /* host:port or :port */
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -1;
        h = addr;
        hlen = (size_t)(colon - addr);
        if (hlen == 0) {
            h = "127.0.0.1";
            hlen = strlen(h);
        } else if (memchr(h, ':', hlen) != NULL || !host_chars_ok(h, hlen)) {
            return -1;      /* a bare IPv6 address needs brackets */
        }
    }
    /* A DNS name is at most 253 bytes; refusing longer hosts here means a
     * 256-byte buffer, as every caller has, always holds an accepted one. */
    if (hlen > CONF_MAX_HOST)
        return -1;
    int p = parse_port(colon + 1);
    if (p < 0)
        return -1;
    if (host != NULL) {
        if (hlen >= hostlen)
            return -1;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
    }
    if (port != NULL)
        *port = p;
    return 0;
}

/* ---- stage 2: shape ----------------------------------------------------- */

/* What a key expects, for messages. */
static const char *
expectation(const struct conf_key *k, char *buf, size_t size)
{
    size_t o;
    switch (k->type) {
    case CT_ID:
        snprintf(buf, size, "a node id of 1..%d bytes", CONF_MAX_ID);
        break;
    case CT_INT:
    case CT_U32:
    case CT_U64:
        if (k->flags & CF_LATE_BOUNDS)
            snprintf(buf, size, "an integer");
        else
            snprintf(buf, size, "an integer in %lld..%lld", k->min, k->max);
        break;
    case CT_ENUM:
        o = (size_t)snprintf(buf, size, "one of");
        for (const struct conf_enum *e = k->names; e->name && o < size; e++)
            o += (size_t)snprintf(buf + o, size - o, "%s %s",
                                  e == k->names ? "" : ",", e->name);
        break;
    case CT_ADDR:
        snprintf(buf, size, "an address host:port, [IPv6]:port or :port "
                 "(port 1..65535)%s",
                 k->flags & CF_EMPTY_OK ? " or \"\"" : "");
        break;
    case CT_PATH:
        snprintf(buf, size, "%s",
                 k->flags & CF_LOG_TARGET
                     ? "\"\" (standard error), \"syslog\" or a file path"
                 : k->flags & CF_EMPTY_OK ? "a file path or \"\""
                                          : "a directory path");
        break;
    case CT_SECTION:
        snprintf(buf, size, "a mapping");
        break;
    case CT_NODES:
        snprintf(buf, size, "a mapping of node ids to "
                 "{remote_address: host:port}");
        break;
    }
    return buf;
}

static int
wrong_value(struct conf_ctx *cx, const struct conf_key *k,
            const struct ynode *y, const char *key)
{
    char want[256], got[SHOW_BUF];
    const char *prefix = "";
    bool number = k->type == CT_INT || k->type == CT_U32 ||
                  k->type == CT_U64;
    const char *suffix = "";
    if (number && y->kind == Y_SCALAR && !y->plain)
        prefix = "the quoted string ";
    if (number && y->kind == Y_SCALAR && y->plain &&
        y->text[strspn(y->text, "+-")] == '0' && y->len > 1 &&
        strspn(y->text, "+-0123456789") == y->len)
        suffix = " (YAML 1.1 reads a leading 0 as octal: write it without)";
    return conf_error(cx, y, key, "expected %s, got %s%s%s",
                      expectation(k, want, sizeof(want)), prefix,
                      show(y, got, sizeof(got)), suffix);
}

/*
 * A decimal integer written plainly.  No hex or underscores, and no
 * leading zero: YAML 1.1 reads 010 as 8, so refuse what readers disagree on.
 */
static bool
parse_integer(const struct ynode *y, long long *v)
{
    const char *s = y->text;
    if (y->kind != Y_SCALAR || !y->plain)
        return false;
    if (*s == '+' || *s == '-')
        s++;
    if (*s == '\0' || strspn(s, "0123456789") != strlen(s))
        return false;
    if (s[0] == '0' && s[1] != '\0')
        return false;
    errno = 0;
    *v = strtoll(y->text, NULL, 10);
    return errno == 0;
}

static char **
str_field(void *base, const struct conf_key *k)
{
    return (char **)((char *)base + k->offset);
}

static int
set_string(struct conf_ctx *cx, void *base, const struct conf_key *k,
           char *s)
{
    char **field = str_field(base, k);
    if (s == NULL)
        return conf_error(cx, NULL, NULL, "out of memory");
    free(*field);
    *field = s;
    return 0;
}

static void
set_number(void *base, const struct conf_key *k, long long v)
{
    char *p = (char *)base + k->offset;
    switch (k->type) {
    case CT_INT:
    case CT_ENUM:
        *(int *)p = v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
        break;
    case CT_U32:
        *(uint32_t *)p = (uint32_t)v;
        break;
    case CT_U64:
        *(uint64_t *)p = (uint64_t)v;
        break;
    default:
        break;
    }
}

static int
section_defaults(struct conf_ctx *cx, const struct conf_section *sec,
                 void *base)
{
    for (size_t i = 0; i < sec->nkeys; i++) {
        const struct conf_key *k = &sec->keys[i];
        switch (k->type) {
        case CT_ID:
        case CT_ADDR:
        case CT_PATH:
            if (set_string(cx, base, k, strdup(k->def_str ? k->def_str : ""))
                != 0)
                return -1;
            break;
        case CT_SECTION:
            if (section_defaults(cx, k->sub, base) != 0)
                return -1;
            break;
        case CT_NODES:
            break;
        default:
            set_number(base, k, k->def_num);
            break;
        }
    }
    return 0;
}

static int
apply_number(struct conf_ctx *cx, const struct conf_key *k,
             const struct ynode *y, const char *key, void *base)
{
    long long v;
    if (!parse_integer(y, &v))
        return wrong_value(cx, k, y, key);
    if (!(k->flags & CF_LATE_BOUNDS) && (v < k->min || v > k->max))
        return wrong_value(cx, k, y, key);
    set_number(base, k, v);
    return 0;
}

static int
apply_enum(struct conf_ctx *cx, const struct conf_key *k,
           const struct ynode *y, const char *key, void *base)
{
    for (const struct conf_enum *e = k->names; e->name != NULL; e++)
        if (strcmp(y->text, e->name) == 0) {
            set_number(base, k, e->value);
            return 0;
        }
    return wrong_value(cx, k, y, key);
}

static int
apply_string(struct conf_ctx *cx, const struct conf_key *k,
             const struct ynode *y, const char *key, void *base)
{
    char *s;
    if (y->len == 0) {
        if (!(k->flags & CF_EMPTY_OK))
            return wrong_value(cx, k, y, key);
        return set_string(cx, base, k, strdup(""));
    }
    switch (k->type) {
    case CT_ID:
        if (y->len > CONF_MAX_ID)
            return wrong_value(cx, k, y, key);
        return set_string(cx, base, k, strdup(y->text));
    case CT_ADDR:
        if (conf_parse_address(y->text, NULL, 0, NULL) != 0)
            return wrong_value(cx, k, y, key);
        return set_string(cx, base, k, strdup(y->text));
    case CT_PATH:
        if ((k->flags & CF_LOG_TARGET) && strcmp(y->text, "syslog") == 0)
            return set_string(cx, base, k, strdup(y->text));
        s = path_resolve(cx, y->text);
        if (s == NULL)
            return conf_error(cx, y, key, "expected a path of at most %d "
                              "bytes once made absolute, got a longer one",
                              PATH_MAX - 1);
        return set_string(cx, base, k, s);
    default:
        return wrong_value(cx, k, y, key);
    }
}

static int section_apply(struct conf_ctx *cx, const struct conf_section *sec,
                         const struct ynode *map, const struct ynode *where,
                         const char *key, void *base);
static int nodes_apply(struct conf_ctx *cx, const struct conf_key *k,
                       const struct ynode *y, const char *key,
                       struct cluster_conf *cc);

/* One value of a known key.  An empty (null) value keeps the default. */
static int
value_apply(struct conf_ctx *cx, const struct conf_key *k,
            const struct ynode *keynode, const struct ynode *y,
            const char *key, void *base)
{
    if (k->type == CT_SECTION) {
        if (!is_null(y) && y->kind != Y_MAP)
            return wrong_value(cx, k, y, key);
        return section_apply(cx, k->sub, is_null(y) ? NULL : y,
                             is_null(y) ? keynode : y, key, base);
    }
    if (k->type == CT_NODES)
        return nodes_apply(cx, k, y, key, base);
    if (is_null(y)) {
        if (k->flags & CF_REQUIRED)
            return wrong_value(cx, k, y, key);
        return 0;
    }
    if (y->kind != Y_SCALAR)
        return wrong_value(cx, k, y, key);
    switch (k->type) {
    case CT_INT:
    case CT_U32:
    case CT_U64:
        return apply_number(cx, k, y, key, base);
    case CT_ENUM:
        return apply_enum(cx, k, y, key, base);
    default:
        return apply_string(cx, k, y, key, base);
    }
}

static int
unknown_key(struct conf_ctx *cx, const struct conf_section *sec,
            const struct ynode *knode, const char *key)
{
    char names[256];
    size_t o = 0;
    names[0] = '\0';
    for (size_t i = 0; i < sec->nkeys && o < sizeof(names); i++)
        o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s",
                              i ? ", " : "", sec->keys[i].name);
    return conf_error(cx, knode, key, "unknown key, expected one of %s",
                      names);
}

static void
record_seen(struct conf_ctx *cx, const struct conf_key *k,
            const struct ynode *y)
{
    if (cx->nseen < CONF_SEEN_MAX) {
        cx->seen[cx->nseen].key = k;
        cx->seen[cx->nseen].value = y;
        cx->nseen++;
    }
}

/* The value given for a key of a recorded section, or NULL. */
static const struct ynode *
given(const struct conf_ctx *cx, const struct conf_key *k)
{
    for (size_t i = 0; i < cx->nseen; i++)
        if (cx->seen[i].key == k)
            return cx->seen[i].value;
    return NULL;
}

/* A key name of a mapping, or an error. */
static int
key_name(struct conf_ctx *cx, const struct ynode *knode, const char *parent)
{
    char got[SHOW_BUF];
    if (knode->kind != Y_SCALAR || is_null(knode))
        return conf_error(cx, knode, parent, "expected a key name, got %s",
                          show(knode, got, sizeof(got)));
    return 0;
}

/*
 * Fill base from the mapping map (NULL: an empty one) by the table sec;
 * a missing required key is reported at where.
 */
static int
section_apply(struct conf_ctx *cx, const struct conf_section *sec,
              const struct ynode *map, const struct ynode *where,
              const char *key, void *base)
{
    const struct ynode *seen[CONF_SEEN_MAX] = { NULL };
    char kidkey[CONF_KEY_MAX];
    size_t npairs = map != NULL ? map->nkids / 2 : 0;

    for (size_t p = 0; p < npairs; p++) {
        const struct ynode *kn = map->kids[2 * p], *vn = map->kids[2 * p + 1];
        if (key_name(cx, kn, key) != 0)
            return -1;
        key_join(kidkey, sizeof(kidkey), key, kn->text);
        size_t i = 0;
        while (i < sec->nkeys && strcmp(sec->keys[i].name, kn->text) != 0)
            i++;
        if (i == sec->nkeys)
            return unknown_key(cx, sec, kn, kidkey);
        if (seen[i] != NULL)
            return conf_error(cx, kn, kidkey, "expected each key once, got "
                              "it again (first at %d:%d)", seen[i]->line,
                              seen[i]->col);
        seen[i] = kn;
        if (sec->record)
            record_seen(cx, &sec->keys[i], vn);
        if (value_apply(cx, &sec->keys[i], kn, vn, kidkey, base) != 0)
            return -1;
    }
    for (size_t i = 0; i < sec->nkeys; i++) {
        if (seen[i] != NULL || !(sec->keys[i].flags & CF_REQUIRED))
            continue;
        key_join(kidkey, sizeof(kidkey), key, sec->keys[i].name);
        if (sec->keys[i].type == CT_SECTION && key[0] == '\0' && map == NULL)
            return conf_error(cx, where, NULL, "expected a mapping with "
                              "the key \"%s\", got an empty document",
                              sec->keys[i].name);
        return conf_error(cx, where, kidkey, "required key is missing");
    }
    return 0;
}

/* ---- cluster.nodes ------------------------------------------------------ */

struct id_ref {
    const char *id;
    size_t index;
};

static int
id_ref_cmp(const void *a, const void *b)
{
    const struct id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/*
 * The first repeated string in file order: returns the index of its
 * second occurrence and sets *first, or returns -1.  n log n, so a large
 * file cannot make this slow.
 */
static long
first_repeat(const char *const *strs, size_t n, size_t *first)
{
    struct id_ref *refs = calloc(n ? n : 1, sizeof(*refs));
    long found = -1;
    if (refs == NULL)
        return -2;
    for (size_t i = 0; i < n; i++) {
        refs[i].id = strs[i];
        refs[i].index = i;
    }
    qsort(refs, n, sizeof(*refs), id_ref_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(refs[i].id, refs[i - 1].id) != 0)
            continue;
        if (found < 0 || refs[i].index < (size_t)found) {
            found = (long)refs[i].index;
            *first = refs[i - 1].index;
        }
    }
    free(refs);
    return found;
}

static int
nodes_check_ids(struct conf_ctx *cx, const struct ynode *map, const char *key)
{
    size_t n = map->nkids / 2, first = 0;
    const char **ids = calloc(n, sizeof(*ids));
    char got[SHOW_BUF], kidkey[CONF_KEY_MAX];

    if (ids == NULL)
        return conf_error(cx, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct ynode *kn = map->kids[2 * i];
        if (kn->kind != Y_SCALAR || is_null(kn) || kn->len == 0 ||
            kn->len > CONF_MAX_ID) {
            free(ids);
            return conf_error(cx, kn, key, "expected a node id of 1..%d "
                              "bytes, got %s", CONF_MAX_ID,
                              kn->kind == Y_SCALAR && !is_null(kn)
                                  ? quote(kn->text, kn->len, got, sizeof(got))
                                  : show(kn, got, sizeof(got)));
        }
        ids[i] = kn->text;
    }
    long dup = first_repeat(ids, n, &first);
    free(ids);
    if (dup == -2)
        return conf_error(cx, NULL, NULL, "out of memory");
    if (dup >= 0) {
        const struct ynode *kn = map->kids[2 * (size_t)dup];
        const struct ynode *fn = map->kids[2 * first];
        key_join(kidkey, sizeof(kidkey), key, kn->text);
        return conf_error(cx, kn, kidkey, "expected each node id once, got "
                          "%s again (first at %d:%d)",
                          quote(kn->text, kn->len, got, sizeof(got)),
                          fn->line, fn->col);
    }
    return 0;
}

static int
nodes_apply(struct conf_ctx *cx, const struct conf_key *k,
            const struct ynode *y, const char *key, struct cluster_conf *cc)
{
    char kidkey[CONF_KEY_MAX];

    if (!is_null(y) && y->kind != Y_MAP)
        return wrong_value(cx, k, y, key);
    if (is_null(y) || y->nkids == 0)
        return conf_error(cx, y, key, "expected at least one node "
                          "(ID: {remote_address: host:port}), got %s",
                          is_null(y) ? "an empty value" : "an empty mapping");
    if (nodes_check_ids(cx, y, key) != 0)
        return -1;
    size_t n = y->nkids / 2;
    cc->nodes = calloc(n, sizeof(*cc->nodes));
    cx->member_addr = calloc(n, sizeof(*cx->member_addr));
    if (cc->nodes == NULL || cx->member_addr == NULL)
        return conf_error(cx, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct ynode *kn = y->kids[2 * i], *vn = y->kids[2 * i + 1];
        struct cluster_node *m = &cc->nodes[cc->node_count++];
        key_join(kidkey, sizeof(kidkey), key, kn->text);
        if ((m->id = strdup(kn->text)) == NULL ||
            section_defaults(cx, &member_section, m) != 0)
            return conf_error(cx, NULL, NULL, "out of memory");
        if (!is_null(vn) && vn->kind != Y_MAP) {
            char got[SHOW_BUF];
            return conf_error(cx, vn, kidkey, "expected a mapping "
                              "{remote_address: host:port}, got %s",
                              show(vn, got, sizeof(got)));
        }
        if (section_apply(cx, &member_section, is_null(vn) ? NULL : vn,
                          is_null(vn) ? kn : vn, kidkey, m) != 0)
            return -1;
        for (size_t p = 0; vn->kind == Y_MAP && p < vn->nkids / 2; p++)
            if (strcmp(vn->kids[2 * p]->text, "remote_address") == 0)
                cx->member_addr[i] = vn->kids[2 * p + 1];
    }
    return 0;
}

/* ---- stage 3: meaning --------------------------------------------------- */

static const struct conf_key *
find_key(const struct conf_section *sec, const char *name)
{
    for (size_t i = 0; i < sec->nkeys; i++)
        if (strcmp(sec->keys[i].name, name) == 0)
            return &sec->keys[i];
    return NULL;
}

/* An int key whose bounds depend on others: 1..max, said as "why". */
static int
check_late_bound(struct conf_ctx *cx, const char *name, int value, int max,
                 const char *why)
{
    const struct ynode *y = given(cx, find_key(&cluster_section, name));
    char key[CONF_KEY_MAX], got[SHOW_BUF];
    if (value >= 1 && value <= max)
        return 0;
    key_join(key, sizeof(key), "cluster", name);
    return conf_error(cx, y, key, "expected an integer in 1..%d (%s), got %s",
                      max, why, show(y, got, sizeof(got)));
}

/* Two nodes on one address would be one process answering for both. */
static int
cluster_check_addresses(struct conf_ctx *cx, const struct cluster_conf *cc)
{
    size_t n = cc->node_count, first = 0;
    char **norm = calloc(n, sizeof(*norm));
    long dup = -2;

    if (norm == NULL)
        return conf_error(cx, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char host[256];
        int port = 0;
        if (conf_parse_address(cc->nodes[i].remote_address, host,
                               sizeof(host), &port) != 0)
            snprintf(host, sizeof(host), "%s", cc->nodes[i].remote_address);
        if (asprintf(&norm[i], "%s %d", host, port) < 0) {
            norm[i] = NULL;
            goto out;
        }
    }
    dup = first_repeat((const char *const *)norm, n, &first);
out:
    for (size_t i = 0; i < n; i++)
        free(norm[i]);
    free(norm);
    if (dup == -2)
        return conf_error(cx, NULL, NULL, "out of memory");
    if (dup < 0)
        return 0;
    const struct ynode *y = cx->member_addr[dup];
    char node[CONF_KEY_MAX], key[CONF_KEY_MAX], got[SHOW_BUF], id[SHOW_BUF];
    key_join(node, sizeof(node), "cluster.nodes", cc->nodes[dup].id);
    key_join(key, sizeof(key), node, "remote_address");
    return conf_error(cx, y, key, "expected an address no other node uses, "
                      "got %s (also node %s's)", show(y, got, sizeof(got)),
                      quote(cc->nodes[first].id,
                            strlen(cc->nodes[first].id), id, sizeof(id)));
}

static int
cluster_finish(struct conf_ctx *cx, struct cluster_conf *cc)
{
    int majority = cc->replica_count / 2 + 1;

    for (size_t i = 0; i < cc->node_count; i++) {
        cc->joining += cc->nodes[i].state == MEMBER_JOINING;
        cc->leaving += cc->nodes[i].state == MEMBER_LEAVING;
    }
    if (cc->joining == cc->node_count || cc->leaving == cc->node_count) {
        const struct ynode *y = given(cx, find_key(&cluster_section, "nodes"));
        return conf_error(cx, y, "cluster.nodes", "expected nodes that are "
                          "not %s, got every node %s",
                          cc->joining ? "joining" : "leaving",
                          cc->joining ? "joining" : "leaving");
    }
    /* Keys are placed over the nodes before a change and after it: each
     * set must have room for every replica. */
    size_t fewest = cc->node_count -
                    (cc->joining > cc->leaving ? cc->joining : cc->leaving);
    int n = fewest > INT_MAX ? INT_MAX : (int)fewest;
    if (check_late_bound(cx, "replica_count", cc->replica_count, n,
                         cc->joining + cc->leaving == 0
                             ? "the number of nodes"
                             : "the fewer of the nodes not joining and "
                               "the nodes not leaving") != 0)
        return -1;
    if (given(cx, find_key(&cluster_section, "read_quorum")) == NULL)
        cc->read_quorum = majority;
    if (given(cx, find_key(&cluster_section, "write_quorum")) == NULL)
        cc->write_quorum = majority;
    if (check_late_bound(cx, "read_quorum", cc->read_quorum,
                         cc->replica_count, "replica_count") != 0 ||
        check_late_bound(cx, "write_quorum", cc->write_quorum,
                         cc->replica_count, "replica_count") != 0)
        return -1;
    return cluster_check_addresses(cx, cc);
}

/* The longest name a worker or the supervisor binds under run_dir. */
static size_t
run_dir_suffix(const struct node_conf *nc, char *longest, size_t size)
{
    char control[64], storage[64];
    snprintf(control, sizeof(control), "/%s", RZKV_CONTROL_SOCK);
    snprintf(storage, sizeof(storage), "/storage-%d.ipc",
             nc->storage_workers);
    const char *best = strlen(storage) > strlen(control) ? storage : control;
    size_t n = strlen(best);
    if (n >= size)
        n = size - 1;
    memcpy(longest, best, n);
    longest[n] = '\0';
    return strlen(best);
}

static int
node_check_run_dir(struct conf_ctx *cx, const struct node_conf *nc,
                   const struct ynode *where)
{
    struct sockaddr_un sun;
    char suffix[64], got[SHOW_BUF];
    size_t max = sizeof(sun.sun_path) - 1 -
                 run_dir_suffix(nc, suffix, sizeof(suffix));
    size_t len = strlen(nc->run_dir);

    if (len <= max)
        return 0;
    return conf_error(cx, where, "node.run_dir", "expected a directory path "
                      "of at most %zu bytes (a socket under it, like "
                      "\"%s\", must fit in the %zu-byte unix socket path), "
                      "got %s (%zu bytes)", max, suffix,
                      sizeof(sun.sun_path), quote(nc->run_dir, len, got,
                                                  sizeof(got)), len);
}

static int
node_default_dirs(struct conf_ctx *cx, struct node_conf *nc,
                  const struct ynode *top)
{
    const struct ynode *data = given(cx, find_key(&node_section, "data_dir"));
    const struct ynode *run = given(cx, find_key(&node_section, "run_dir"));
    char rel[PATH_MAX], got[SHOW_BUF];

    if (is_null(data)) {
        const struct ynode *id = given(cx, find_key(&node_section, "id"));
        if (strchr(nc->id, '/') != NULL || strcmp(nc->id, ".") == 0 ||
            strcmp(nc->id, "..") == 0)
            return conf_error(cx, id, "node.id", "expected an id usable as "
                              "a directory name for the default data_dir "
                              "./data/ID (or set node.data_dir), got %s",
                              quote(nc->id, strlen(nc->id), got,
                                    sizeof(got)));
        snprintf(rel, sizeof(rel), "data/%s", nc->id);
        free(nc->data_dir);
        if ((nc->data_dir = path_resolve(cx, rel)) == NULL)
            return conf_error(cx, top, "node.data_dir", "expected a path of "
                              "at most %d bytes, got a longer one",
                              PATH_MAX - 1);
    }
    if (is_null(run)) {
        free(nc->run_dir);
        if (asprintf(&nc->run_dir, "%s/run", nc->data_dir) < 0) {
            nc->run_dir = NULL;
            return conf_error(cx, NULL, NULL, "out of memory");
        }
    }
    return node_check_run_dir(cx, nc,
                              !is_null(run) ? run : !is_null(data) ? data
                                                                   : top);
}

static int
node_check_tls(struct conf_ctx *cx, const struct node_conf *nc)
{
    const struct ynode *tls = given(cx, find_key(&node_section, "tls"));
    bool cert = nc->tls_cert[0] != '\0', key = nc->tls_key[0] != '\0';
    if (cert == key)
        return 0;
    return conf_error(cx, tls, cert ? "node.tls.key_file" : "node.tls.cert_file",
                      "required key is missing (node.tls.%s is set: give "
                      "both cert_file and key_file, or neither)",
                      cert ? "cert_file" : "key_file");
}

static int
node_finish(struct conf_ctx *cx, struct node_conf *nc, const struct ynode *top)
{
    if (node_default_dirs(cx, nc, top) != 0)
        return -1;
    return node_check_tls(cx, nc);
}

/* ---- entry points ------------------------------------------------------- */

static int
ctx_init(struct conf_ctx *cx, const char *name, const char *text, size_t len,
         char *err, size_t errlen)
{
    memset(cx, 0, sizeof(*cx));
    cx->name = name;
    cx->err = err;
    cx->errlen = errlen;
    cx->text = text;
    cx->len = len;
    if (errlen > 0)
        err[0] = '\0';
    if (len > CONF_MAX_FILE)
        return conf_error(cx, NULL, NULL, "expected a file of at most %d "
                          "bytes, got %zu bytes", CONF_MAX_FILE, len);
    return base_dir(cx);
}

/* Stages 1 and 2 for a file whose one top-level key is rootsec's. */
static int
load_tree(struct conf_ctx *cx, const struct conf_section *rootsec,
          struct ynode **root, void *base)
{
    char got[SHOW_BUF];
    if (tree_load(cx, root) != 0)
        return -1;
    if (*root == NULL)
        return conf_error_mark(cx, 1, 1, NULL, "expected a mapping with "
                               "the key \"%s\", got an empty file",
                               rootsec->keys[0].name);
    if (!is_null(*root) && (*root)->kind != Y_MAP)
        return conf_error(cx, *root, NULL, "expected a mapping with the key "
                          "\"%s\", got %s", rootsec->keys[0].name,
                          show(*root, got, sizeof(got)));
    if (section_defaults(cx, rootsec, base) != 0)
        return -1;
    return section_apply(cx, rootsec, is_null(*root) ? NULL : *root, *root,
                         "", base);
}

int
conf_parse_node(const char *name, const char *text, size_t len,
                struct node_conf **out, char *err, size_t errlen)
{
    struct conf_ctx cx;
    struct ynode *root = NULL;
    struct node_conf *nc = calloc(1, sizeof(*nc));
    int rc = -1;

    *out = NULL;
    if (ctx_init(&cx, name, text, len, err, errlen) != 0)
        goto out;
    if (nc == NULL || (nc->path = strdup(name)) == NULL) {
        conf_error(&cx, NULL, NULL, "out of memory");
        goto out;
    }
    if (load_tree(&cx, &node_root, &root, nc) != 0)
        goto out;
    const struct ynode *top = given(&cx, &node_root_keys[0]);
    if (node_finish(&cx, nc, is_null(top) ? root : top) != 0)
        goto out;
    *out = nc;
    nc = NULL;
    rc = 0;
out:
    tree_free(root);
    conf_node_free(nc);
    return rc;
}

int
conf_parse_cluster(const char *name, const char *text, size_t len,
                   struct cluster_conf **out, char *err, size_t errlen)
{
    struct conf_ctx cx;
    struct ynode *root = NULL;
    struct cluster_conf *cc = calloc(1, sizeof(*cc));
    int rc = -1;

    *out = NULL;
    if (ctx_init(&cx, name, text, len, err, errlen) != 0)
        goto out;
    if (cc == NULL || (cc->path = strdup(name)) == NULL) {
        conf_error(&cx, NULL, NULL, "out of memory");
        goto out;
    }
    if (load_tree(&cx, &cluster_root, &root, cc) != 0 ||
        cluster_finish(&cx, cc) != 0)
        goto out;
    *out = cc;
    cc = NULL;
    rc = 0;
out:
    free(cx.member_addr);
    tree_free(root);
    conf_cluster_free(cc);
    return rc;
}

/* The whole file, at most CONF_MAX_FILE bytes (+1 to see it is longer). */
static char *
read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *buf;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if ((buf = malloc(CONF_MAX_FILE + 1)) == NULL) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    *len = fread(buf, 1, CONF_MAX_FILE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    } else if (*len > CONF_MAX_FILE) {
        snprintf(err, errlen, "%s: expected a file of at most %d bytes, "
                 "got a larger one", path, CONF_MAX_FILE);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int
conf_load_node(const char *path, struct node_conf **out, char *err,
               size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    *out = NULL;
    if (text == NULL)
        return -1;
    int rc = conf_parse_node(path, text, len, out, err, errlen);
    free(text);
    return rc;
}

int
conf_load_cluster(const char *path, struct cluster_conf **out, char *err,
                  size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    *out = NULL;
    if (text == NULL)
        return -1;
    int rc = conf_parse_cluster(path, text, len, out, err, errlen);
    free(text);
    return rc;
}

void
conf_node_free(struct node_conf *c)
{
    if (c == NULL)
        return;
    free(c->path);
    free(c->id);
    free(c->local_address);
    free(c->local_metrics_address);
    free(c->data_dir);
    free(c->run_dir);
    free(c->log_file);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->tls_ca);
    free(c);
}

void
conf_cluster_free(struct cluster_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->node_count; i++) {
        free(c->nodes[i].id);
        free(c->nodes[i].remote_address);
    }
    free(c->nodes);
    free(c->path);
    free(c);
}

int
conf_cluster_find(const struct cluster_conf *c, const char *id)
{
    for (size_t i = 0; i < c->node_count; i++)
        if (strcmp(c->nodes[i].id, id) == 0)
            return (int)i;
    return -1;
}

int
conf_antientropy_has_work(const struct cluster_conf *c,
                          const struct node_conf *n)
{
    int self = conf_cluster_find(c, n->id);

    return self >= 0 &&
           ((size_t)self + 1 < c->node_count ||
            (c->replica_count == 1 && n->tombstone_purge_delay_ms > 0));
}

_Static_assert((int)MEMBER == (int)PLACE_MEMBER &&
               (int)MEMBER_JOINING == (int)PLACE_JOINING &&
               (int)MEMBER_LEAVING == (int)PLACE_LEAVING,
               "cluster.nodes.ID.state is ring.h's enum place_state");

const char *
conf_change_note(const struct cluster_conf *c, char *buf, size_t len)
{
    if (!conf_membership_changing(c))
        return "";
    snprintf(buf, len, ", %zu joining and %zu leaving: quorums of both "
             "placements", c->joining, c->leaving);
    return buf;
}

int
conf_cluster_placement(const struct cluster_conf *c, struct placement *p)
{
    size_t n = c->node_count ? c->node_count : 1;
    const char **ids = calloc(n, sizeof(*ids));
    uint8_t *states = calloc(n, 1);
    int rv = -1;

    if (ids != NULL && states != NULL) {
        for (size_t i = 0; i < c->node_count; i++) {
            ids[i] = c->nodes[i].id;
            states[i] = (uint8_t)c->nodes[i].state;
        }
        rv = placement_init(p, c->seed, ids, states, c->node_count,
                            (size_t)c->replica_count);
    }
    free(ids);
    free(states);
    return rv;
}

int
conf_node_in_cluster(const struct node_conf *n, const struct cluster_conf *c,
                     char *err, size_t errlen)
{
    char got[SHOW_BUF];
    if (conf_cluster_find(c, n->id) >= 0)
        return 0;
    snprintf(err, errlen, "%s: node.id: expected one of the nodes of %s, "
             "got %s", n->path, c->path,
             quote(n->id, strlen(n->id), got, sizeof(got)));
    return -1;
}

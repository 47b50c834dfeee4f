/*
 * cmd_data.c - rzkvctl get, set, del, info and keys: the Cluster API from
 * the command line, through librzkv.
 *
 * get writes the value as raw bytes with nothing added; set takes the value
 * from the command line, from standard input (-) or from a file (--file),
 * so values may hold any bytes.  With --json each command prints one JSON
 * object; keys and values that are not UTF-8 text (or hold a NUL) are
 * printed as "key_base64" / "value_base64" instead of "key" / "value".
 * Exit statuses are those of ctl.h; see rzkvctl(1).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_util.h"

/* Keys asked for per round trip by `keys`. */
#define KEYS_PAGE 1000

struct data_cmd {
    const char *name;
    const char *usage;              /* after "rzkvctl " */
    const char *help;               /* what it does, and its own options */
    const char *shortopts;
    const struct option *longopts;
    int min_args;
    int max_args;
};

/* A command's own options (not the client ones): 0, or -1 if bad. */
typedef int (*own_option_fn)(void *ctx, int ch, const char *arg);

/*
 * Parse a data command's options.  Returns -1 to go on (with the first
 * operand's index in *first), or the exit status to return now.
 */
static int
parse_args(const struct data_cmd *dc, int argc, char **argv,
           struct ctl_client_opts *o, own_option_fn own, void *ctx,
           int *first)
{
    int ch;

    ctl_client_opts_init(o);
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, dc->shortopts, dc->longopts,
                             NULL)) != -1) {
        int r;

        if (ch == 'h') {
            printf("usage: rzkvctl %s\n%s\nclient options:\n%s", dc->usage,
                   dc->help, CTL_CLIENT_HELP);
            ctl_client_opts_free(o);
            return CTL_EXIT_OK;
        }
        if (ch == ':' || ch == '?') {
            const char *what = ch == ':' ? "needs a value" : "is unknown";
            if (optopt != 0)
                ctl_usage_error(dc->name, "option -%c %s", optopt, what);
            else
                ctl_usage_error(dc->name, "option %s %s", argv[optind - 1],
                                what);
            ctl_client_opts_free(o);
            return CTL_EXIT_USAGE;
        }
        if ((r = ctl_client_option(dc->name, o, ch, optarg)) == 0 &&
            own != NULL)
            r = own(ctx, ch, optarg) == 0 ? 1 : -1;
        if (r <= 0) {
            ctl_client_opts_free(o);
            return CTL_EXIT_USAGE;
        }
    }
    int n = argc - optind;
    if (n < dc->min_args || n > dc->max_args) {
        ctl_usage_error(dc->name, n < dc->min_args ? "missing argument"
                                                   : "too many arguments");
        ctl_client_opts_free(o);
        return CTL_EXIT_USAGE;
    }
    *first = optind;
    return -1;
}

/* ---- get ------------------------------------------------------------------ */

static const struct option get_longopts[] = {
    CTL_CLIENT_LONGOPTS,
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static const struct data_cmd get_cmd = {
    "get", "get [CLIENT-OPTIONS] KEY",
    "Write the value of KEY to standard output as raw bytes, with nothing\n"
    "added.  Exits 1 if KEY does not exist.  With --json, print\n"
    "{\"status\":\"OK\",\"key\":..,\"value\":..,\"stamp\":{..},\"address\":..}\n"
    "(\"value_base64\" in place of \"value\" when it is not UTF-8 text).\n",
    ":" CTL_CLIENT_SHORTOPTS "h", get_longopts, 1, 1,
};

static void
print_json_head(const char *key, size_t key_len, const rzkv_error *err)
{
    printf("{\"status\":\"OK\",");
    ctl_json_bytes(stdout, "key", key, key_len);
    printf(",\"address\":");
    ctl_json_string(stdout, err->address, strlen(err->address));
}

int
cmd_get(int argc, char **argv)
{
    struct ctl_client_opts o;
    rzkv_client *c;
    rzkv_req req;
    rzkv_error err;
    rzkv_stamp stamp;
    void *value;
    size_t len;
    int first, rv;

    if ((rv = parse_args(&get_cmd, argc, argv, &o, NULL, NULL, &first)) >= 0)
        return rv;
    const char *key = argv[first];
    if ((c = ctl_connect("get", &o, &rv)) == NULL)
        goto out;
    ctl_client_req(&o, &req);
    if (rzkv_get(c, key, strlen(key), &req, &value, &len, &stamp, &err)
        != RZKV_OK) {
        rv = ctl_report_error("get", &o, &err);
    } else {
        if (o.json) {
            print_json_head(key, strlen(key), &err);
            putchar(',');
            ctl_json_bytes(stdout, "value", value, len);
            printf(",\"stamp\":");
            ctl_json_stamp(stdout, &stamp);
            printf("}\n");
        } else {
            fwrite(value, 1, len, stdout);
        }
        rzkv_free(value);
        rv = CTL_EXIT_OK;
    }
    rzkv_close(c);
out:
    ctl_client_opts_free(&o);
    if (fflush(stdout) != 0 && rv == CTL_EXIT_OK) {
        fprintf(stderr, "rzkvctl get: standard output: %s\n",
                strerror(errno));
        rv = CTL_EXIT_ERROR;
    }
    return rv;
}

/* ---- set and del ---------------------------------------------------------- */

static const struct option set_longopts[] = {
    CTL_CLIENT_LONGOPTS,
    { "file", required_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static const struct data_cmd set_cmd = {
    "set", "set [CLIENT-OPTIONS] KEY VALUE | KEY - | --file PATH KEY",
    "Set KEY to VALUE.  A VALUE of - reads the value from standard input,\n"
    "and --file PATH from a file, so that it may hold any bytes.  Exits 4\n"
    "if the write timed out after it was sent: it may or may not apply.\n"
    "Prints nothing; with --json {\"status\":\"OK\",\"key\":..,\"stamp\":{..}}.\n"
    "Write -- before a KEY or VALUE that starts with -, as in set -- k -1.\n"
    "  -f, --file PATH               read the value from PATH\n",
    ":" CTL_CLIENT_SHORTOPTS "hf:", set_longopts, 1, 2,
};

static int
set_option(void *ctx, int ch, const char *arg)
{
    if (ch != 'f')
        return -1;
    *(const char **)ctx = arg;
    return 0;
}

static int
print_write_result(const char *cmd, const struct ctl_client_opts *o,
                   rzkv_status st, const char *key, const rzkv_stamp *stamp,
                   const rzkv_error *err)
{
    if (st != RZKV_OK)
        return ctl_report_error(cmd, o, err);
    if (o->json) {
        print_json_head(key, strlen(key), err);
        printf(",\"stamp\":");
        ctl_json_stamp(stdout, stamp);
        printf("}\n");
    }
    return CTL_EXIT_OK;
}

int
cmd_set(int argc, char **argv)
{
    struct ctl_client_opts o;
    const char *file = NULL;
    char *value = NULL;
    size_t len;
    rzkv_client *c;
    rzkv_req req;
    rzkv_error err;
    rzkv_stamp stamp;
    int first, rv;

    if ((rv = parse_args(&set_cmd, argc, argv, &o, set_option, &file,
                         &first)) >= 0)
        return rv;
    const char *key = argv[first];
    const char *arg = first + 1 < argc ? argv[first + 1] : NULL;
    if ((file != NULL) == (arg != NULL)) {
        ctl_usage_error("set", file != NULL
                        ? "give either --file or VALUE, not both"
                        : "missing VALUE");
        rv = CTL_EXIT_USAGE;
        goto out;
    }
    if (file != NULL || strcmp(arg, "-") == 0) {
        if (ctl_read_all(file, &value, &len) != 0) {
            fprintf(stderr, "rzkvctl set: cannot read %s: %s\n",
                    file != NULL ? file : "standard input", strerror(errno));
            rv = CTL_EXIT_ERROR;
            goto out;
        }
    } else if ((value = strdup(arg)) != NULL) {
        len = strlen(arg);
    } else {
        fprintf(stderr, "rzkvctl set: out of memory\n");
        rv = CTL_EXIT_ERROR;
        goto out;
    }
    if ((c = ctl_connect("set", &o, &rv)) == NULL)
        goto out;
    ctl_client_req(&o, &req);
    rzkv_status st = rzkv_set(c, key, strlen(key), value, len, &req, &stamp,
                              &err);
    rv = print_write_result("set", &o, st, key, &stamp, &err);
    rzkv_close(c);
out:
    free(value);
    ctl_client_opts_free(&o);
    return rv;
}

static const struct option del_longopts[] = {
    CTL_CLIENT_LONGOPTS,
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static const struct data_cmd del_cmd = {
    "del", "del [CLIENT-OPTIONS] KEY",
    "Delete KEY.  Deleting a key that does not exist succeeds.  Exits 4 if\n"
    "the delete timed out after it was sent: it may or may not apply.\n"
    "Prints nothing; with --json {\"status\":\"OK\",\"key\":..,\"stamp\":{..}}.\n",
    ":" CTL_CLIENT_SHORTOPTS "h", del_longopts, 1, 1,
};

int
cmd_del(int argc, char **argv)
{
    struct ctl_client_opts o;
    rzkv_client *c;
    rzkv_req req;
    rzkv_error err;
    rzkv_stamp stamp;
    int first, rv;

    if ((rv = parse_args(&del_cmd, argc, argv, &o, NULL, NULL, &first)) >= 0)
        return rv;
    const char *key = argv[first];
    if ((c = ctl_connect("del", &o, &rv)) != NULL) {
        ctl_client_req(&o, &req);
        rzkv_status st = rzkv_del(c, key, strlen(key), &req, &stamp, &err);
        rv = print_write_result("del", &o, st, key, &stamp, &err);
        rzkv_close(c);
    }
    ctl_client_opts_free(&o);
    return rv;
}

/* ---- info ----------------------------------------------------------------- */

static const struct option info_longopts[] = {
    CTL_CLIENT_LONGOPTS,
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static const struct data_cmd info_cmd = {
    "info", "info [CLIENT-OPTIONS]",
    "Print what the node knows of its cluster: its id, the replica count,\n"
    "the read and write quorums, the seed, and every node with its address,\n"
    "whether it is reachable (and why not) and, while the membership\n"
    "changes, whether it is joining or leaving.  With --json:\n"
    "{\"node_id\":..,\"address\":..,\"replica_count\":..,\"read_quorum\":..,\n"
    " \"write_quorum\":..,\"seed\":..,\"nodes\":[{\"id\":..,\"address\":..,\n"
    " \"reachable\":true|false,\"error\":..,\n"
    " \"state\":\"member\"|\"joining\"|\"leaving\"}]}\n",
    ":" CTL_CLIENT_SHORTOPTS "h", info_longopts, 0, 0,
};

static void
print_info_json(const rzkv_cluster_info *info, const char *address)
{
    printf("{\"status\":\"OK\",\"node_id\":");
    ctl_json_string(stdout, info->node_id, strlen(info->node_id));
    printf(",\"address\":");
    ctl_json_string(stdout, address, strlen(address));
    printf(",\"replica_count\":%u,\"read_quorum\":%u,\"write_quorum\":%u,"
           "\"seed\":%u,\"nodes\":[", info->replica_count, info->read_quorum,
           info->write_quorum, info->seed);
    for (size_t i = 0; i < info->node_count; i++) {
        const rzkv_node_info *n = &info->nodes[i];
        printf("%s{\"id\":", i > 0 ? "," : "");
        ctl_json_string(stdout, n->id, strlen(n->id));
        printf(",\"address\":");
        ctl_json_string(stdout, n->address, strlen(n->address));
        printf(",\"reachable\":%s,\"error\":", n->reachable ? "true" : "false");
        ctl_json_string(stdout, n->error, strlen(n->error));
        const char *state = rzkv_info_node_state(info, i);
        printf(",\"state\":");
        ctl_json_string(stdout, state, strlen(state));
        putchar('}');
    }
    printf("]}\n");
}

static void
print_info_text(const rzkv_cluster_info *info, const char *address)
{
    int idw = 2, addrw = 7, changing = 0;

    printf("node %s (answered at %s)\n", info->node_id, address);
    printf("replicas %u, read quorum %u, write quorum %u, seed %u\n",
           info->replica_count, info->read_quorum, info->write_quorum,
           info->seed);
    for (size_t i = 0; i < info->node_count; i++) {
        int w = (int)strlen(info->nodes[i].id);
        int a = (int)strlen(info->nodes[i].address);
        idw = w > idw ? w : idw;
        addrw = a > addrw ? a : addrw;
        changing |= strcmp(rzkv_info_node_state(info, i), "member") != 0;
    }
    /* The STATE column only while nodes join or leave (rzkv(7)). */
    printf("%-*s  %-*s  %s%s\n", idw, "ID", addrw, "ADDRESS",
           changing ? "STATE    " : "", "REACHABLE");
    for (size_t i = 0; i < info->node_count; i++) {
        const rzkv_node_info *n = &info->nodes[i];
        printf("%-*s  %-*s  ", idw, n->id, addrw, n->address);
        if (changing)
            printf("%-7s  ", rzkv_info_node_state(info, i));
        printf("%s%s%s\n", n->reachable ? "yes" : "no",
               n->error[0] != '\0' ? "  " : "", n->error);
    }
}

int
cmd_info(int argc, char **argv)
{
    struct ctl_client_opts o;
    rzkv_cluster_info *info;
    rzkv_client *c;
    rzkv_req req;
    rzkv_error err;
    int first, rv;

    if ((rv = parse_args(&info_cmd, argc, argv, &o, NULL, NULL, &first)) >= 0)
        return rv;
    if ((c = ctl_connect("info", &o, &rv)) != NULL) {
        ctl_client_req(&o, &req);
        if (rzkv_info(c, &req, &info, &err) != RZKV_OK) {
            rv = ctl_report_error("info", &o, &err);
        } else {
            if (o.json)
                print_info_json(info, err.address);
            else
                print_info_text(info, err.address);
            rzkv_info_free(info);
            rv = CTL_EXIT_OK;
        }
        rzkv_close(c);
    }
    ctl_client_opts_free(&o);
    return rv;
}

/* ---- keys ----------------------------------------------------------------- */

struct keys_args {
    unsigned long limit;        /* 0: all */
    const char *start;
    bool deleted;               /* list tombstones too */
};

static const struct option keys_longopts[] = {
    CTL_CLIENT_LONGOPTS,
    { "limit", required_argument, NULL, 'n' },
    { "start", required_argument, NULL, 's' },
    { "deleted", no_argument, NULL, 'd' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static const struct data_cmd keys_cmd = {
    "keys", "keys [CLIENT-OPTIONS] [--limit N] [--start KEY] [--deleted]",
    "List the keys held by the node at the address, one a line, in key\n"
    "order: that node's share of the data (all of it when every node holds\n"
    "every key).  When --limit stops the listing early, the key to continue\n"
    "from is printed on standard error.  With --json:\n"
    "{\"status\":\"OK\",\"address\":..,\"keys\":[{\"key\":..,\"stamp\":{..}}],\n"
    " \"next_key\":..|null}\n"
    "  -n, --limit N                 at most N keys (default: all)\n"
    "  -s, --start KEY               begin at KEY (default: the first)\n"
    "  -d, --deleted                 deleted keys too, whose tombstones are\n"
    "                                not purged yet: KEY<TAB>deleted Ns ago\n"
    "                                (JSON: \"deleted\", \"deleted_ms_ago\")\n",
    ":" CTL_CLIENT_SHORTOPTS "hn:s:d", keys_longopts, 0, 0,
};

static int
keys_option(void *ctx, int ch, const char *arg)
{
    struct keys_args *ka = ctx;

    if (ch == 's') {
        ka->start = arg;
        return 0;
    }
    if (ch == 'd') {
        ka->deleted = true;
        return 0;
    }
    if (ch == 'n' && ctl_parse_uint(arg, 100000000UL, &ka->limit) == 0)
        return 0;
    ctl_usage_error("keys", "bad --limit \"%s\": expected a count", arg);
    return -1;
}

/* One key; state is NULL unless deleted keys were asked for. */
static void
print_key(const struct ctl_client_opts *o, const rzkv_key *k,
          const rzkv_key_state *state, bool first)
{
    bool deleted = state != NULL && state->deleted;

    if (!o->json) {
        fwrite(k->key, 1, k->len, stdout);
        if (deleted)
            printf("\tdeleted %" PRIu64 "s ago",
                   state->deleted_ms_ago / 1000);
        putchar('\n');
        return;
    }
    printf("%s{", first ? "" : ",");
    ctl_json_bytes(stdout, "key", k->key, k->len);
    printf(",\"stamp\":");
    ctl_json_stamp(stdout, &k->stamp);
    if (state != NULL)
        printf(",\"deleted\":%s", deleted ? "true" : "false");
    if (deleted)
        printf(",\"deleted_ms_ago\":%" PRIu64, state->deleted_ms_ago);
    putchar('}');
}

/*
 * Page through the node's keys.  Returns the status; *next is the key to
 * continue from when the limit cut the listing short (caller frees).
 */
static rzkv_status
list_keys(rzkv_client *c, const struct ctl_client_opts *o,
          const struct keys_args *ka, char **next, size_t *next_len,
          rzkv_error *err)
{
    char *start = ka->start != NULL ? strdup(ka->start) : NULL;
    size_t start_len = ka->start != NULL ? strlen(ka->start) : 0;
    unsigned long listed = 0;
    rzkv_req req;

    ctl_client_req(o, &req);
    *next = NULL;
    *next_len = 0;
    for (;;) {
        unsigned long want = KEYS_PAGE;
        rzkv_key_page *page;
        rzkv_status st;

        if (ka->limit != 0 && ka->limit - listed < want)
            want = ka->limit - listed;
        st = (ka->deleted ? rzkv_keys_all : rzkv_keys)
            (c, start, start_len, (unsigned)want, &req, &page, err);
        if (st != RZKV_OK) {
            free(start);
            return st;
        }
        for (size_t i = 0; i < page->count; i++)
            print_key(o, &page->keys[i],
                      page->states != NULL ? &page->states[i] : NULL,
                      listed + i == 0);
        listed += page->count;
        /* start is inclusive: a next key equal to it is no progress. */
        bool stuck = page->next_key != NULL && start != NULL &&
            page->next_key_len == start_len &&
            memcmp(page->next_key, start, start_len) == 0;
        free(start);
        start = page->next_key;
        start_len = page->next_key_len;
        page->next_key = NULL;
        rzkv_key_page_free(page);
        if (start == NULL)
            return RZKV_OK;
        if (stuck) {
            free(start);
            snprintf(err->message, sizeof(err->message),
                     "the node's listing does not advance");
            return err->status = RZKV_ERROR;
        }
        if (ka->limit != 0 && listed >= ka->limit) {
            *next = start;
            *next_len = start_len;
            return RZKV_OK;
        }
    }
}

int
cmd_keys(int argc, char **argv)
{
    struct ctl_client_opts o;
    struct keys_args ka = { 0, NULL, false };
    rzkv_client *c;
    rzkv_error err = { RZKV_OK, "", "" };
    char *next;
    size_t next_len;
    int first, rv;

    if ((rv = parse_args(&keys_cmd, argc, argv, &o, keys_option, &ka,
                         &first)) >= 0)
        return rv;
    if ((c = ctl_connect("keys", &o, &rv)) == NULL)
        goto out;
    if (o.json)
        printf("{\"keys\":[");
    rzkv_status st = list_keys(c, &o, &ka, &next, &next_len, &err);
    if (o.json) {
        printf("],\"status\":\"%s\",\"address\":", rzkv_status_str(st));
        ctl_json_string(stdout, err.address, strlen(err.address));
        if (st != RZKV_OK) {
            printf(",\"message\":");
            ctl_json_string(stdout, err.message, strlen(err.message));
        } else if (next != NULL) {
            putchar(',');
            ctl_json_bytes(stdout, "next_key", next, next_len);
        } else {
            printf(",\"next_key\":null");
        }
        printf("}\n");
    }
    if (st != RZKV_OK) {
        rv = ctl_report_error("keys", NULL, &err);
    } else {
        if (next != NULL && !o.json) {
            fprintf(stderr, "rzkvctl keys: more keys follow; continue with "
                    "--start ");
            fwrite(next, 1, next_len, stderr);
            fputc('\n', stderr);
        }
        rv = CTL_EXIT_OK;
    }
    free(next);
    rzkv_close(c);
out:
    ctl_client_opts_free(&o);
    return rv;
}

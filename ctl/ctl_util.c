/*
 * ctl_util.c - rzkvctl's client options, connecting, exit statuses, error
 * lines and JSON output, shared by the commands that talk to a cluster.
 *
 * The client options may come before the command name (rzkvctl -a :8002
 * get k) or after it (rzkvctl get -a :8002 k); main() hands the first kind
 * to ctl_global_options(), and each command starts from them.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctl_util.h"

static struct ctl_client_opts global_opts;

/* "rzkvctl get: ..." for a command, "rzkvctl: ..." before one. */
#define SEP(cmd) ((cmd)[0] != '\0' ? " " : "")

/* ---- options -------------------------------------------------------------- */

int
ctl_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
add_addresses(struct ctl_client_opts *o, const char *list)
{
    const char *p = list;

    for (;;) {
        size_t n = strcspn(p, ",");
        if (n > 0) {
            char **grown = realloc(o->addrs, (o->naddrs + 1) * sizeof(*grown));
            char *one = strndup(p, n);
            if (grown == NULL || one == NULL) {
                free(one);
                if (grown != NULL)
                    o->addrs = grown;
                return -1;
            }
            o->addrs = grown;
            o->addrs[o->naddrs++] = one;
        }
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

int
ctl_client_option(const char *cmd, struct ctl_client_opts *o, int ch,
                  const char *arg)
{
    unsigned long v;

    switch (ch) {
    case 'a':
        if (add_addresses(o, arg) != 0) {
            fprintf(stderr, "rzkvctl%s%s: out of memory\n", SEP(cmd), cmd);
            return -1;
        }
        return 1;
    case 'c':
        if (rzkv_consistency_parse(arg, &o->consistency) != 0) {
            fprintf(stderr, "rzkvctl%s%s: bad consistency \"%s\": expected "
                    "one, quorum or all\n", SEP(cmd), cmd, arg);
            return -1;
        }
        return 1;
    case 't':
        if (ctl_parse_uint(arg, 86400000UL, &v) != 0) {
            fprintf(stderr, "rzkvctl%s%s: bad timeout \"%s\": expected "
                    "milliseconds, 0..86400000\n", SEP(cmd), cmd, arg);
            return -1;
        }
        o->timeout_ms = (unsigned)v;
        return 1;
    case 'j':
        o->json = true;
        return 1;
    default:
        return 0;
    }
}

/* The short letter of a client option written as argv[i], and its value
 * (attached or the next argument); 0 if argv[i] is not one. */
static int
match_global(char **argv, int argc, int i, const char **value, int *used)
{
    static const struct { const char *longname; int ch; bool has_arg; } opts[] = {
        { "address", 'a', true },
        { "consistency", 'c', true },
        { "timeout", 't', true },
        { "json", 'j', false },
    };
    const char *a = argv[i];

    *value = NULL;
    *used = 1;
    for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
        size_t n = strlen(opts[k].longname);
        const char *attached = NULL;
        bool hit = false;

        if (a[0] == '-' && a[1] == opts[k].ch) {
            hit = true;
            attached = a[2] != '\0' ? a + 2 : NULL;
            if (!opts[k].has_arg && attached != NULL)
                hit = false;
        } else if (strncmp(a, "--", 2) == 0 &&
                   strncmp(a + 2, opts[k].longname, n) == 0 &&
                   (a[2 + n] == '\0' || a[2 + n] == '=')) {
            hit = true;
            attached = a[2 + n] == '=' ? a + 3 + n : NULL;
        }
        if (!hit)
            continue;
        if (opts[k].has_arg) {
            if (attached != NULL) {
                *value = attached;
            } else if (i + 1 < argc) {
                *value = argv[i + 1];
                *used = 2;
            } else {
                *value = NULL;
            }
        }
        return opts[k].ch;
    }
    return 0;
}

int
ctl_global_options(int *argc, char ***argv)
{
    int i = 1;

    global_opts.consistency = RZKV_QUORUM;
    while (i < *argc) {
        const char *value;
        int used;
        int ch = match_global(*argv, *argc, i, &value, &used);

        if (ch == 0)
            break;
        if (ch != 'j' && value == NULL) {
            fprintf(stderr, "rzkvctl: option %s needs a value\n",
                    (*argv)[i]);
            return CTL_EXIT_USAGE;
        }
        if (ctl_client_option("", &global_opts, ch, value) < 0)
            return CTL_EXIT_USAGE;
        i += used;
    }
    /* Drop the consumed options, keeping the program name at argv[0]. */
    (*argv)[i - 1] = (*argv)[0];
    *argv += i - 1;
    *argc -= i - 1;
    return CTL_EXIT_OK;
}

void
ctl_client_opts_init(struct ctl_client_opts *o)
{
    *o = global_opts;
    o->addrs = NULL;
    o->naddrs = 0;
    for (size_t i = 0; i < global_opts.naddrs; i++)
        if (add_addresses(o, global_opts.addrs[i]) != 0)
            break;
}

void
ctl_client_opts_free(struct ctl_client_opts *o)
{
    for (size_t i = 0; i < o->naddrs; i++)
        free(o->addrs[i]);
    free(o->addrs);
    o->addrs = NULL;
    o->naddrs = 0;
}

rzkv_client *
ctl_connect(const char *cmd, const struct ctl_client_opts *o,
            int *exit_status)
{
    struct ctl_client_opts fallback = { 0 };
    const struct ctl_client_opts *use = o;
    rzkv_options opts = { 0 };
    rzkv_client *c;
    rzkv_error err;

    if (o->naddrs == 0) {
        const char *env = getenv("RZKV_ADDRESS");
        if (add_addresses(&fallback, env != NULL && *env != '\0'
                          ? env : CTL_DEFAULT_ADDRESS) != 0 ||
            fallback.naddrs == 0) {
            fprintf(stderr, "rzkvctl %s: no address in RZKV_ADDRESS\n", cmd);
            ctl_client_opts_free(&fallback);
            *exit_status = CTL_EXIT_USAGE;
            return NULL;
        }
        use = &fallback;
    }
    opts.timeout_ms = o->timeout_ms;
    opts.consistency = o->consistency;
    c = rzkv_connect((const char *const *)use->addrs, use->naddrs, &opts,
                     &err);
    ctl_client_opts_free(&fallback);
    if (c == NULL) {
        fprintf(stderr, "rzkvctl %s: %s\n", cmd, err.message);
        *exit_status = err.status == RZKV_INVALID ? CTL_EXIT_USAGE
                                                  : CTL_EXIT_ERROR;
    }
    return c;
}

void
ctl_client_req(const struct ctl_client_opts *o, rzkv_req *req)
{
    req->consistency = o->consistency;
    req->timeout_ms = o->timeout_ms;
}

/* ---- results -------------------------------------------------------------- */

int
ctl_exit_status(rzkv_status status)
{
    switch (status) {
    case RZKV_OK: return CTL_EXIT_OK;
    case RZKV_NOT_FOUND: return CTL_EXIT_NOT_FOUND;
    case RZKV_UNAVAILABLE: return CTL_EXIT_UNAVAILABLE;
    case RZKV_UNKNOWN: return CTL_EXIT_UNKNOWN;
    default: return CTL_EXIT_ERROR;
    }
}

int
ctl_report_error(const char *cmd, const struct ctl_client_opts *o,
                 const rzkv_error *err)
{
    fprintf(stderr, "rzkvctl %s: %s: %s\n", cmd,
            rzkv_status_str(err->status), err->message);
    if (o != NULL && o->json) {
        printf("{\"status\":");
        ctl_json_string(stdout, rzkv_status_str(err->status),
                        strlen(rzkv_status_str(err->status)));
        printf(",\"message\":");
        ctl_json_string(stdout, err->message, strlen(err->message));
        printf(",\"address\":");
        ctl_json_string(stdout, err->address, strlen(err->address));
        printf("}\n");
    }
    return ctl_exit_status(err->status);
}

int
ctl_read_all(const char *path, char **data, size_t *len)
{
    FILE *f = path == NULL || strcmp(path, "-") == 0 ? stdin
                                                     : fopen(path, "rb");
    size_t size = 0, cap = 65536;
    char *buf;

    if (f == NULL)
        return -1;
    if ((buf = malloc(cap)) == NULL)
        goto fail;
    for (;;) {
        size_t n = fread(buf + size, 1, cap - size, f);
        size += n;
        if (size < cap) {
            if (ferror(f))
                goto fail;
            break;
        }
        char *grown = realloc(buf, cap * 2);
        if (grown == NULL)
            goto fail;
        buf = grown;
        cap *= 2;
    }
    if (f != stdin)
        fclose(f);
    *data = buf;
    *len = size;
    return 0;
fail:
    {
        int saved = errno != 0 ? errno : EIO;
        free(buf);
        if (f != stdin)
            fclose(f);
        errno = saved;
    }
    return -1;
}

/* ---- JSON ----------------------------------------------------------------- */

bool
ctl_utf8_valid(const void *p, size_t len)
{
    const unsigned char *s = p;
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

void
ctl_json_string(FILE *out, const void *p, size_t len)
{
    const unsigned char *s = p;

    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\u%04x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
}

static void
json_base64(FILE *out, const void *p, size_t len)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    size_t i;

    fputc('"', out);
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        fputc(digits[v >> 18], out);
        fputc(digits[(v >> 12) & 63], out);
        fputc(digits[(v >> 6) & 63], out);
        fputc(digits[v & 63], out);
    }
    if (i < len) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        fputc(digits[v >> 18], out);
        fputc(digits[(v >> 12) & 63], out);
        fputc(i + 1 < len ? digits[(v >> 6) & 63] : '=', out);
        fputc('=', out);
    }
    fputc('"', out);
}

void
ctl_json_bytes(FILE *out, const char *name, const void *p, size_t len)
{
    /* NUL is valid UTF-8 but no one wants "\u0000" back as text. */
    if (ctl_utf8_valid(p, len) && (len == 0 || memchr(p, '\0', len) == NULL)) {
        fprintf(out, "\"%s\":", name);
        ctl_json_string(out, p, len);
    } else {
        fprintf(out, "\"%s_base64\":", name);
        json_base64(out, p, len);
    }
}

void
ctl_json_stamp(FILE *out, const rzkv_stamp *s)
{
    fprintf(out, "{\"epoch\":%llu,\"counter\":%llu,\"writer\":",
            (unsigned long long)s->epoch, (unsigned long long)s->counter);
    ctl_json_string(out, s->writer, strlen(s->writer));
    fprintf(out, ",\"nonce\":%llu}", (unsigned long long)s->nonce);
}

/*
 * ctl_util.h - what rzkvctl's client commands share: the client options
 * (-a, -c, -t, -j, given before or after the command name), connecting,
 * exit statuses, error lines and JSON output.
 */
#ifndef RZKV_CTL_UTIL_H
#define RZKV_CTL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "rzkv.h"

#define CTL_DEFAULT_ADDRESS "127.0.0.1:8001"

struct ctl_client_opts {
    char **addrs;               /* from -a, split at commas; none: default */
    size_t naddrs;
    rzkv_consistency consistency;
    unsigned timeout_ms;        /* 0: the cluster's */
    bool json;
};

/* getopt_long pieces for the client options; add them to a command's. */
#define CTL_CLIENT_SHORTOPTS "a:c:t:j"
#define CTL_CLIENT_LONGOPTS \
    { "address", required_argument, NULL, 'a' }, \
    { "consistency", required_argument, NULL, 'c' }, \
    { "timeout", required_argument, NULL, 't' }, \
    { "json", no_argument, NULL, 'j' }
#define CTL_CLIENT_HELP \
    "  -a, --address ADDR[,ADDR...]  nodes to ask, in order (default\n" \
    "                                $RZKV_ADDRESS or " CTL_DEFAULT_ADDRESS ")\n" \
    "  -c, --consistency LEVEL       one, quorum (default) or all\n" \
    "  -t, --timeout MS              the node's time to reach its quorum\n" \
    "                                (default, or 0: the cluster's)\n" \
    "  -j, --json                    print the result as one JSON object\n"

/* A command's options start as those given before the command name
 * (ctl_global_options in ctl.h). */
void ctl_client_opts_init(struct ctl_client_opts *o);
void ctl_client_opts_free(struct ctl_client_opts *o);
/* Apply one getopt result: 1 if it was a client option, 0 if not, -1 if
 * its value is bad (printed). */
int ctl_client_option(const char *cmd, struct ctl_client_opts *o, int ch,
                      const char *arg);
/* Connect with the options; NULL after printing why. */
rzkv_client *ctl_connect(const char *cmd, const struct ctl_client_opts *o,
                         int *exit_status);
void ctl_client_req(const struct ctl_client_opts *o, rzkv_req *req);

/* The exit status for a result (ctl.h). */
int ctl_exit_status(rzkv_status status);
/* "rzkvctl CMD: STATUS: message" on stderr (and, with --json, a JSON
 * object on stdout); returns the exit status. */
int ctl_report_error(const char *cmd, const struct ctl_client_opts *o,
                     const rzkv_error *err);

/* Parse a non-negative integer no larger than max; -1 if it is not one. */
int ctl_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* Read a whole file (NULL or "-": standard input); -1 with errno. */
int ctl_read_all(const char *path, char **data, size_t *len);

/* JSON output. */
bool ctl_utf8_valid(const void *p, size_t len);
void ctl_json_string(FILE *out, const void *p, size_t len);
/* "name":"text" if the bytes are UTF-8 text, else "name_base64":"...". */
void ctl_json_bytes(FILE *out, const char *name, const void *p, size_t len);
void ctl_json_stamp(FILE *out, const rzkv_stamp *s);

#endif

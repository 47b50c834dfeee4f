/*
 * ctl.h - rzkvctl's commands and what they share.
 *
 * Each command is a function in the table of rzkvctl.c; it gets argv with
 * the command name at argv[0] and returns the process exit status.
 */
#ifndef RZKV_CTL_H
#define RZKV_CTL_H

#include <stdio.h>

/* Exit statuses, documented in rzkvctl(1). */
#define CTL_EXIT_OK             0
#define CTL_EXIT_NOT_FOUND      1
#define CTL_EXIT_USAGE          2
#define CTL_EXIT_UNAVAILABLE    3
#define CTL_EXIT_UNKNOWN        4
#define CTL_EXIT_ERROR          5

struct ctl_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;       /* one line for `rzkvctl --help` */
};

/* cmd_locate.c */
int cmd_locate(int argc, char **argv);

/* cmd_node.c: the node lifecycle, through each node's control socket */
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_reload(int argc, char **argv);
int cmd_repair(int argc, char **argv);

/* ctl_local.c: the local cluster of --local (DIR/cluster.yml,
 * DIR/node-ID.yml, DIR/{data,run,log}) */
#define CTL_LOCAL_DIR           "./rzkv-local"
#define CTL_LOCAL_NODES         3
#define CTL_LOCAL_BASE_PORT     8001

struct node_conf;
struct ctl_node {
    char *node_path;
    char *cluster_path;         /* NULL if not given */
    struct node_conf *conf;
};

/* Write the embedded default configuration for n nodes into dir, unless
 * dir/cluster.yml exists: 1 if written, 0 if kept, -1 with err. */
int ctl_local_create(const char *dir, int n, int base_port, char *err,
                     size_t errlen);
/* The nodes of the local cluster in dir; -1 with err. */
int ctl_local_nodes(const char *dir, struct ctl_node **nodes, size_t *n,
                    char *err, size_t errlen);
int ctl_node_load(struct ctl_node *node, const char *node_path,
                  const char *cluster_path, char *err, size_t errlen);
void ctl_nodes_free(struct ctl_node *nodes, size_t n);

/* cmd_data.c: the Cluster API (see ctl_util.h for the client options) */
int cmd_get(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_del(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_keys(int argc, char **argv);

/* cmd_bench.c: the load generator */
int cmd_bench(int argc, char **argv);

/* ctl_util.c: consume the client options (-a, -c, -t, -j) written before
 * the command name, so that argv[1] is the command; CTL_EXIT_OK, or
 * CTL_EXIT_USAGE after printing why. */
int ctl_global_options(int *argc, char ***argv);

/* rzkvctl.c */
void ctl_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

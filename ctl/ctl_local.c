/*
 * ctl_local.c - the local cluster of `rzkvctl start|stop|status|reload
 * --local`: its embedded default configuration and where it lives.
 *
 * A local cluster is a directory (default ./rzkv-local):
 *
 *   DIR/cluster.yml        the members: ids "1".."N" on 127.0.0.1
 *   DIR/node-ID.yml        one per node
 *   DIR/data/node-ID       data directories
 *   DIR/run/node-ID        run directories (sockets, pid file)
 *   DIR/log/node-ID.log    log files
 *
 * The files are generated from the templates below, with comments, so a
 * user can read and edit them; paths in them are relative to DIR (rzkv.yml
 * paths are relative to the file), so the directory can be moved.  An
 * existing DIR/cluster.yml is never overwritten: the cluster it describes
 * is the one started, with its data and the user's edits.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "ctl.h"

#define NODE_TEMPLATE \
    "# node-%1$s.yml - node %1$s of the local rzkv cluster made by\n" \
    "# `rzkvctl start --local`.  Edit it freely: rzkvctl start --local\n" \
    "# reuses this file and never overwrites it.  Relative paths are taken\n" \
    "# relative to this file's directory.  Every key is described in\n" \
    "# rzkv.yml(5); node.yml changes take effect when the node restarts.\n" \
    "\n" \
    "node:\n" \
    "  # This node's id: one of the keys of cluster.nodes in cluster.yml.\n" \
    "  id: \"%1$s\"\n" \
    "\n" \
    "  # host:port this node listens on, for clients and peers (TCP).\n" \
    "  local_address: 127.0.0.1:%2$d\n" \
    "\n" \
    "  # host:port of the HTTP endpoint for /metrics and /health.\n" \
    "  local_metrics_address: 127.0.0.1:%3$d\n" \
    "\n" \
    "  # SQLite files (one per storage worker) and the lock file.\n" \
    "  data_dir: data/node-%1$s\n" \
    "\n" \
    "  # Unix sockets, the pid file and the validated copy of cluster.yml.\n" \
    "  # Socket paths must fit in 108 bytes: keep the directory short.\n" \
    "  run_dir: run/node-%1$s\n" \
    "\n" \
    "  # Storage worker processes (keys are spread over them by a hash of\n" \
    "  # the key; fixed once data exists).  1..64; with 1, peers' batches\n" \
    "  # go straight to it from the front door.\n" \
    "  storage_workers: 1\n" \
    "\n" \
    "  # Coordinator worker processes (routing, quorum reads and writes).\n" \
    "  coordinator_workers: 1\n" \
    "\n" \
    "  # full: a write is acknowledged after its commit is fsynced;\n" \
    "  # normal: once the OS has it (a power loss may lose the last ones).\n" \
    "  durability: full\n" \
    "\n" \
    "  # Largest value accepted, in bytes (16 MiB).\n" \
    "  max_value_size: 16777216\n" \
    "\n" \
    "  # Compare keys with their other replicas and copy what they lack,\n" \
    "  # every this many ms (0: off).\n" \
    "  anti_entropy_interval_ms: 600000\n" \
    "\n" \
    "  # Anti-entropy purges a tombstone once every replica has held it\n" \
    "  # this many ms (0: never).\n" \
    "  tombstone_purge_delay_ms: 3600000\n" \
    "\n" \
    "  log:\n" \
    "    # A file path, \"syslog\", or \"\" for standard error.\n" \
    "    file: log/node-%1$s.log\n" \
    "    # error, warn, notice, info or debug.\n" \
    "    level: info\n"

#define CLUSTER_HEAD \
    "# cluster.yml - the members of the local rzkv cluster made by\n" \
    "# `rzkvctl start --local`: %1$d node(s) on 127.0.0.1.  Every node reads\n" \
    "# this same file; after editing it, `rzkvctl reload --local` makes the\n" \
    "# running nodes re-read it (an invalid file is refused, the nodes keep\n" \
    "# the old one).  Every key is described in rzkv.yml(5).\n" \
    "\n" \
    "cluster:\n" \
    "  # Seed of the placement hash; the same on every node.  Changing it\n" \
    "  # moves almost every key.\n" \
    "  seed: 0\n" \
    "\n" \
    "  # How many nodes hold each key (N), 1..the number of nodes.\n" \
    "  replica_count: %2$d\n" \
    "\n" \
    "  # Replicas a QUORUM read (R) or write (W) waits for; by default a\n" \
    "  # majority of replica_count.\n" \
    "  # read_quorum: %3$d\n" \
    "  # write_quorum: %3$d\n" \
    "\n" \
    "  # How long a request waits for its quorum, in milliseconds.\n" \
    "  timeout_ms: 2000\n" \
    "\n" \
    "  # How far apart the nodes' clocks may be, in milliseconds: a replica\n" \
    "  # refuses a write that arrives later than its deadline plus this.\n" \
    "  max_clock_skew_ms: 10000\n" \
    "\n" \
    "  # The members: ID: {remote_address: host:port}.\n" \
    "  nodes:\n"

#define CLUSTER_NODE \
    "    \"%d\":\n" \
    "      remote_address: 127.0.0.1:%d\n"

static int
mkdir_one(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    return -1;
}

/* Write text to path through a temporary file, never over an existing
 * file (the user's edits win). */
static int
write_new_file(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (link(tmp, path) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    unlink(tmp);
    return 0;
}

int
ctl_local_create(const char *dir, int n, int base_port, char *err,
                 size_t errlen)
{
    char path[PATH_MAX], id[16];
    char *text = NULL;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/cluster.yml", dir);
    if (access(path, F_OK) == 0)
        return 0;
    static const char *const subdirs[] = { "", "/data", "/run", "/log" };
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", dir, subdirs[i]);
        if (mkdir_one(path, err, errlen) != 0)
            return -1;
    }
    for (int k = 1; k <= n; k++) {
        snprintf(id, sizeof(id), "%d", k);
        snprintf(path, sizeof(path), "%s/node-%s.yml", dir, id);
        if (asprintf(&text, NODE_TEMPLATE, id, base_port + k - 1,
                     base_port + 1000 + k - 1) < 0)
            return -1;
        int rc = write_new_file(path, text, err, errlen);
        free(text);
        if (rc != 0)
            return -1;
    }
    int replicas = n < 3 ? n : 3;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return -1;
    fprintf(f, CLUSTER_HEAD, n, replicas, replicas / 2 + 1);
    for (int k = 1; k <= n; k++)
        fprintf(f, CLUSTER_NODE, k, base_port + k - 1);
    fclose(f);
    snprintf(path, sizeof(path), "%s/cluster.yml", dir);
    int rc = write_new_file(path, text, err, errlen);
    free(text);
    return rc == 0 ? 1 : -1;
}

/*
 * When DIR/cluster.yml does not load (the user is editing it, and reload
 * is how they find out), the nodes are still DIR/node-*.yml.
 */
static int
nodes_from_files(const char *dir, const char *cluster_path,
                 struct ctl_node **out, size_t *count, char *err,
                 size_t errlen)
{
    char pattern[PATH_MAX];
    glob_t g;
    snprintf(pattern, sizeof(pattern), "%s/node-*.yml", dir);
    if (glob(pattern, 0, NULL, &g) != 0)
        return -1;
    struct ctl_node *nodes = calloc(g.gl_pathc, sizeof(*nodes));
    size_t n = 0;
    for (size_t i = 0; nodes != NULL && i < g.gl_pathc; i++) {
        if (ctl_node_load(&nodes[n], g.gl_pathv[i], cluster_path, err,
                          errlen) != 0) {
            ctl_nodes_free(nodes, n);
            globfree(&g);
            return -1;
        }
        n++;
    }
    globfree(&g);
    if (nodes == NULL)
        return -1;
    *out = nodes;
    *count = n;
    return 0;
}

int
ctl_local_nodes(const char *dir, struct ctl_node **out, size_t *count,
                char *err, size_t errlen)
{
    char cluster_path[PATH_MAX], node_path[PATH_MAX];
    struct cluster_conf *cc;

    snprintf(cluster_path, sizeof(cluster_path), "%s/cluster.yml", dir);
    if (conf_load_cluster(cluster_path, &cc, err, errlen) != 0) {
        char ignored[CONF_ERR_MAX];
        return nodes_from_files(dir, cluster_path, out, count, ignored,
                                sizeof(ignored));
    }
    struct ctl_node *nodes = calloc(cc->node_count, sizeof(*nodes));
    if (nodes == NULL) {
        conf_cluster_free(cc);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < cc->node_count; i++) {
        snprintf(node_path, sizeof(node_path), "%s/node-%s.yml", dir,
                 cc->nodes[i].id);
        if (ctl_node_load(&nodes[n], node_path, cluster_path, err,
                          errlen) != 0) {
            ctl_nodes_free(nodes, n);
            conf_cluster_free(cc);
            return -1;
        }
        n++;
    }
    conf_cluster_free(cc);
    *out = nodes;
    *count = n;
    return 0;
}

int
ctl_node_load(struct ctl_node *node, const char *node_path,
              const char *cluster_path, char *err, size_t errlen)
{
    memset(node, 0, sizeof(*node));
    if (conf_load_node(node_path, &node->conf, err, errlen) != 0)
        return -1;
    node->node_path = strdup(node_path);
    node->cluster_path = cluster_path != NULL ? strdup(cluster_path) : NULL;
    return 0;
}

void
ctl_nodes_free(struct ctl_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        conf_node_free(nodes[i].conf);
        free(nodes[i].node_path);
        free(nodes[i].cluster_path);
    }
    free(nodes);
}

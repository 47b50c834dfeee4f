/*
 * conf.h - node.yml and cluster.yml, loaded and validated with libyaml.
 *
 * Every key of both files is declared once, in a table in conf.c, with its
 * type, default and bounds.  Loading runs in stages: YAML hygiene (one
 * document, no anchors, aliases or tags), shape (unknown keys, wrong types,
 * missing required keys), then meaning (duplicate ids, quorum sizes, ...).
 * Every error names FILE:LINE:COLUMN, the key and what was expected, e.g.
 *
 *   cluster.yml:4:18: cluster.replica_count: expected an integer in 1..3
 *     (the number of nodes), got "5"
 *
 * Relative paths in node.yml (data_dir, run_dir, log.file, tls.*) are
 * taken relative to the directory of the file itself and stored absolute,
 * so a file means the same from any working directory.  String fields are
 * never NULL: an unset optional one is "".
 *
 * Returned structures are owned by the caller; free them with conf_*_free.
 */
#ifndef RZKV_CONF_H
#define RZKV_CONF_H

#include <stddef.h>
#include <stdint.h>

#define CONF_ERR_MAX 512

enum durability {
    DURABILITY_FULL = 0,    /* fsync every group commit (default) */
    DURABILITY_NORMAL,      /* SQLite synchronous=NORMAL: a power loss may
                             * lose the last commits; a process crash not */
};

struct node_conf {
    char *path;                 /* the file it came from */
    char *id;                   /* node.id (required) */
    char *local_address;        /* node.local_address "host:port" (required) */
    char *local_metrics_address;/* node.local_metrics_address, "" if unset */
    char *data_dir;             /* node.data_dir (default "./data/ID"),
                                 * absolute */
    char *run_dir;              /* node.run_dir (default DATA_DIR/run) */
    int storage_workers;        /* node.storage_workers (default 2, 1..64) */
    int coordinator_workers;    /* node.coordinator_workers (default 1, 1..64) */
    enum durability durability; /* node.durability: full | normal */
    uint64_t max_value_size;    /* node.max_value_size (default 16 MiB) */
    int anti_entropy_interval_ms;   /* node.anti_entropy_interval_ms
                                     * (default 600000; 0: off) */
    int tombstone_purge_delay_ms;   /* node.tombstone_purge_delay_ms
                                     * (default 3600000; 0: never) */
    char *log_file;             /* node.log.file: "" stderr, absolute path,
                                 * or "syslog" */
    int log_level;              /* node.log.level (enum log_level) */
    char *tls_cert;             /* node.tls.cert_file, "" if unset */
    char *tls_key;              /* node.tls.key_file */
    char *tls_ca;               /* node.tls.ca_file */
};

/* cluster.nodes.ID.state: the node's part in a membership change.  The
 * values are ring.h's enum place_state. */
enum member_state {
    MEMBER = 0,                 /* default */
    MEMBER_JOINING = 1,         /* holds keys only after the change */
    MEMBER_LEAVING = 2,         /* holds keys only before it */
};

struct cluster_node {
    char *id;
    char *remote_address;       /* "host:port" */
    int state;                  /* enum member_state */
};

struct cluster_conf {
    char *path;
    uint32_t seed;              /* cluster.seed (default 0) */
    int replica_count;          /* cluster.replica_count (required) */
    int read_quorum;            /* cluster.read_quorum (default majority) */
    int write_quorum;           /* cluster.write_quorum (default majority) */
    int timeout_ms;             /* cluster.timeout_ms (default 2000) */
    int max_clock_skew_ms;      /* cluster.max_clock_skew_ms (default
                                 * 10000): replica writes expire this long
                                 * after their request's deadline */
    size_t node_count;
    struct cluster_node *nodes; /* in file order */
    size_t joining, leaving;    /* nodes in those states */
};

/* 0 on success; -1 with a message in err. */
int conf_load_node(const char *path, struct node_conf **out,
                   char *err, size_t errlen);
int conf_load_cluster(const char *path, struct cluster_conf **out,
                      char *err, size_t errlen);
/* The same from memory; name is used in messages in place of the path. */
int conf_parse_node(const char *name, const char *text, size_t len,
                    struct node_conf **out, char *err, size_t errlen);
int conf_parse_cluster(const char *name, const char *text, size_t len,
                       struct cluster_conf **out, char *err, size_t errlen);

void conf_node_free(struct node_conf *c);
void conf_cluster_free(struct cluster_conf *c);

/* Index of node id in c->nodes, or -1. */
int conf_cluster_find(const struct cluster_conf *c, const char *id);

/* Whether c marks nodes joining or leaving: a membership change. */
static inline int
conf_membership_changing(const struct cluster_conf *c)
{
    return c->joining > 0 || c->leaving > 0;
}
/* ", J joining and L leaving: quorums of both placements" during a
 * change, for logs and replies; "" otherwise.  Written to buf. */
const char *conf_change_note(const struct cluster_conf *c, char *buf,
                             size_t len);

struct placement;
/*
 * The placement of c's keys (ring.h), its nodes' states included: node i
 * of it is c->nodes[i].  It points at c's ids, so c must outlive it.
 * Returns 0, or -1 (ENOMEM).
 */
int conf_cluster_placement(const struct cluster_conf *c, struct placement *p);

/*
 * Whether node n's anti-entropy passes do anything in cluster c (rzkv(7)):
 * each node compares itself with the nodes after it in the file, so the
 * last compares nothing, but with replica_count 1 it is the first replica
 * of the keys it alone holds, whose tombstones it purges if purging is on.
 */
int conf_antientropy_has_work(const struct cluster_conf *c,
                              const struct node_conf *n);

/* 0 if node n->id is one of c's nodes; -1 with a message in err. */
int conf_node_in_cluster(const struct node_conf *n,
                         const struct cluster_conf *c, char *err,
                         size_t errlen);

#define CONF_MAX_HOST 255        /* bytes of a host name or address */

/*
 * Split "host:port" (or "[v6]:port", or ":port" meaning 127.0.0.1) into
 * host (at most CONF_MAX_HOST bytes) and port; 0 if valid, -1 if not.
 */
int conf_parse_address(const char *addr, char *host, size_t hostlen,
                       int *port);

#endif

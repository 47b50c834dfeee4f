/*
 * sup_reload.c - re-read CLUSTER.yml without stopping the node.
 *
 * NAME
 *	sup_reload - build the new cluster configuration beside the old one,
 *	swap only if it is valid
 * DESCRIPTION
 *	On SIGHUP or "reload" on the control socket, CLUSTER.yml is read and
 *	validated into a new structure while the old one keeps serving
 *	(nginx ngx_init_cycle).  If it is invalid, the error is logged and
 *	returned to rzkvctl, and nothing changes.  If it is valid, its bytes
 *	become the new active copy (atomic rename, sup_setup.c) and the
 *	coordinators are told "reload"; storage workers do not depend on the
 *	cluster's membership and keep running.
 *
 *	node.yml is not applied on reload: its settings (addresses, worker
 *	counts, directories) are fixed for the life of the process.  If the
 *	file changed since start, the log and the reply name the keys that
 *	will change at the next restart (Postfix master_watch.c).
 * SEE ALSO
 *	sup_setup.c (sup_write_active_cluster), common/conf.h
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

#define CONF_FILE_MAX   (1 << 20)

/* The whole file in a NUL-terminated buffer; NULL with a message. */
char *
sup_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONF_FILE_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, CONF_FILE_MAX + 1, f) : 0;
    int failed = buf == NULL || ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        free(buf);
        return NULL;
    }
    if (n > CONF_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path,
                 CONF_FILE_MAX);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    char *fit = realloc(buf, n + 1);
    return fit != NULL ? fit : buf;
}

int
sup_cross_check(const struct node_conf *node,
                const struct cluster_conf *cluster, char *err, size_t errlen)
{
    return conf_node_in_cluster(node, cluster, err, errlen);
}

static int
differs(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") != 0;
}

/* Names of the node.yml keys that differ between a and b, into buf. */
static void
node_changes(const struct node_conf *a, const struct node_conf *b,
             char *buf, size_t len)
{
    struct { const char *key; int changed; } keys[] = {
        { "node.id", differs(a->id, b->id) },
        { "node.local_address", differs(a->local_address, b->local_address) },
        { "node.local_metrics_address",
          differs(a->local_metrics_address, b->local_metrics_address) },
        { "node.data_dir", differs(a->data_dir, b->data_dir) },
        { "node.run_dir", differs(a->run_dir, b->run_dir) },
        { "node.storage_workers", a->storage_workers != b->storage_workers },
        { "node.coordinator_workers",
          a->coordinator_workers != b->coordinator_workers },
        { "node.durability", a->durability != b->durability },
        { "node.max_value_size", a->max_value_size != b->max_value_size },
        { "node.anti_entropy_interval_ms",
          a->anti_entropy_interval_ms != b->anti_entropy_interval_ms },
        { "node.tombstone_purge_delay_ms",
          a->tombstone_purge_delay_ms != b->tombstone_purge_delay_ms },
        { "node.log.file", differs(a->log_file, b->log_file) },
        { "node.log.level", a->log_level != b->log_level },
        { "node.tls", differs(a->tls_cert, b->tls_cert) ||
                      differs(a->tls_key, b->tls_key) ||
                      differs(a->tls_ca, b->tls_ca) },
    };
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].changed && off < len)
            off += (size_t)snprintf(buf + off, len - off, "%s%s",
                                    off > 0 ? ", " : "", keys[i].key);
}

/*
 * Has node.yml changed since start?  Writes a note for the reply into
 * note ("" if not).  Nothing of it is applied.
 */
static void
check_node_file(struct sup *s, char *note, size_t len)
{
    char err[CONF_ERR_MAX], keys[256];
    size_t n;
    note[0] = '\0';
    char *text = sup_read_file(s->opts->node_path, &n, err, sizeof(err));
    if (text == NULL) {
        log_warnx("reload: %s", err);
        return;
    }
    if (n == s->node_text_len && memcmp(text, s->node_text, n) == 0) {
        free(text);
        return;
    }
    struct node_conf *node;
    if (conf_parse_node(s->opts->node_path, text, n, &node, err,
                        sizeof(err)) != 0) {
        snprintf(note, len, "; %s changed and is not valid (%.200s); a "
                 "restart would fail", s->opts->node_path, err);
    } else {
        node_changes(s->node, node, keys, sizeof(keys));
        if (keys[0] != '\0')
            snprintf(note, len, "; %s changed (%s): node settings take "
                     "effect only when rzkvd restarts", s->opts->node_path,
                     keys);
        conf_node_free(node);
    }
    free(text);
    if (note[0] != '\0')
        log_warnx("reload: %s", note + 2);
}

int
sup_reload(struct sup *s, char *msg, size_t len)
{
    char err[CONF_ERR_MAX], note[CONF_ERR_MAX];
    struct cluster_conf *cluster = NULL;
    size_t n;

    if (s->state == SUP_STOPPING) {
        snprintf(msg, len, "node %s is stopping", s->node->id);
        return -1;
    }
    char *text = sup_read_file(s->opts->cluster_path, &n, err, sizeof(err));
    if (text == NULL ||
        conf_parse_cluster(s->opts->cluster_path, text, n, &cluster, err,
                           sizeof(err)) != 0 ||
        sup_cross_check(s->node, cluster, err, sizeof(err)) != 0) {
        log_warnx("reload: %s; keeping the current cluster configuration",
                  err);
        snprintf(msg, len, "%s; keeping the current cluster configuration",
                 err);
        free(text);
        if (cluster != NULL)
            conf_cluster_free(cluster);
        return -1;
    }
    check_node_file(s, note, sizeof(note));
    if (n == s->cluster_text_len && memcmp(text, s->cluster_text, n) == 0) {
        log_info("reload: %s unchanged", s->opts->cluster_path);
        snprintf(msg, len, "%s unchanged%s", s->opts->cluster_path, note);
        free(text);
        conf_cluster_free(cluster);
        return 0;
    }
    if (sup_write_active_cluster(s, text, n) != 0) {
        snprintf(msg, len, "cannot write %s (see the log); keeping the "
                 "current cluster configuration", s->active_cluster);
        free(text);
        conf_cluster_free(cluster);
        return -1;
    }
    free(s->cluster_text);
    s->cluster_text = text;
    s->cluster_text_len = n;
    conf_cluster_free(s->cluster);
    s->cluster = cluster;

    struct sup_group *g = &s->groups[SUP_COORD];
    for (int i = 0; i < g->count; i++)
        sup_send(&g->children[i], "reload\n");
    log_info("reload: %s: %zu nodes, replica_count %d; coordinators told",
             s->opts->cluster_path, cluster->node_count,
             cluster->replica_count);
    char change[96];
    snprintf(msg, len, "reloaded %s (%zu nodes%s%s)%s", s->opts->cluster_path,
             cluster->node_count, conf_change_note(cluster, change,
                                                   sizeof(change)),
             conf_membership_changing(cluster)
                 ? " until the marks are dropped" : "", note);
    return 0;
}

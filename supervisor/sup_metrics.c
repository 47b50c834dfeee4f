/*
 * sup_metrics.c - /metrics and /health over HTTP, and the numbers that
 * rzkvctl status shows.
 *
 * NAME
 *	sup_metrics - read the workers' counters files, serve them
 * DESCRIPTION
 *	Workers count into files of their own under RUN_DIR/metrics
 *	(common/metrics.h), with relaxed atomics and nothing else; the
 *	supervisor maps those files read-only whenever someone asks, so
 *	serving metrics never slows a request and never talks to a worker.
 *
 *	On node.local_metrics_address (if set) an evhttp server in the
 *	supervisor's event loop answers GET (or HEAD):
 *
 *	  /metrics  Prometheus text format 0.0.4: the supervisor's own
 *	            numbers (workers up, restarts, backoff, peers), the
 *	            coordinators' (summed over coordinator workers: requests
 *	            by api, op and result, latency histograms, quorum
 *	            failures, batching) and each storage worker's (labelled
 *	            shard="N": replica op latency, commits, fsyncs, group
 *	            commit size, entries, bytes on disk, clock epoch).
 *	  /health   200 "serving" when every worker is ready and a majority
 *	            of the cluster's nodes (this one included) is reachable
 *	            from every ready coordinator; otherwise 503 and why, one
 *	            line ("storage worker 1 restarting", "2 of 3 nodes
 *	            unreachable: 2, 3").  For load balancers and systemd.
 *	  anything else: 404.
 *
 *	The listener opens when rzkvd starts (so /health can say "starting")
 *	and closes last, after the workers stopped (so it says "stopping"
 *	meanwhile).  A metrics address that can't be bound stops rzkvd from
 *	starting, like a taken node.local_address: the operator asked for
 *	the endpoint, and a load balancer would take a node without /health
 *	for a dead one anyway.  sup_metrics_probe() checks it before rzkvd
 *	detaches, so the error reaches the terminal.
 *
 *	Counters keep counting across worker restarts (the worker re-opens
 *	its slot's file); a new rzkvd starts them from zero, which Prometheus
 *	reads as the counter reset of a restart.
 *
 *	The metrics (labels in braces; counters end in _total):
 *	  node     rzkv_build_info{version}, rzkv_node_uptime_seconds,
 *	           rzkv_node_time_seconds,
 *	           rzkv_node_serving, rzkv_peer_connected{peer},
 *	           rzkv_worker_up, rzkv_worker_restarts_total,
 *	           rzkv_worker_backoff_seconds, rzkv_worker_uptime_seconds
 *	           (all four {role,instance})
 *	  coordinators, summed over coordinator workers:
 *	           rzkv_requests_total{api,op,result},
 *	           rzkv_coordinator_request_duration_seconds{api,op} (histogram),
 *	           rzkv_quorum_failures_total{op}, rzkv_unknown_outcomes_total,
 *	           rzkv_read_repairs_total, rzkv_antientropy_passes_total,
 *	           rzkv_antientropy_keys_total, rzkv_antientropy_pushed_total,
 *	           rzkv_antientropy_failures_total,
 *	           rzkv_antientropy_purged_total,
 *	           rzkv_antientropy_last_pass_timestamp_seconds,
 *	           rzkv_antientropy_last_clean_pass_start_timestamp_seconds,
 *	           rzkv_membership_change_start_timestamp_seconds,
 *	           rzkv_antientropy_tombstones_kept,
 *	           rzkv_batch_ops (histogram),
 *	           rzkv_batch_messages_total{dest_kind=local|peer},
 *	           rzkv_coordinator_inflight
 *	  storage, per shard="N":
 *	           rzkv_storage_op_duration_seconds{op} (histogram),
 *	           rzkv_storage_group_commit_ops (histogram),
 *	           rzkv_storage_commit_duration_seconds (histogram),
 *	           rzkv_storage_commits_total, rzkv_storage_fsyncs_total,
 *	           rzkv_storage_checkpoints_total,
 *	           rzkv_storage_wal_restarts_total,
 *	           rzkv_storage_commit_failures_total,
 *	           rzkv_storage_writes_expired_total, rzkv_storage_entries,
 *	           rzkv_storage_bytes, rzkv_clock_epoch
 *	  api: cluster, node, health, unknown; op: get, set, del, info, batch,
 *	  list_keys, health, unknown; result: the rzkv.Status names.  Series
 *	  of a result other than OK appear once they are non-zero.
 * SEE ALSO
 *	common/metrics.h, sup_control.c (status), etc/prometheus.yml
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "sup.h"

#define HTTP_TIMEOUT_S      10
#define HTTP_MAX_HEADERS    8192

struct sup_metrics {
    struct evhttp *http;
    char dir[4096];             /* RUN_DIR/metrics */
};

/* Every worker's file, mapped for one answer. */
struct snapshot {
    const struct metrics_file *storage[64];
    const struct metrics_file *coord[64];
    int nstorage, ncoord;
};

/* ---- gathering ---------------------------------------------------------- */

static const struct metrics_file *
map_child(const struct sup_child *c)
{
    char path[4200];
    snprintf(path, sizeof(path), METRICS_PATH_FMT,
             c->group->sup->node->run_dir, c->group->name, c->instance);
    return metrics_map(path);
}

static void
snapshot_take(struct sup *s, struct snapshot *snap)
{
    const struct sup_group *st = &s->groups[SUP_STORAGE];
    const struct sup_group *co = &s->groups[SUP_COORD];

    snap->nstorage = st->count < 64 ? st->count : 64;
    snap->ncoord = co->count < 64 ? co->count : 64;
    for (int i = 0; i < snap->nstorage; i++)
        snap->storage[i] = map_child(&st->children[i]);
    for (int i = 0; i < snap->ncoord; i++)
        snap->coord[i] = map_child(&co->children[i]);
}

static void
snapshot_release(struct snapshot *snap)
{
    for (int i = 0; i < snap->nstorage; i++)
        metrics_unmap(snap->storage[i]);
    for (int i = 0; i < snap->ncoord; i++)
        metrics_unmap(snap->coord[i]);
}

/* Bytes of shard i on disk: the database and its WAL. */
static uint64_t
shard_bytes(const struct sup *s, int i)
{
    char path[4200];
    struct stat st;
    uint64_t bytes = 0;

    snprintf(path, sizeof(path), RZKV_STORAGE_DB_FMT, s->node->data_dir, i);
    if (stat(path, &st) == 0)
        bytes += (uint64_t)st.st_size;
    strncat(path, "-wal", sizeof(path) - strlen(path) - 1);
    if (stat(path, &st) == 0)
        bytes += (uint64_t)st.st_size;
    return bytes;
}

/*
 * Is peer id reachable?  Yes if every ready coordinator has a pipe to
 * it; no if none is ready: a node without coordinators reaches no one.
 */
static int
peer_reachable(const struct sup *s, const struct snapshot *snap,
               const char *id)
{
    char seen[METRICS_PEER_ID];
    int ready = 0;

    for (int k = 0; k < snap->ncoord; k++) {
        const struct metrics_file *f = snap->coord[k];
        if (s->groups[SUP_COORD].children[k].state != CHILD_READY)
            continue;
        ready++;
        int found = 0, connected = 0;
        if (f != NULL)
            for (size_t i = 0; !found && metrics_peer_read(&f->u.coord, i,
                                             seen, sizeof(seen),
                                             &connected) == 0; i++)
                found = strcmp(seen, id) == 0;
        if (!found || !connected)
            return 0;
    }
    return ready > 0;
}

/* ---- health ------------------------------------------------------------- */

static const char *
child_word(const struct sup_child *c)
{
    switch (c->state) {
    case CHILD_BACKOFF:  return "restarting";
    case CHILD_FAILED:   return "failed";
    default:             return child_state_str(c->state);
    }
}

/* The first worker that is not ready, said for a person; 0 if none. */
static int
workers_reason(const struct sup *s, char *why, size_t len)
{
    for (int r = 0; r < SUP_NROLES; r++) {
        const struct sup_group *g = &s->groups[r];
        for (int i = 0; i < g->count; i++) {
            const struct sup_child *c = &g->children[i];
            if (c->state == CHILD_READY)
                continue;
            int n = snprintf(why, len, "%s worker %d %s", g->name,
                             c->instance, child_word(c));
            if (c->state == CHILD_FAILED && c->fail_reason[0] != '\0' &&
                n >= 0 && (size_t)n < len)
                snprintf(why + n, len - (size_t)n, ": %s", c->fail_reason);
            else if (c->last_exit[0] != '\0' && c->state == CHILD_BACKOFF &&
                     n >= 0 && (size_t)n < len)
                snprintf(why + n, len - (size_t)n, " (last exit: %s)",
                         c->last_exit);
            return 1;
        }
    }
    return 0;
}

/* Fewer than a majority of the nodes reachable, said for a person. */
static int
peers_reason(const struct sup *s, const struct snapshot *snap, char *why,
             size_t len)
{
    const struct cluster_conf *cc = s->cluster;
    size_t down = 0, need = cc->node_count / 2 + 1, off;

    for (size_t i = 0; i < cc->node_count; i++)
        if (strcmp(cc->nodes[i].id, s->node->id) != 0 &&
            !peer_reachable(s, snap, cc->nodes[i].id))
            down++;
    if (cc->node_count - down >= need)
        return 0;
    int n = snprintf(why, len, "%zu of %zu nodes unreachable:", down,
                     cc->node_count);
    off = n > 0 ? (size_t)n : 0;
    for (size_t i = 0, k = 0; i < cc->node_count && off < len; i++) {
        if (strcmp(cc->nodes[i].id, s->node->id) == 0 ||
            peer_reachable(s, snap, cc->nodes[i].id))
            continue;
        n = snprintf(why + off, len - off, "%s %s", k++ ? "," : "",
                     cc->nodes[i].id);
        off += n > 0 ? (size_t)n : 0;
    }
    return 1;
}

/* 1 if the node serves; otherwise 0 with the reason in why. */
static int
node_health(const struct sup *s, const struct snapshot *snap, char *why,
            size_t len)
{
    if (s->state == SUP_STOPPING) {
        snprintf(why, len, "node %s stopping", s->node->id);
        return 0;
    }
    if (workers_reason(s, why, len) || peers_reason(s, snap, why, len))
        return 0;
    snprintf(why, len, "serving");
    return 1;
}

/* ---- Prometheus text format --------------------------------------------- */

static void
family(struct evbuffer *o, const char *name, const char *type,
       const char *help)
{
    evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

/* A label value, escaped as the format wants (\\, \", \n). */
static void
label_value(struct evbuffer *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(o, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(o, "\\n", 2);
        else
            evbuffer_add(o, v, 1);
    }
}

/* Labels are given as "k=\"v\"" text; the values of ours need no escape
 * except node ids, which go through label_value(). */
static void
sample_u64(struct evbuffer *o, const char *name, const char *labels,
           uint64_t v)
{
    evbuffer_add_printf(o, "%s%s%s%s %llu\n", name, labels[0] ? "{" : "",
                        labels, labels[0] ? "}" : "", (unsigned long long)v);
}

/* A gauge of a wall-clock time kept in milliseconds, served in seconds. */
static void
timestamp_gauge(struct evbuffer *o, const char *name, const char *help,
                const metrics_counter *ms)
{
    family(o, name, "gauge", help);
    evbuffer_add_printf(o, "%s %.3f\n", name,
                        (double)metrics_get(ms) / 1000.0);
}

static void
hist_lines(struct evbuffer *o, const char *name, const char *labels,
           const metrics_counter *bucket, const char *const *bounds,
           size_t nbounds, double sum)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (size_t b = 0; b <= nbounds; b++) {
        cum += metrics_get(&bucket[b]);
        evbuffer_add_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name,
                            labels, sep, b < nbounds ? bounds[b] : "+Inf",
                            (unsigned long long)cum);
    }
    evbuffer_add_printf(o, "%s_sum%s%s%s %.9g\n", name, labels[0] ? "{" : "",
                        labels, labels[0] ? "}" : "", sum);
    evbuffer_add_printf(o, "%s_count%s%s%s %llu\n", name,
                        labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
                        (unsigned long long)cum);
}

static void
lat_hist(struct evbuffer *o, const char *name, const char *labels,
         const struct metrics_lat_hist *h)
{
    hist_lines(o, name, labels, h->bucket, metrics_lat_bounds_text,
               METRICS_LAT_BOUNDS, (double)metrics_get(&h->sum_ns) / 1e9);
}

static void
size_hist(struct evbuffer *o, const char *name, const char *labels,
          const struct metrics_size_hist *h)
{
    hist_lines(o, name, labels, h->bucket, metrics_size_bounds_text,
               METRICS_SIZE_BOUNDS, (double)metrics_get(&h->sum));
}

/* ---- the supervisor's own numbers --------------------------------------- */

static void
worker_labels(char *buf, size_t len, const struct sup_child *c)
{
    snprintf(buf, len, "role=\"%s\",instance=\"%d\"", c->group->name,
             c->instance);
}

static int
child_backoff_ms(const struct sup_child *c, int64_t now)
{
    /* As status shows it (sup_control.c): a worker up long enough
     * starts over at the minimum. */
    return c->pid > 0 && now - c->started_at >=
           c->group->backoff.reset_after_ms ? 0 : c->backoff_ms;
}

static void
emit_workers(struct sup *s, struct evbuffer *o)
{
    static const char *const names[] = {
        "rzkv_worker_up", "rzkv_worker_restarts_total",
        "rzkv_worker_backoff_seconds", "rzkv_worker_uptime_seconds",
    };
    static const char *const types[] = { "gauge", "counter", "gauge",
                                         "gauge" };
    static const char *const helps[] = {
        "1 if the worker is ready, 0 if it is starting, restarting, "
        "failed or stopped.",
        "Times the worker was started again after it died.",
        "Delay before the worker's next restart, in seconds.",
        "Seconds since the worker's current process started.",
    };
    int64_t now = sup_now_ms();
    char labels[128];

    for (size_t m = 0; m < 4; m++) {
        family(o, names[m], types[m], helps[m]);
        for (int r = 0; r < SUP_NROLES; r++)
            for (int i = 0; i < s->groups[r].count; i++) {
                const struct sup_child *c = &s->groups[r].children[i];
                uint64_t v = 0;
                worker_labels(labels, sizeof(labels), c);
                if (m == 0)
                    v = c->state == CHILD_READY;
                else if (m == 1)
                    v = (uint64_t)c->restarts;
                else if (m == 3)
                    v = c->pid > 0 ? (uint64_t)(now - c->started_at) / 1000
                                   : 0;
                if (m == 2)
                    evbuffer_add_printf(o, "%s{%s} %.3f\n", names[m], labels,
                                        child_backoff_ms(c, now) / 1000.0);
                else
                    sample_u64(o, names[m], labels, v);
            }
    }
}

static void
emit_node(struct sup *s, const struct snapshot *snap, struct evbuffer *o)
{
    char why[512];
    const struct cluster_conf *cc = s->cluster;

    family(o, "rzkv_build_info", "gauge", "Always 1; the version of rzkvd.");
    sample_u64(o, "rzkv_build_info", "version=\"" PACKAGE_VERSION "\"", 1);
    family(o, "rzkv_node_uptime_seconds", "gauge",
           "Seconds since this rzkvd started.");
    sample_u64(o, "rzkv_node_uptime_seconds", "",
               (uint64_t)(sup_now_ms() - s->started_at) / 1000);
    /* As node_exporter's node_time_seconds: Prometheus compares it with
     * its own clock, for the skew that cluster.max_clock_skew_ms bounds. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    family(o, "rzkv_node_time_seconds", "gauge",
           "This node's wall clock (Unix time) as it served the scrape: "
           "replica writes expire by it (cluster.max_clock_skew_ms).");
    evbuffer_add_printf(o, "rzkv_node_time_seconds %lld.%03ld\n",
                        (long long)now.tv_sec, now.tv_nsec / 1000000);
    family(o, "rzkv_node_serving", "gauge",
           "1 if /health answers 200: every worker ready and a majority "
           "of nodes reachable.");
    sample_u64(o, "rzkv_node_serving", "", node_health(s, snap, why,
                                                       sizeof(why)));
    family(o, "rzkv_peer_connected", "gauge",
           "1 if every ready coordinator of this node has a connection "
           "to the peer node.");
    for (size_t i = 0; i < cc->node_count; i++) {
        if (strcmp(cc->nodes[i].id, s->node->id) == 0)
            continue;
        evbuffer_add_printf(o, "rzkv_peer_connected{peer=\"");
        label_value(o, cc->nodes[i].id);
        evbuffer_add_printf(o, "\"} %d\n",
                            peer_reachable(s, snap, cc->nodes[i].id));
    }
    emit_workers(s, o);
}

/* ---- the coordinators' numbers, summed ---------------------------------- */

/* Everything before peers[] is a counter: add them all up at once. */
#define COORD_COUNTERS (offsetof(struct metrics_coord, peers) / \
                        sizeof(metrics_counter))
_Static_assert(offsetof(struct metrics_coord, peers) %
               sizeof(metrics_counter) == 0, "counters are contiguous");

/* A time summed over coordinators is the latest of them. */
static void
keep_latest(metrics_counter *sum, const metrics_counter *t)
{
    if (metrics_get(t) > metrics_get(sum))
        metrics_set(sum, metrics_get(t));
}

static void
coord_sum(const struct sup *s, const struct snapshot *snap,
          struct metrics_coord *sum)
{
    memset(sum, 0, sizeof(*sum));
    metrics_counter *dst = (metrics_counter *)sum;
    for (int k = 0; k < snap->ncoord; k++) {
        if (snap->coord[k] == NULL)
            continue;
        const metrics_counter *src =
            (const metrics_counter *)&snap->coord[k]->u.coord;
        for (size_t i = 0; i < COORD_COUNTERS; i++)
            metrics_add(&dst[i], metrics_get(&src[i]));
    }
    /* In flight is a gauge of live processes only. */
    metrics_set(&sum->inflight, 0);
    for (int k = 0; k < snap->ncoord; k++)
        if (snap->coord[k] != NULL &&
            s->groups[SUP_COORD].children[k].pid > 0)
            metrics_add(&sum->inflight,
                        metrics_get(&snap->coord[k]->u.coord.inflight));
    /* The anti-entropy passes' times: the latest, not the sum. */
    metrics_set(&sum->antientropy_last_pass_ms, 0);
    metrics_set(&sum->antientropy_clean_pass_ms, 0);
    metrics_set(&sum->membership_change_ms, 0);
    for (int k = 0; k < snap->ncoord; k++) {
        if (snap->coord[k] == NULL)
            continue;
        const struct metrics_coord *c = &snap->coord[k]->u.coord;
        keep_latest(&sum->antientropy_last_pass_ms,
                    &c->antientropy_last_pass_ms);
        keep_latest(&sum->antientropy_clean_pass_ms,
                    &c->antientropy_clean_pass_ms);
        keep_latest(&sum->membership_change_ms, &c->membership_change_ms);
    }
}

/* The (api, op) pairs a coordinator serves. */
static int
api_op_valid(int api, int op)
{
    switch (api) {
    case MAPI_CLUSTER:
        return op == MOP_GET || op == MOP_SET || op == MOP_DEL ||
               op == MOP_INFO;
    case MAPI_NODE:
        return op == MOP_BATCH || op == MOP_LIST_KEYS || op == MOP_INFO;
    case MAPI_HEALTH:
        return op == MOP_HEALTH;
    default:
        return op == MOP_UNKNOWN;
    }
}

static void
emit_requests(struct evbuffer *o, const struct metrics_coord *c)
{
    char labels[160];

    family(o, "rzkv_requests_total", "counter",
           "Requests answered by this node's coordinators, by API, "
           "operation and result status.");
    for (int a = 0; a < MAPI_COUNT; a++)
        for (int p = 0; p < MOP_COUNT; p++)
            for (int r = 0; r < METRICS_RESULTS; r++) {
                uint64_t v = metrics_get(&c->requests[a][p][r]);
                if (v == 0 && !(r == 0 && api_op_valid(a, p)))
                    continue;
                snprintf(labels, sizeof(labels),
                         "api=\"%s\",op=\"%s\",result=\"%s\"",
                         metrics_api_names[a], metrics_op_names[p],
                         metrics_result_names[r]);
                sample_u64(o, "rzkv_requests_total", labels, v);
            }
    family(o, "rzkv_coordinator_request_duration_seconds", "histogram",
           "Time from receiving a request to sending its answer, in a "
           "coordinator.");
    for (int a = 0; a < MAPI_COUNT; a++)
        for (int p = 0; p < MOP_COUNT; p++) {
            if (!api_op_valid(a, p))
                continue;
            snprintf(labels, sizeof(labels), "api=\"%s\",op=\"%s\"",
                     metrics_api_names[a], metrics_op_names[p]);
            lat_hist(o, "rzkv_coordinator_request_duration_seconds", labels,
                     &c->duration[a][p]);
        }
}

static void
emit_coord(const struct sup *s, const struct snapshot *snap,
           struct evbuffer *o)
{
    static struct metrics_coord sum;    /* large; the loop is ours alone */
    char labels[64];

    coord_sum(s, snap, &sum);
    emit_requests(o, &sum);
    family(o, "rzkv_quorum_failures_total", "counter",
           "Cluster operations answered UNAVAILABLE or UNKNOWN because "
           "too few replicas answered in time.");
    for (int p = MOP_GET; p <= MOP_DEL; p++) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", metrics_op_names[p]);
        sample_u64(o, "rzkv_quorum_failures_total", labels,
                   metrics_get(&sum.quorum_failures[p]));
    }
    const struct {
        const char *name, *help;
        const metrics_counter *value;
    } plain[] = {
        { "rzkv_unknown_outcomes_total",
          "Writes answered UNKNOWN: sent to replicas, outcome not known.",
          &sum.unknown_outcomes },
        { "rzkv_read_repairs_total",
          "Stale replicas sent the newest version by a read.",
          &sum.read_repairs },
        { "rzkv_antientropy_passes_total",
          "Anti-entropy passes completed over this node's keys.",
          &sum.antientropy_passes },
        { "rzkv_antientropy_keys_total",
          "Keys of this node compared with their other replicas.",
          &sum.antientropy_keys },
        { "rzkv_antientropy_pushed_total",
          "Newer versions anti-entropy copied to a replica that lacked "
          "them.", &sum.antientropy_pushed },
        { "rzkv_antientropy_failures_total",
          "Anti-entropy listings or copies that failed (peer down, "
          "timeout); the next pass retries.", &sum.antientropy_failures },
        { "rzkv_antientropy_purged_total",
          "Tombstones anti-entropy removed from replicas, once every "
          "replica held them long enough.", &sum.antientropy_purged },
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        family(o, plain[i].name, "counter", plain[i].help);
        sample_u64(o, plain[i].name, "", metrics_get(plain[i].value));
    }
    timestamp_gauge(o, "rzkv_antientropy_last_pass_timestamp_seconds",
                    "When this node last completed an anti-entropy pass "
                    "(Unix time; 0: not since its coordinator started "
                    "counting).", &sum.antientropy_last_pass_ms);
    timestamp_gauge(o,
                    "rzkv_antientropy_last_clean_pass_start_timestamp_seconds",
                    "When the last anti-entropy pass of this node that "
                    "ended with no failure began (Unix time; 0: none since "
                    "its coordinator started).",
                    &sum.antientropy_clean_pass_ms);
    timestamp_gauge(o, "rzkv_membership_change_start_timestamp_seconds",
                    "Since when this node's cluster file has nodes joining "
                    "or leaving (Unix time; 0: none): every operation then "
                    "needs quorums of two replica sets.",
                    &sum.membership_change_ms);
    family(o, "rzkv_antientropy_tombstones_kept", "gauge",
           "Tombstones this node's last complete anti-entropy pass judged "
           "and kept: younger than the purge delay, or not yet on every "
           "replica.");
    sample_u64(o, "rzkv_antientropy_tombstones_kept", "",
               metrics_get(&sum.antientropy_tombstones_kept));
    family(o, "rzkv_batch_ops", "histogram",
           "Replica operations per NodeBatch message sent by coordinators.");
    size_hist(o, "rzkv_batch_ops", "", &sum.batch_ops);
    family(o, "rzkv_batch_messages_total", "counter",
           "NodeBatch messages sent by coordinators, to local storage "
           "workers or to peer nodes.");
    for (int d = 0; d < MDEST_COUNT; d++) {
        snprintf(labels, sizeof(labels), "dest_kind=\"%s\"",
                 metrics_dest_names[d]);
        sample_u64(o, "rzkv_batch_messages_total", labels,
                   metrics_get(&sum.batch_messages[d]));
    }
    family(o, "rzkv_coordinator_inflight", "gauge",
           "Requests received by coordinators and not answered yet.");
    sample_u64(o, "rzkv_coordinator_inflight", "",
               metrics_get(&sum.inflight));
}

/* ---- the storage workers' numbers, per shard ---------------------------- */

static void
emit_storage_values(const struct sup *s, const struct snapshot *snap,
                    struct evbuffer *o)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;          /* in struct metrics_storage; 0: bytes */
    } v[] = {
        { "rzkv_storage_commits_total", "counter",
          "Write transactions committed (group commits).",
          offsetof(struct metrics_storage, commits) },
        { "rzkv_storage_fsyncs_total", "counter",
          "Commits fsynced (node.durability full).",
          offsetof(struct metrics_storage, fsyncs) },
        { "rzkv_storage_checkpoints_total", "counter",
          "WAL checkpoints completed (copies of the log into the database "
          "file), counted at the next commit.",
          offsetof(struct metrics_storage, checkpoints) },
        { "rzkv_storage_wal_restarts_total", "counter",
          "Commits that wrote the write-ahead log from its start again, "
          "every frame before them copied (about every 2 MiB written; if "
          "it stops while writes go on, something holds an old snapshot).",
          offsetof(struct metrics_storage, wal_restarts) },
        { "rzkv_storage_commit_failures_total", "counter",
          "Write transactions that failed and were rolled back.",
          offsetof(struct metrics_storage, commit_failures) },
        { "rzkv_storage_writes_expired_total", "counter",
          "Replica writes refused because they arrived after they expired "
          "(held up, or clocks apart; cluster.max_clock_skew_ms).",
          offsetof(struct metrics_storage, writes_expired) },
        { "rzkv_storage_entries", "gauge",
          "Keys held by the shard, deleted ones (tombstones) included.",
          offsetof(struct metrics_storage, entries) },
        { "rzkv_clock_epoch", "gauge",
          "The shard's clock epoch, one more at every start of its worker.",
          offsetof(struct metrics_storage, epoch) },
        { "rzkv_storage_bytes", "gauge",
          "Bytes of the shard's database and write-ahead log on disk.", 0 },
    };
    char labels[32];

    for (size_t m = 0; m < sizeof(v) / sizeof(v[0]); m++) {
        family(o, v[m].name, v[m].type, v[m].help);
        for (int i = 0; i < snap->nstorage; i++) {
            const struct metrics_file *f = snap->storage[i];
            uint64_t x;
            if (v[m].offset == 0)
                x = shard_bytes(s, i);
            else if (f != NULL)
                x = metrics_get((const metrics_counter *)
                                ((const char *)&f->u.storage + v[m].offset));
            else
                continue;
            snprintf(labels, sizeof(labels), "shard=\"%d\"", i);
            sample_u64(o, v[m].name, labels, x);
        }
    }
}

static void
emit_storage(const struct sup *s, const struct snapshot *snap,
             struct evbuffer *o)
{
    char labels[64];

    family(o, "rzkv_storage_op_duration_seconds", "histogram",
           "Time from a storage worker receiving a replica operation to "
           "answering it (group commit included for writes).");
    for (int i = 0; i < snap->nstorage; i++)
        for (int p = 0; p < MSOP_COUNT && snap->storage[i] != NULL; p++) {
            snprintf(labels, sizeof(labels), "shard=\"%d\",op=\"%s\"", i,
                     metrics_storage_op_names[p]);
            lat_hist(o, "rzkv_storage_op_duration_seconds", labels,
                     &snap->storage[i]->u.storage.op_duration[p]);
        }
    family(o, "rzkv_storage_group_commit_ops", "histogram",
           "Replica operations per committed write transaction.");
    for (int i = 0; i < snap->nstorage; i++) {
        if (snap->storage[i] == NULL)
            continue;
        snprintf(labels, sizeof(labels), "shard=\"%d\"", i);
        size_hist(o, "rzkv_storage_group_commit_ops", labels,
                  &snap->storage[i]->u.storage.group_commit_ops);
    }
    family(o, "rzkv_storage_commit_duration_seconds", "histogram",
           "Time a storage worker's COMMIT took: its write-ahead log write "
           "and, with node.durability full, its fsync.");
    for (int i = 0; i < snap->nstorage; i++) {
        if (snap->storage[i] == NULL)
            continue;
        snprintf(labels, sizeof(labels), "shard=\"%d\"", i);
        lat_hist(o, "rzkv_storage_commit_duration_seconds", labels,
                 &snap->storage[i]->u.storage.commit_duration);
    }
    emit_storage_values(s, snap, o);
}

/* ---- HTTP --------------------------------------------------------------- */

static void
reply_text(struct evhttp_request *req, int code, const char *reason,
           const char *type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void
serve_metrics(struct sup *s, struct evhttp_request *req,
              struct evbuffer *body)
{
    struct snapshot snap;
    snapshot_take(s, &snap);
    emit_node(s, &snap, body);
    emit_coord(s, &snap, body);
    emit_storage(s, &snap, body);
    snapshot_release(&snap);
    reply_text(req, HTTP_OK, "OK", "text/plain; version=0.0.4; "
               "charset=utf-8", body);
}

static void
serve_health(struct sup *s, struct evhttp_request *req,
             struct evbuffer *body)
{
    struct snapshot snap;
    char why[512];

    snapshot_take(s, &snap);
    int ok = node_health(s, &snap, why, sizeof(why));
    snapshot_release(&snap);
    evbuffer_add_printf(body, "%s\n", why);
    reply_text(req, ok ? HTTP_OK : 503, ok ? "OK" : "Service Unavailable",
               "text/plain; charset=utf-8", body);
}

static void
http_cb(struct evhttp_request *req, void *arg)
{
    struct sup *s = arg;
    struct evbuffer *body = evbuffer_new();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

    if (body == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    if (path != NULL && strcmp(path, "/metrics") == 0) {
        serve_metrics(s, req, body);
    } else if (path != NULL && strcmp(path, "/health") == 0) {
        serve_health(s, req, body);
    } else {
        evbuffer_add_printf(body, "not found: try /metrics or /health\n");
        reply_text(req, HTTP_NOTFOUND, "Not Found",
                   "text/plain; charset=utf-8", body);
    }
    evbuffer_free(body);
}

/* ---- life cycle --------------------------------------------------------- */

int
sup_metrics_probe(const struct node_conf *node, char *err, size_t errlen)
{
    char host[256], port[16];
    int p;
    struct addrinfo hints = { .ai_flags = AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM }, *ai;

    if (node->local_metrics_address[0] == '\0')
        return 0;
    if (conf_parse_address(node->local_metrics_address, host, sizeof(host),
                           &p) != 0) {
        snprintf(err, errlen, "node.local_metrics_address \"%s\" is not an "
                 "address", node->local_metrics_address);
        return -1;
    }
    snprintf(port, sizeof(port), "%d", p);
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on metrics address %s: %s",
                 node->local_metrics_address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol), one = 1, failed = fd < 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        failed = bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
                 listen(fd, 1) != 0;
    }
    if (failed)
        snprintf(err, errlen, "cannot listen on metrics address %s: %s",
                 node->local_metrics_address, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return failed ? -1 : 0;
}

/* Counters of a previous rzkvd are not ours to continue. */
static void
remove_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4400];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".shm") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) != 0 && errno != ENOENT)
            log_warn("cannot remove %s", path);
    }
    closedir(d);
}

int
sup_metrics_open(struct sup *s, char *err, size_t errlen)
{
    struct sup_metrics *m = calloc(1, sizeof(*m));
    char host[256];
    int port;

    if (m == NULL) {
        snprintf(err, errlen, "metrics: out of memory");
        return -1;
    }
    s->metrics = m;
    snprintf(m->dir, sizeof(m->dir), "%s/%s", s->node->run_dir, METRICS_DIR);
    if (mkdir(m->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", m->dir,
                 strerror(errno));
        return -1;
    }
    remove_files(m->dir);
    if (s->node->local_metrics_address[0] == '\0')
        return 0;
    if (conf_parse_address(s->node->local_metrics_address, host,
                           sizeof(host), &port) != 0) {
        snprintf(err, errlen, "node.local_metrics_address \"%s\" is not an "
                 "address", s->node->local_metrics_address);
        return -1;
    }
    if ((m->http = evhttp_new(s->base)) == NULL) {
        snprintf(err, errlen, "metrics: evhttp_new failed");
        return -1;
    }
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(m->http, HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(m->http, 0);
    evhttp_set_timeout(m->http, HTTP_TIMEOUT_S);
    evhttp_set_gencb(m->http, http_cb, s);
    if (evhttp_bind_socket_with_handle(m->http, host[0] ? host : "0.0.0.0",
                                       (ev_uint16_t)port) == NULL) {
        snprintf(err, errlen, "cannot listen on metrics address %s: %s",
                 s->node->local_metrics_address, strerror(errno));
        return -1;
    }
    log_info("metrics: /metrics and /health on http://%s",
             s->node->local_metrics_address);
    return 0;
}

void
sup_metrics_close(struct sup *s)
{
    struct sup_metrics *m = s->metrics;
    if (m == NULL)
        return;
    if (m->http != NULL)
        evhttp_free(m->http);
    remove_files(m->dir);
    rmdir(m->dir);
    free(m);
    s->metrics = NULL;
}

/* ---- what rzkvctl status shows ------------------------------------------ */

/* "load_bytes":N,"keys":N,"health":"...", for the node object. */
void
sup_metrics_node_json(struct sup *s, struct evbuffer *out)
{
    struct snapshot snap;
    uint64_t bytes = 0, keys = 0;
    char why[512];

    snapshot_take(s, &snap);
    for (int i = 0; i < snap.nstorage; i++) {
        bytes += shard_bytes(s, i);
        if (snap.storage[i] != NULL)
            keys += metrics_get(&snap.storage[i]->u.storage.entries);
    }
    node_health(s, &snap, why, sizeof(why));
    snapshot_release(&snap);
    evbuffer_add_printf(out, "\"load_bytes\":%llu,\"keys\":%llu,"
                        "\"health\":\"", (unsigned long long)bytes,
                        (unsigned long long)keys);
    for (const char *p = why; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(out, "\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            evbuffer_add_printf(out, "\\u%04x", (unsigned char)*p);
        else
            evbuffer_add(out, p, 1);
    }
    evbuffer_add_printf(out, "\",");
}

/* ,"keys":..,"load_bytes":..,"epoch":.. for a storage worker object;
 * ,"inflight":..,"peers_connected":..,"peers":..,
 * "antientropy_last_pass_ms":.., "antientropy_clean_pass_ms":.. for a
 * coordinator. */
void
sup_metrics_worker_json(const struct sup_child *c, struct evbuffer *out)
{
    const struct metrics_file *f = map_child(c);
    if (f == NULL)
        return;
    if (c->group->role == SUP_STORAGE) {
        evbuffer_add_printf(out, ",\"keys\":%llu,\"load_bytes\":%llu,"
                            "\"epoch\":%llu",
                            (unsigned long long)metrics_get(
                                &f->u.storage.entries),
                            (unsigned long long)shard_bytes(c->group->sup,
                                                            c->instance),
                            (unsigned long long)metrics_get(
                                &f->u.storage.epoch));
    } else {
        char id[METRICS_PEER_ID];
        int connected, up = 0;
        size_t n = 0;
        while (metrics_peer_read(&f->u.coord, n, id, sizeof(id),
                                 &connected) == 0) {
            up += connected;
            n++;
        }
        evbuffer_add_printf(out, ",\"inflight\":%llu,\"peers_connected\":%d,"
                            "\"peers\":%zu,\"antientropy_last_pass_ms\":%llu,"
                            "\"antientropy_clean_pass_ms\":%llu",
                            (unsigned long long)metrics_get(
                                &f->u.coord.inflight), up, n,
                            (unsigned long long)metrics_get(
                                &f->u.coord.antientropy_last_pass_ms),
                            (unsigned long long)metrics_get(
                                &f->u.coord.antientropy_clean_pass_ms));
    }
    metrics_unmap(f);
}

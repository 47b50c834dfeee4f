/*
 * coord.c - the coordinator worker: coord_main() and its plumbing.
 *
 * A coordinator takes the requests that reach the node's address (on the
 * socket the supervisor bound, shared by every coordinator of the node:
 * coord_front.c), and answers:
 *
 *   Cluster API (clients)   quorum reads and writes   coord_cluster.c
 *   Node API (peers)        batches for local storage coord_node.c
 *   Health                  at once, here
 *
 * It talks to the local storage workers (ipc) and to the peer nodes (tcp)
 * through one dest each (dest.c).  Shape, in order: config, resources
 * (storage and peer sockets, the listener), the 5 ms tick that enforces
 * deadlines, ready, then the supervisor's commands: RELOAD builds a new
 * cluster view beside the old one and swaps it (operations in flight keep
 * the view they started with); STOP refuses new cluster requests, lets
 * those in flight finish (bounded by the timeout) and exits 0.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "coord.h"
#include "batch.h"
#include "log.h"
#include "metrics.h"
#include "sp.h"
#include "wire.h"
#include "worker.h"

struct coord coord;

/* What each request slot is serving, for its metrics (metrics.h). */
static struct {
    uint8_t api, op;
    uint64_t start_ns;
} srv_meta[COORD_SLOTS];

#define PEERS_PUBLISH_TICKS 20  /* publish peer connectivity every 100 ms */

/* ---- replies and logging -------------------------------------------------- */

/* Count an answered request: its reply's status, its duration. */
static void
srv_count(struct srv *s, nng_msg *m)
{
    struct batch_reply r;
    size_t slot = (size_t)(s - coord.srv);

    /* An empty Reply (health) is status OK; an unscannable one counts
     * as OTHER. */
    if (batch_scan_reply(nng_msg_body(m), nng_msg_len(m), &r) != 0)
        r.status = METRICS_RESULT_OTHER;
    if (slot < COORD_SLOTS)
        metrics_request_done(srv_meta[slot].api, srv_meta[slot].op,
                             r.status, srv_meta[slot].start_ns);
    metrics_sub(&metrics->u.coord.inflight, 1);
}

void
srv_reply(struct srv *s, nng_msg *m)
{
    srv_count(s, m);
    front_reply(s, m);
}

void
srv_reply_error(struct srv *s, nng_msg *m, Rzkv__Status status,
                const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (wire_pack_error(m, status, "%s", text) != 0)
        nng_msg_clear(m);       /* an empty Reply still answers */
    srv_reply(s, m);
}

void
coord_log_bad_at(const char *func, const char *fmt, ...)
{
    static struct log_rate rate;
    unsigned dropped;
    char text[512];
    va_list ap;

    /* Called from any callback thread; a racy counter only risks a line
     * more or less. */
    int show = log_rate_take(&rate, time(NULL), 5, &dropped);
    if (dropped > 0)
        log_warnx("%u more bad requests not logged", dropped);
    if (!show)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_msg(LOG_LEVEL_WARN, func, 0, "%s", text);
}

/* ---- the request slots ---------------------------------------------------- */

/* Which API and operation a request is, for its metrics. */
static void
srv_classify(struct srv *s, const Rzkv__Envelope *env)
{
    size_t slot = (size_t)(s - coord.srv);
    enum metrics_api api = MAPI_UNKNOWN;
    enum metrics_op op = MOP_UNKNOWN;

    switch (env != NULL ? env->msg_case : RZKV__ENVELOPE__MSG__NOT_SET) {
    case RZKV__ENVELOPE__MSG_HEALTH:
        api = MAPI_HEALTH, op = MOP_HEALTH;
        break;
    case RZKV__ENVELOPE__MSG_CLUSTER:
        api = MAPI_CLUSTER;
        switch (env->cluster->op_case) {
        case RZKV__CLUSTER_REQUEST__OP_GET: op = MOP_GET; break;
        case RZKV__CLUSTER_REQUEST__OP_SET: op = MOP_SET; break;
        case RZKV__CLUSTER_REQUEST__OP_DEL: op = MOP_DEL; break;
        case RZKV__CLUSTER_REQUEST__OP_INFO: op = MOP_INFO; break;
        default: break;
        }
        break;
    case RZKV__ENVELOPE__MSG_NODE:
        api = MAPI_NODE, op = MOP_BATCH;
        break;
    case RZKV__ENVELOPE__MSG_LIST_KEYS:
        api = MAPI_NODE, op = MOP_LIST_KEYS;
        break;
    case RZKV__ENVELOPE__MSG_NODE_INFO:
        api = MAPI_NODE, op = MOP_INFO;
        break;
    default:
        break;
    }
    if (slot < COORD_SLOTS) {
        srv_meta[slot].api = (uint8_t)api;
        srv_meta[slot].op = (uint8_t)op;
    }
}

/* ---- requests, unpacked into pooled arenas ---------------------------------- */

#define REQ_POOL_MAX    128     /* free arenas kept: at most 8 MiB */

static struct {
    pthread_mutex_t lock;
    struct req *free;
    unsigned nfree;
} req_pool = { PTHREAD_MUTEX_INITIALIZER, NULL, 0 };

struct req *
req_unpack(const uint8_t *data, size_t len)
{
    pthread_mutex_lock(&req_pool.lock);
    struct req *rq = req_pool.free;
    if (rq != NULL) {
        req_pool.free = rq->next_free;
        req_pool.nfree--;
    }
    pthread_mutex_unlock(&req_pool.lock);
    if (rq == NULL) {
        if ((rq = malloc(sizeof(*rq))) == NULL)
            return NULL;
        arena_init(&rq->arena);
    }
    rq->env = rzkv__envelope__unpack(&rq->arena.pb, len, data);
    return rq;
}

void
req_free(struct req *rq)
{
    rq->env = NULL;
    arena_reset(&rq->arena);
    pthread_mutex_lock(&req_pool.lock);
    int keep = req_pool.nfree < REQ_POOL_MAX;
    if (keep) {
        rq->next_free = req_pool.free;
        req_pool.free = rq;
        req_pool.nfree++;
    }
    pthread_mutex_unlock(&req_pool.lock);
    if (!keep) {
        arena_free(&rq->arena);
        free(rq);
    }
}

/* ---- dispatch --------------------------------------------------------------- */

void
srv_dispatch(struct srv *s, nng_msg *m)
{
    size_t slot = (size_t)(s - coord.srv);
    if (slot < COORD_SLOTS)
        srv_meta[slot].start_ns = metrics_now_ns();
    metrics_add(&metrics->u.coord.inflight, 1);

    struct req *rq = req_unpack(nng_msg_body(m), nng_msg_len(m));
    if (rq == NULL) {
        srv_classify(s, NULL);
        srv_reply_error(s, m, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    const Rzkv__Envelope *env = rq->env;
    srv_classify(s, env);
    if (env == NULL) {
        req_free(rq);
        __atomic_add_fetch(&coord.stats.bad, 1, __ATOMIC_RELAXED);
        coord_log_bad("undecodable request (%zu bytes): replying INVALID",
                      nng_msg_len(m));
        srv_reply_error(s, m, RZKV__STATUS__INVALID,
                        "undecodable request (%zu bytes)", nng_msg_len(m));
        return;
    }
    __atomic_add_fetch(&coord.stats.requests, 1, __ATOMIC_RELAXED);
    switch (env->msg_case) {
    case RZKV__ENVELOPE__MSG_HEALTH:
        req_free(rq);
        nng_msg_clear(m);       /* an empty Reply: status OK */
        srv_reply(s, m);
        return;
    case RZKV__ENVELOPE__MSG_CLUSTER:
        cluster_request(s, m, rq);
        return;
    case RZKV__ENVELOPE__MSG_NODE:
        node_batch(s, m, rq);
        return;
    case RZKV__ENVELOPE__MSG_LIST_KEYS:
        node_list_keys(s, m, rq);
        return;
    case RZKV__ENVELOPE__MSG_NODE_INFO:
        node_info(s, m, rq);
        return;
    default:
        req_free(rq);
        __atomic_add_fetch(&coord.stats.bad, 1, __ATOMIC_RELAXED);
        coord_log_bad("request of unknown type (%zu bytes): "
                      "replying UNSUPPORTED", nng_msg_len(m));
        srv_reply_error(s, m, RZKV__STATUS__UNSUPPORTED,
                        "unsupported request type");
        return;
    }
}

/* ---- cluster views -------------------------------------------------------- */

void
topo_ref(struct topo *t)
{
    t->refs++;
}

void
topo_unref(struct topo *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    placement_free(&t->place);
    conf_cluster_free(t->conf);
    free(t->dest);
    free(t->names);
    free(t);
}

_Static_assert(QUORUM_AFTER == PLACE_AFTER && QUORUM_BEFORE == PLACE_BEFORE,
               "quorum.h and ring.h name the same placements");

unsigned
topo_replicas(const struct topo *t, const void *key, size_t len,
              size_t *node, uint8_t *in)
{
    return (unsigned)placement_locate(&t->place, key, len, node, in);
}

uint64_t
topo_write_expiry(const struct topo *t, unsigned timeout_ms)
{
    return wire_wall_ms() + timeout_ms +
           (uint64_t)t->conf->max_clock_skew_ms;
}

/* The open peer for (id, url), if any. */
static struct dest *
peer_find(const char *id, const char *url)
{
    for (size_t i = 0; i < coord.npeers; i++) {
        struct coord_peer *p = &coord.peers[i];
        if (!p->retired && strcmp(p->id, id) == 0 && strcmp(p->url, url) == 0)
            return p->dest;
    }
    return NULL;
}

static int
peer_add(const char *id, const char *url, struct dest *d)
{
    struct coord_peer *np = realloc(coord.peers,
                                    (coord.npeers + 1) * sizeof(*np));
    if (np == NULL)
        return -1;
    coord.peers = np;
    struct coord_peer *p = &coord.peers[coord.npeers];
    memset(p, 0, sizeof(*p));
    if ((p->id = strdup(id)) == NULL || (p->url = strdup(url)) == NULL) {
        free(p->id);
        return -1;
    }
    p->dest = d;
    coord.npeers++;
    return 0;
}

/*
 * Build a cluster view from a loaded file: the ring, and a dest for every
 * peer (reusing open ones).  Called by the main thread only, without the
 * lock: peers are added under the lock.  NULL with err on failure; then
 * conf is still the caller's.
 */
static struct topo *
topo_build(struct cluster_conf *conf, char *err, size_t errlen)
{
    struct topo *t = calloc(1, sizeof(*t));
    const char **ids = calloc(conf->node_count ? conf->node_count : 1,
                              sizeof(*ids));

    if (t == NULL || ids == NULL)
        goto nomem;
    t->refs = 1;
    t->self = conf_cluster_find(conf, coord.node->id);
    if (t->self < 0) {
        snprintf(err, errlen, "%s: node %s is not in cluster.nodes",
                 conf->path, coord.node->id);
        goto fail;
    }
    if (conf->replica_count < 1 ||
        conf->replica_count > QUORUM_MAX_REPLICAS) {
        snprintf(err, errlen, "%s: cluster.replica_count %d: this "
                 "coordinator supports 1..%d", conf->path,
                 conf->replica_count, QUORUM_MAX_REPLICAS);
        goto fail;
    }
    /* While nodes join or leave, a key has the replicas of both
     * placements, up to twice replica_count. */
    if (conf_membership_changing(conf) &&
        2 * conf->replica_count > QUORUM_MAX_REPLICAS) {
        snprintf(err, errlen, "%s: cluster.replica_count %d: while nodes "
                 "join or leave, this coordinator supports 1..%d",
                 conf->path, conf->replica_count, QUORUM_MAX_REPLICAS / 2);
        goto fail;
    }
    t->dest = calloc(conf->node_count, sizeof(*t->dest));
    if (t->dest == NULL)
        goto nomem;
    for (size_t i = 0; i < conf->node_count; i++)
        ids[i] = conf->nodes[i].id;
    if (conf_cluster_placement(conf, &t->place) != 0)
        goto nomem;
    t->names = ids;
    ids = NULL;
    for (size_t i = 0; i < conf->node_count; i++) {
        const struct cluster_node *cn = &conf->nodes[i];
        char url[512], name[300];
        if ((int)i == t->self)
            continue;
        if (wire_address_url(cn->remote_address, url, sizeof(url)) != 0) {
            snprintf(err, errlen, "%s: node %s: bad remote_address \"%s\"",
                     conf->path, cn->id, cn->remote_address);
            goto fail;
        }
        if ((t->dest[i] = peer_find(cn->id, url)) != NULL)
            continue;
        snprintf(name, sizeof(name), "node %s", cn->id);
        t->dest[i] = dest_open(name, url, DEST_PEER, coord.lock,
                               coord.recvmax, err, errlen);
        if (t->dest[i] == NULL)
            goto fail;
        nng_mtx_lock(coord.lock);
        int rv = peer_add(cn->id, url, t->dest[i]);
        nng_mtx_unlock(coord.lock);
        if (rv != 0) {
            dest_close(t->dest[i]);
            goto nomem;
        }
    }
    t->conf = conf;
    return t;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    if (t != NULL) {
        if (t->names != NULL)
            placement_free(&t->place);
        free(t->dest);
        free(t->names);
        free(t);
    }
    free(ids);
    return NULL;
}

/* Retire the peers no view uses any more: ops to them fail at once. */
static void
retire_unused_peers(void)
{
    const struct topo *t = coord.topo;
    for (size_t i = 0; i < coord.npeers; i++) {
        struct coord_peer *p = &coord.peers[i];
        int used = 0;
        for (size_t k = 0; k < t->conf->node_count && !used; k++)
            used = t->dest[k] == p->dest;
        if (!used && !p->retired) {
            p->retired = 1;
            dest_retire(p->dest, "removed from the cluster");
            log_info("node %s (%s) left this coordinator's view", p->id,
                     p->url);
        }
    }
}

/* Stop dialing retired peers (only this thread changes coord.peers, so
 * it reads them without the lock; closing a dialer may block). */
static void
hang_up_retired(void)
{
    for (size_t i = 0; i < coord.npeers; i++) {
        struct coord_peer *p = &coord.peers[i];
        if (p->retired && !p->hung_up) {
            dest_hangup(p->dest);
            p->hung_up = 1;
        }
    }
}

/*
 * Whether a key can have other replicas under t than under old: the seed,
 * replica_count, set of node ids or a node's state (joining, leaving)
 * differs.  (The order of the nodes only decides which node of a pair
 * compares it; addresses place nothing.)
 */
static int
placement_changed(const struct topo *old, const struct topo *t)
{
    size_t n = t->conf->node_count;

    if (old->conf->seed != t->conf->seed ||
        old->conf->replica_count != t->conf->replica_count ||
        old->conf->node_count != n)
        return 1;
    for (size_t i = 0; i < n; i++) {
        int k = conf_cluster_find(old->conf, t->names[i]);
        if (k < 0 || old->conf->nodes[k].state != t->conf->nodes[i].state)
            return 1;
    }
    return 0;
}

/* The gauge of how long this node has been in a membership change: kept
 * across a reload that stays in one (and across a restart, with the
 * counters file), cleared when the change is over. */
static void
note_membership(const struct cluster_conf *conf)
{
    if (!conf_membership_changing(conf))
        metrics_set(&metrics->u.coord.membership_change_ms, 0);
    else if (metrics_get(&metrics->u.coord.membership_change_ms) == 0)
        metrics_set(&metrics->u.coord.membership_change_ms, wire_wall_ms());
}

static void
reload(const char *cluster_path)
{
    char err[CONF_ERR_MAX];
    struct cluster_conf *conf;
    struct topo *t;

    if (conf_load_cluster(cluster_path, &conf, err, sizeof(err)) != 0) {
        log_warnx("reload refused, keeping the current cluster: %s", err);
        return;
    }
    if ((t = topo_build(conf, err, sizeof(err))) == NULL) {
        log_warnx("reload refused, keeping the current cluster: %s", err);
        conf_cluster_free(conf);
        nng_mtx_lock(coord.lock);
        retire_unused_peers();      /* peers opened for the refused view */
        nng_mtx_unlock(coord.lock);
        hang_up_retired();
        return;
    }
    nng_mtx_lock(coord.lock);
    struct topo *old = coord.topo;
    int moved = placement_changed(old, t);
    coord.topo = t;
    retire_unused_peers();
    topo_unref(old);
    nng_mtx_unlock(coord.lock);
    hang_up_retired();
    char note[96];
    log_info("reloaded %s: %zu nodes, replica_count %d%s", cluster_path,
             conf->node_count, conf->replica_count,
             conf_change_note(conf, note, sizeof(note)));
    note_membership(conf);
    /* t is coord.topo until the next reload, on this thread. */
    if (moved)
        repair_soon(t, "placement changed");
}

/* ---- the tick ------------------------------------------------------------- */

/* The peers this coordinator sees, as gauges for /health (metrics.h). */
static void
publish_peers(void)
{
    const struct topo *t = coord.topo;
    size_t k = 0;

    for (size_t i = 0; i < t->conf->node_count; i++) {
        if ((int)i == t->self)
            continue;
        metrics_peer_set(k++, t->conf->nodes[i].id,
                         dest_connected(t->dest[i]));
    }
    metrics_peers_count(k);
}

/*
 * A plain thread, not nng_sleep_aio: nng 1.5's aio expiry thread spins
 * on the clock for up to a millisecond around every timer it fires
 * (expiry is "a_expire < now" in whole milliseconds), which made a 5 ms
 * sleep_aio tick cost a fifth of a core.
 */
static void *
tick_main(void *arg)
{
    unsigned ticks = 0;
    (void)arg;
    for (;;) {
        nng_msleep(COORD_TICK_MS);
        nng_mtx_lock(coord.lock);
        if (!coord.ticking) {
            nng_mtx_unlock(coord.lock);
            return NULL;
        }
        nng_time now = nng_clock();
        cluster_tick(now);
        for (unsigned i = 0; i < coord.shards; i++)
            dest_tick(coord.shard[i], now);
        for (size_t i = 0; i < coord.npeers; i++)
            dest_tick(coord.peers[i].dest, now);
        if (ticks++ % PEERS_PUBLISH_TICKS == 0)
            publish_peers();
        nng_mtx_unlock(coord.lock);
    }
}

/* ---- start and stop ------------------------------------------------------- */

static void
open_storage(void)
{
    char url[512], name[64], err[256];

    coord.shards = (unsigned)coord.node->storage_workers;
    coord.shard = calloc(coord.shards, sizeof(*coord.shard));
    if (coord.shard == NULL)
        fatal("calloc");
    for (unsigned i = 0; i < coord.shards; i++) {
        snprintf(url, sizeof(url), RZKV_STORAGE_IPC_FMT,
                 coord.node->run_dir, (int)i);
        snprintf(name, sizeof(name), "storage %u", i);
        coord.shard[i] = dest_open(name, url, DEST_STORAGE, coord.lock,
                                   coord.recvmax, err, sizeof(err));
        if (coord.shard[i] == NULL)
            fatalx("%s", err);
    }
}

/* The request slots the front door serves (coord_front.c). */
static void
open_front(void)
{
    coord.srv = calloc(COORD_SLOTS, sizeof(*coord.srv));
    if (coord.srv == NULL)
        fatal("calloc");
    front_listen(coord.srv, COORD_SLOTS);
}

static void
init_writer(int instance)
{
    struct timespec ts;

    coord.instance = instance;
    int n = snprintf(coord.writer, sizeof(coord.writer), "%s/c%d",
                     coord.node->id, instance);
    if (n < 0 || (size_t)n >= sizeof(coord.writer))
        fatalx_config("node id too long for a stamp writer");
    coord.writer_len = (size_t)n;
    /* Unique per stamp even across restarts of this coordinator: a
     * restart takes far longer than a nanosecond per stamp minted. */
    clock_gettime(CLOCK_REALTIME, &ts);
    coord.nonce = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wait (bounded) for the requests in flight to be answered. */
static void
drain(void)
{
    nng_mtx_lock(coord.lock);
    coord.stopping = 1;
    unsigned wait_ms = (unsigned)coord.topo->conf->timeout_ms + 1000;
    nng_mtx_unlock(coord.lock);

    nng_time end = nng_clock() + wait_ms;
    for (;;) {
        nng_mtx_lock(coord.lock);
        unsigned left = coord.pending_replies;
        nng_mtx_unlock(coord.lock);
        if (left == 0)
            break;
        if (nng_clock() >= end) {
            log_warnx("stopping with %u requests unanswered", left);
            break;
        }
        nng_msleep(10);
    }
}

static void
shutdown_all(void)
{
    nng_mtx_lock(coord.lock);
    coord.ticking = 0;
    nng_mtx_unlock(coord.lock);
    pthread_join(coord.tick, NULL);
    /* Fail what is still in flight (their requests get answers), then
     * stop the loop that serves the front door. */
    for (unsigned i = 0; i < coord.shards; i++)
        dest_close(coord.shard[i]);
    for (size_t i = 0; i < coord.npeers; i++)
        dest_close(coord.peers[i].dest);
    sp_loop_stop();
}

int
coord_main(const struct node_conf *node, const char *cluster_path,
           int instance)
{
    char err[CONF_ERR_MAX];
    struct cluster_conf *conf;
    int rv;

    worker_setup(ROLE_COORDINATOR, instance);
    metrics_open(node->run_dir, ROLE_COORDINATOR, instance);
    coord.node = node;
    TAILQ_INIT(&coord.by_deadline);
    init_writer(instance);
    if (conf_load_cluster(cluster_path, &conf, err, sizeof(err)) != 0)
        fatalx_config("%s", err);
    if ((rv = nng_mtx_alloc(&coord.lock)) != 0)
        fatalx("nng_mtx_alloc: %s", nng_strerror(rv));
    coord.recvmax = (size_t)node->max_value_size + (1u << 20);

    sp_loop_init();
    open_storage();
    if ((coord.topo = topo_build(conf, err, sizeof(err))) == NULL)
        fatalx_config("%s", err);
    coord.ticking = 1;
    if ((rv = pthread_create(&coord.tick, NULL, tick_main, NULL)) != 0)
        fatalx("pthread_create: %s", strerror(rv));
    open_front();
    char note[96];
    log_info("coordinator %s: %zu nodes, replica_count %d, %u storage "
             "workers%s", coord.writer, conf->node_count, conf->replica_count,
             coord.shards, conf_change_note(conf, note, sizeof(note)));
    note_membership(conf);
    worker_ready();
    repair_start();

    for (;;) {
        switch (worker_wait_command()) {
        case WORKER_CMD_RELOAD:
            reload(cluster_path);
            break;
        case WORKER_CMD_REPAIR:
            /* coord.topo changes only on this thread (reload). */
            repair_soon(coord.topo, "rzkvctl repair");
            break;
        case WORKER_CMD_STOP:
            log_info("stopping");
            repair_stop();
            drain();
            shutdown_all();
            return RZKV_EXIT_OK;
        case WORKER_CMD_EOF:
        default:
            /* The supervisor is gone: nothing to answer to. */
            _exit(RZKV_EXIT_OK);
        }
    }
}

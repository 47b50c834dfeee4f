/*
 * storage.c - the storage worker: serves one shard of the node's data
 * (worker/store.c) to coordinators and peers over the Node API.
 *
 *   rzkvd -P storage -I INSTANCE NODE.yml CLUSTER.yml
 *
 * Serves ipc://RUN_DIR/storage-I.ipc (nng's REP protocol, spoken by
 * sp_loop.c: up to STORAGE_CONTEXTS requests in flight) and owns
 * DATA_DIR/shard-I.db.  It answers NodeBatch (ReplicaGet,
 * ReplicaSet, ClockGet, ClockSet; one result per operation, in order),
 * ListKeys, NodeInfoRequest and HealthRequest; anything else gets an
 * UNSUPPORTED reply, undecodable bytes an INVALID one.
 *
 * Threads and the path of a request:
 *  - The loop thread (sp_loop.c) reads and decodes requests.  Batches of
 *    reads only (ReplicaGet, ClockGet), listings, info and health are
 *    answered there, from a pooled WAL read connection, in one read
 *    transaction a batch: reads never wait behind an fsync.
 *  - A batch with any write (ReplicaSet, ClockSet) is queued for the one
 *    writer thread.  It takes everything queued, applies it all in one
 *    transaction and commits (one fsync for the lot in node.durability
 *    full).  Only then are the replies sent, by the replier thread, while
 *    the writer starts the next group: sending a reply costs about as much
 *    as the fsync (measured), so the two overlap.  A write is acknowledged
 *    only once durable, and a read arriving after the acknowledgement
 *    sees it.
 *  - The main thread waits for supervisor commands.
 *
 * EXIT STATUS (documented in rzkvd(8))
 *   0   stopped: "stop" from the supervisor, or SIGTERM/SIGINT when run
 *       standalone; in-flight requests were answered, the database closed.
 *       Also when the supervisor's channel reaches EOF: the worker exits at
 *       once (every acknowledged write is already durable).
 *   1   environment failure (memory, sockets, another live worker on the
 *       socket, a COMMIT that failed in doubt, as on a failed fsync):
 *       the supervisor restarts it with backoff.
 *   78  RZKV_EXIT_CONFIG, do not restart: the data or run directory or the
 *       database can't be created or opened, the database is corrupt
 *       (PRAGMA quick_check), is not an rzkv shard, has another format
 *       version, or records another shard index or storage worker count
 *       than node.yml says.  The log line names the file.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "arena.h"
#include "batch.h"
#include "conf.h"
#include "log.h"
#include "metrics.h"
#include "ring.h"
#include "sp.h"
#include "store.h"
#include "wire.h"
#include "worker.h"

#define STORAGE_CONTEXTS        128         /* requests in flight */
#define STORAGE_BACKLOG         128         /* connections waiting */
#define STORAGE_RECV_HEADROOM   (1u << 20)  /* message bytes beyond a value */
#define STORAGE_MAX_BATCH_OPS   65536
#define STORAGE_LIST_DEFAULT    1000
#define STORAGE_LIST_MAX        10000
#define STORAGE_LIST_SCAN       100000      /* rows examined per page */
#define STORAGE_LIST_BYTES      (4u << 20)  /* key bytes per page */
#define STORAGE_STOP_WAIT_S     10
#define STORAGE_BAD_LOG_PER_S   10
#define STORAGE_OPEN_RETRY_LOG_S 30         /* a line per 30 s of retrying */
#define STORAGE_OUT_CACHE       64          /* ops whose results a context
                                             * keeps allocated for reuse */
#define STORAGE_REPLY_SLACK     4096        /* Reply framing around results */
#define STORAGE_REPLY_KEEP      (64u << 10) /* reply buffer a context keeps */
#define STORAGE_RESULT_BOUND    256         /* a result's bytes beyond its
                                             * key, value and writer */
/* What coordinators say too (worker/coord.h FWD_RESEND_ALONE): the asking
 * coordinator reads TOO_LARGE as "ask for this one again, alone". */
#define STORAGE_RESEND_ALONE    "result too large for a batch reply; " \
                                "resend alone"
/*
 * Clocks and stamps at or above this (epoch or counter) are refused: real
 * ones grow by one per restart or write, and accepting one near 2^64 from
 * a confused peer would make the next epoch bump impossible (the worker
 * could never start again) or a coordinator's counter + 1 wrap.
 */
#define STORAGE_CLOCK_LIMIT     (UINT64_C(1) << 62)

enum op_kind {
    OP_ANSWERED = 0,        /* refused at validation; result already set */
    OP_GET,
    OP_SET,
    OP_CLOCK_GET,
    OP_CLOCK_SET,
    OP_PURGE,
};

/* One operation's result and the storage its reply points into. */
struct op_out {
    enum op_kind kind;
    Rzkv__NodeResult res;
    Rzkv__Entry entry;
    Rzkv__Stamp stamp;
    Rzkv__Clock clock;
    struct store_item item;
};

struct storage;

/* One request in flight, from receive to reply. */
struct sctx {
    struct storage *sw;
    struct sp_conn *conn;       /* the requester's connection */
    uint8_t hdrlen;
    uint8_t hdr[SP_MAX_BACKTRACE];  /* its backtrace, for the reply */
    /* The batch being served. */
    nng_msg *msg;               /* the reply; kept for the next request */
    Rzkv__Envelope *env;        /* the request, unpacked into arena */
    struct arena arena;
    struct op_out *out;
    Rzkv__NodeResult **results; /* &out[i].res, for the reply */
    size_t nout;
    size_t out_cap;
    struct sctx *next;          /* writer queue, reply queue, or free */
    int committed;              /* the group's transaction committed;
                                 * if not, nothing of it was written (a
                                 * COMMIT in doubt ends the process) */
    struct clock clock;         /* the clock after it */
    uint64_t start_ns;          /* received at, for metrics.h */
};

struct storage {
    int instance;
    unsigned shards;            /* node.storage_workers */
    uint64_t max_value;
    struct store *store;
    struct store_stats counted; /* writer: commits, fsyncs in metrics */
    struct log_rate expired_rate;   /* writer: expiry lines */
    int listen_fd;
    struct sctx ctxs[STORAGE_CONTEXTS];
    pthread_mutex_t free_lock;
    struct sctx *free_ctxs;     /* not serving a request */
    pthread_t writer;
    pthread_t replier;

    pthread_mutex_t lock;       /* everything below */
    pthread_cond_t work;        /* writer: queue not empty, or quit */
    pthread_cond_t replies;     /* replier: queue not empty, or quit */
    pthread_cond_t idle;        /* stop: inflight reached 0 */
    struct sctx *queue_head;    /* batches waiting for the writer */
    struct sctx **queue_tail;
    struct sctx *reply_head;    /* committed batches waiting for replies */
    struct sctx **reply_tail;
    unsigned inflight;          /* requests received and not yet answered */
    int stopping;
    int writer_quit;
    int replier_quit;

    pthread_mutex_t bad_lock;   /* guards bad_rate */
    struct log_rate bad_rate;   /* bad-request log lines */
};

static struct storage self;     /* large (contexts): not on the stack */

/* ---- logging of bad input: one line each, at most N a second ---------- */

static void
bad_request(struct storage *sw, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
bad_request(struct storage *sw, const char *fmt, ...)
{
    unsigned dropped;

    pthread_mutex_lock(&sw->bad_lock);
    int show = log_rate_take(&sw->bad_rate, time(NULL),
                             STORAGE_BAD_LOG_PER_S, &dropped);
    pthread_mutex_unlock(&sw->bad_lock);

    if (dropped)
        log_warnx("%u more bad requests not logged", dropped);
    if (show) {
        char text[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        log_warnx("%s", text);
    }
}

/* ---- request lifecycle ------------------------------------------------ */

/* c is free for the next request. */
static void
ctx_put(struct sctx *c)
{
    struct storage *w = c->sw;
    pthread_mutex_lock(&w->free_lock);
    c->next = w->free_ctxs;
    w->free_ctxs = c;
    pthread_mutex_unlock(&w->free_lock);
    sp_loop_resume();
}

static struct sctx *
ctx_take(struct storage *w)
{
    pthread_mutex_lock(&w->free_lock);
    struct sctx *c = w->free_ctxs;
    if (c != NULL)
        w->free_ctxs = c->next;
    pthread_mutex_unlock(&w->free_lock);
    return c;
}

/* Free what the request held, keeping a small result array for reuse. */
static void
ctx_release(struct sctx *c)
{
    for (size_t i = 0; i < c->nout; i++)
        store_item_free(&c->out[i].item);
    if (c->out_cap > STORAGE_OUT_CACHE) {
        free(c->out);
        free(c->results);
        c->out = NULL;
        c->results = NULL;
        c->out_cap = 0;
    }
    c->nout = 0;
    c->env = NULL;
    arena_reset(&c->arena);
}

static void
request_done(struct storage *sw)
{
    pthread_mutex_lock(&sw->lock);
    if (--sw->inflight == 0)
        pthread_cond_broadcast(&sw->idle);
    pthread_mutex_unlock(&sw->lock);
}

/* The request is over (answered or dropped): let go of everything. */
static void
ctx_finish(struct sctx *c)
{
    nng_msg *reply = c->msg;
    c->msg = NULL;
    wire_msg_recycle(&c->msg, reply, STORAGE_REPLY_KEEP);
    ctx_release(c);
    sp_conn_unref(c->conn);
    c->conn = NULL;
    request_done(c->sw);
    ctx_put(c);
}

/* Send c->msg (already packed with the reply) and free the request;
 * from any thread. */
static void
ctx_send(struct sctx *c)
{
    sp_conn_reply(c->conn, c->hdr, c->hdrlen, nng_msg_body(c->msg),
                  nng_msg_len(c->msg));
    ctx_finish(c);
}

static void
reply_pack(struct sctx *c, const Rzkv__Reply *reply)
{
    if (wire_pack_into(c->msg, &reply->base) != 0 &&
        wire_pack_error(c->msg, RZKV__STATUS__INTERNAL,
                        "out of memory packing the reply") != 0) {
        /* Can't even say so: drop it; the client's request times out. */
        log_warnx("out of memory: request dropped");
        ctx_finish(c);
        return;
    }
    ctx_send(c);
}

static void
reply_error(struct sctx *c, Rzkv__Status status, const char *text)
{
    Rzkv__Reply reply = RZKV__REPLY__INIT;
    reply.status = status;
    reply.message = (char *)text;
    reply_pack(c, &reply);
}

/* ---- NodeBatch -------------------------------------------------------- */

static int
ensure_out(struct sctx *c, size_t n)
{
    if (n > c->out_cap) {
        struct op_out *out = realloc(c->out, n * sizeof(*out));
        if (out == NULL)
            return -1;
        c->out = out;
        Rzkv__NodeResult **results = realloc(c->results,
                                             n * sizeof(*results));
        if (results == NULL)
            return -1;
        c->results = results;
        c->out_cap = n;
    }
    c->nout = n;
    for (size_t i = 0; i < n; i++) {
        struct op_out *o = &c->out[i];
        o->kind = OP_ANSWERED;
        o->res = (Rzkv__NodeResult)RZKV__NODE_RESULT__INIT;
        o->entry = (Rzkv__Entry)RZKV__ENTRY__INIT;
        o->stamp = (Rzkv__Stamp)RZKV__STAMP__INIT;
        o->clock = (Rzkv__Clock)RZKV__CLOCK__INIT;
        o->item.buf = NULL;
        c->results[i] = &o->res;
    }
    return 0;
}

static void
op_refuse(struct storage *sw, struct op_out *o, size_t i, Rzkv__Status st,
          const char *text)
{
    o->kind = OP_ANSWERED;
    o->res.status = st;
    o->res.message = (char *)text;
    o->res.refused = 1;
    bad_request(sw, "node.batch op %zu: %s: %s", i, wire_status_str(st),
                text);
}

/* A key must be 1..RZKV_MAX_KEY bytes and belong to this shard. */
static const char *
key_problem(struct storage *sw, const ProtobufCBinaryData *key)
{
    if (key->len == 0)
        return "empty key";
    if (key->len > RZKV_MAX_KEY)
        return "key longer than 65536 bytes";
    if (ring_shard(key->data, key->len, sw->shards) != (unsigned)sw->instance)
        return "key belongs to another storage worker of this node";
    return NULL;
}

/* Classify and check one operation; returns 1 if it writes. */
static int
op_check(struct storage *sw, const Rzkv__NodeOp *op, struct op_out *o,
         size_t i)
{
    const ProtobufCBinaryData *key = NULL;
    const char *why;

    switch (op->op_case) {
    case RZKV__NODE_OP__OP_GET:
        o->kind = OP_GET;
        key = &op->get->key;
        break;
    case RZKV__NODE_OP__OP_SET: {
        const Rzkv__Entry *e = op->set->entry;
        if (e == NULL) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID, "set without an entry");
            return 0;
        }
        if (e->stamp == NULL) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID, "set without a stamp");
            return 0;
        }
        if (e->stamp->epoch >= STORAGE_CLOCK_LIMIT ||
            e->stamp->counter >= STORAGE_CLOCK_LIMIT) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID,
                      "stamp out of range (epoch or counter >= 2^62)");
            return 0;
        }
        if (e->tombstone && e->value.len != 0) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID,
                      "tombstone with a value");
            return 0;
        }
        if (e->value.len > sw->max_value) {
            op_refuse(sw, o, i, RZKV__STATUS__TOO_LARGE,
                      "value larger than node.max_value_size");
            return 0;
        }
        o->kind = OP_SET;
        key = &e->key;
        break;
    }
    case RZKV__NODE_OP__OP_CLOCK_GET:
        o->kind = OP_CLOCK_GET;
        key = &op->clock_get->key;
        break;
    case RZKV__NODE_OP__OP_CLOCK_SET:
        if (op->clock_set->clock == NULL) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID,
                      "clock set without a clock");
            return 0;
        }
        if (op->clock_set->clock->epoch >= STORAGE_CLOCK_LIMIT ||
            op->clock_set->clock->counter >= STORAGE_CLOCK_LIMIT) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID,
                      "clock out of range (epoch or counter >= 2^62)");
            return 0;
        }
        o->kind = OP_CLOCK_SET;
        key = &op->clock_set->key;
        break;
    case RZKV__NODE_OP__OP_PURGE:
        if (op->purge->stamp == NULL) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID,
                      "purge without a stamp");
            return 0;
        }
        if (op->purge->min_age_ms == 0) {
            op_refuse(sw, o, i, RZKV__STATUS__INVALID,
                      "purge without a minimum age");
            return 0;
        }
        o->kind = OP_PURGE;
        key = &op->purge->key;
        break;
    default:
        /* No operation this build knows: as a coordinator answers a peer
         * for it (coord_node.c), since peers' batches come here too. */
        op_refuse(sw, o, i, RZKV__STATUS__INVALID, "operation without a key");
        return 0;
    }
    if ((why = key_problem(sw, key)) != NULL) {
        op_refuse(sw, o, i, RZKV__STATUS__INVALID, why);
        return 0;
    }
    return o->kind == OP_SET || o->kind == OP_CLOCK_SET ||
           o->kind == OP_PURGE;
}

/* Point a get's result at the version read (found) or at nothing. */
static void
op_got(struct op_out *o, int found)
{
    if (found < 0) {
        o->res.status = RZKV__STATUS__INTERNAL;
        o->res.message = "storage read failed";
        return;
    }
    o->res.status = RZKV__STATUS__OK;
    if (!found)
        return;
    const struct store_entry *e = &o->item.e;
    o->stamp.epoch = e->stamp.epoch;
    o->stamp.counter = e->stamp.counter;
    o->stamp.writer.data = (uint8_t *)e->stamp.writer;
    o->stamp.writer.len = e->stamp.writer_len;
    o->stamp.nonce = e->stamp.nonce;
    o->entry.key.data = (uint8_t *)e->key;
    o->entry.key.len = e->key_len;
    o->entry.stamp = &o->stamp;
    o->entry.tombstone = e->tombstone != 0;
    if (!e->tombstone) {
        o->entry.value.data = (uint8_t *)e->value;
        o->entry.value.len = e->value_len;
    }
    o->res.entry = &o->entry;
}

static void
op_set_clock(struct op_out *o, struct clock c)
{
    o->clock.epoch = c.epoch;
    o->clock.counter = c.counter;
    o->res.clock = &o->clock;
}

/* Each replica operation answered: its latency since receipt. */
static void
batch_metrics(struct sctx *c)
{
    _Static_assert(OP_SET - OP_GET == MSOP_SET &&
                   OP_CLOCK_GET - OP_GET == MSOP_CLOCK_GET &&
                   OP_CLOCK_SET - OP_GET == MSOP_CLOCK_SET &&
                   OP_PURGE - OP_GET == MSOP_PURGE,
                   "op_kind - OP_GET indexes metrics");
    uint64_t n[MSOP_COUNT] = { 0 };
    uint64_t ns = metrics_now_ns() - c->start_ns;

    for (size_t i = 0; i < c->nout; i++)
        if (c->out[i].kind != OP_ANSWERED)
            n[c->out[i].kind - OP_GET]++;
    for (int k = 0; k < MSOP_COUNT; k++)
        if (n[k] > 0)
            metrics_lat_observe(&metrics->u.storage.op_duration[k], ns,
                                n[k]);
}

static int
cmp_size_desc(const void *a, const void *b, void *arg)
{
    const size_t *size = arg;
    size_t x = size[*(const size_t *)a], y = size[*(const size_t *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Keep a batch reply under what a peer accepts (its front door's and its
 * coordinator's limit: node.max_value_size + STORAGE_RECV_HEADROOM, as
 * ours): peers' batches reach this worker straight from the front door
 * (supervisor/sup_front.c), so this does what the coordinator does for
 * the batches it forwards (coord_node.c fwd_fit).  The largest results
 * give way to TOO_LARGE "resend alone", which the asking coordinator
 * takes as "ask for it again in a message of its own"; one result always
 * fits.  A cheap bound first: exact sizes only when it could be over.
 */
static void
batch_fit(struct sctx *c)
{
    size_t limit = (size_t)c->sw->max_value + STORAGE_RECV_HEADROOM -
                   STORAGE_REPLY_SLACK;
    size_t bound = 0, body = 0, *size, *order;

    if (c->nout < 2)
        return;
    for (size_t i = 0; i < c->nout; i++) {
        const struct op_out *o = &c->out[i];
        bound += o->entry.key.len + o->entry.value.len +
                 o->stamp.writer.len + STORAGE_RESULT_BOUND;
    }
    if (bound <= limit)
        return;
    if ((size = malloc(2 * c->nout * sizeof(*size))) == NULL)
        return;                 /* sent as it is: the peer times out */
    order = size + c->nout;
    for (size_t i = 0; i < c->nout; i++) {
        size[i] = batch_record_len(BATCH_RESULTS,
                                   rzkv__node_result__get_packed_size(
                                       &c->out[i].res));
        body += size[i];
        order[i] = i;
    }
    if (body > limit)
        qsort_r(order, c->nout, sizeof(*order), cmp_size_desc, size);
    for (size_t k = 0; k < c->nout && body > limit; k++) {
        struct op_out *o = &c->out[order[k]];
        o->res = (Rzkv__NodeResult)RZKV__NODE_RESULT__INIT;
        o->res.status = RZKV__STATUS__TOO_LARGE;
        o->res.message = STORAGE_RESEND_ALONE;
        body -= size[order[k]];
        body += batch_record_len(BATCH_RESULTS,
                                 rzkv__node_result__get_packed_size(&o->res));
    }
    free(size);
}

/* Pack the batch's results (in op order) and send them. */
static void
batch_reply(struct sctx *c)
{
    Rzkv__NodeBatchReply body = RZKV__NODE_BATCH_REPLY__INIT;
    Rzkv__Reply reply = RZKV__REPLY__INIT;

    body.n_results = c->nout;
    body.results = c->results;
    reply.status = RZKV__STATUS__OK;
    reply.message = "";
    reply.body_case = RZKV__REPLY__BODY_NODE;
    reply.node = &body;
    batch_metrics(c);
    batch_fit(c);
    reply_pack(c, &reply);
}

/* A batch of reads only: answered here, from a read connection. */
static void
batch_read(struct sctx *c)
{
    struct storage *sw = c->sw;
    Rzkv__NodeBatch *b = c->env->node;
    struct store_reader *r = NULL;
    struct clock now = store_clock(sw->store);

    for (size_t i = 0; i < c->nout; i++) {
        struct op_out *o = &c->out[i];
        if (o->kind == OP_GET) {
            if (r == NULL) {
                if ((r = store_reader_get(sw->store)) == NULL) {
                    op_got(o, -1);
                    continue;
                }
                store_read_begin(r);
            }
            const ProtobufCBinaryData *k = &b->ops[i]->get->key;
            op_got(o, store_get(r, k->data, k->len, &o->item));
        } else if (o->kind == OP_CLOCK_GET) {
            o->res.status = RZKV__STATUS__OK;
            op_set_clock(o, now);
        }
    }
    if (r != NULL) {
        store_read_end(r);
        store_reader_put(sw->store, r);
    }
    batch_reply(c);
}

static void
writer_enqueue(struct storage *sw, struct sctx *c)
{
    c->next = NULL;
    pthread_mutex_lock(&sw->lock);
    *sw->queue_tail = c;
    sw->queue_tail = &c->next;
    pthread_cond_signal(&sw->work);
    pthread_mutex_unlock(&sw->lock);
}

static void
handle_batch(struct sctx *c)
{
    struct storage *sw = c->sw;
    Rzkv__NodeBatch *b = c->env->node;
    int writes = 0;

    if (b->n_ops > STORAGE_MAX_BATCH_OPS) {
        bad_request(sw, "node.batch of %zu ops (at most %d)", b->n_ops,
                    STORAGE_MAX_BATCH_OPS);
        reply_error(c, RZKV__STATUS__INVALID, "too many operations in batch");
        return;
    }
    if (ensure_out(c, b->n_ops) != 0) {
        log_warnx("out of memory for a batch of %zu ops", b->n_ops);
        reply_error(c, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < b->n_ops; i++)
        writes += op_check(sw, b->ops[i], &c->out[i], i);
    if (writes)
        writer_enqueue(sw, c);
    else
        batch_read(c);
}

/* ---- the writer thread: group commit ---------------------------------- */

/*
 * Refuse a write that reached this replica after it expired (writer
 * thread).  Its coordinator gave up on it long ago; applied now, a write
 * sent before a delete could land after anti-entropy purged the
 * tombstone and bring the value back.  One log line a second at most.
 */
static void
write_expired(struct storage *sw, struct op_out *o, uint64_t late_ms)
{
    unsigned dropped;

    o->kind = OP_ANSWERED;
    o->res.refused = 1;
    o->res.status = RZKV__STATUS__UNAVAILABLE;
    o->res.message = "write expired before this replica could apply it; "
                     "not applied";
    metrics_add(&metrics->u.storage.writes_expired, 1);
    if (!log_rate_take(&sw->expired_rate, time(NULL), 1, &dropped))
        return;
    log_warnx("refused a write that arrived %" PRIu64 " ms after it "
              "expired (and %u more since the last such line): it was held "
              "up, by a stopped process or the network, or the nodes' "
              "clocks are further apart than cluster.max_clock_skew_ms",
              late_ms, dropped);
}

/* Apply one batch's operations inside the open transaction. */
static int
group_apply(struct storage *sw, struct sctx *c, size_t *ops)
{
    Rzkv__NodeBatch *b = c->env->node;
    uint64_t now_ms = wire_wall_ms();

    for (size_t i = 0; i < c->nout; i++) {
        struct op_out *o = &c->out[i];
        const Rzkv__NodeOp *op = b->ops[i];
        switch (o->kind) {
        case OP_GET: {
            int found = store_get_tx(sw->store, op->get->key.data,
                                     op->get->key.len, &o->item);
            op_got(o, found);
            if (found < 0)
                return -1;
            break;
        }
        case OP_SET: {
            const Rzkv__Entry *e = op->set->entry;
            if (op->set->expires_ms != 0 && now_ms > op->set->expires_ms) {
                write_expired(sw, o, now_ms - op->set->expires_ms);
                continue;
            }
            struct store_entry se = {
                .key = e->key.data, .key_len = e->key.len,
                .stamp = wire_stamp_view(e->stamp),
                .tombstone = e->tombstone,
                .value = e->value.data, .value_len = e->value.len,
            };
            int applied;
            if (store_apply(sw->store, &se, &applied) != 0)
                return -1;
            o->res.applied = applied != 0;
            break;
        }
        case OP_CLOCK_SET: {
            struct clock cl = wire_clock_view(op->clock_set->clock);
            store_clock_raise(sw->store, &cl);
            break;
        }
        case OP_PURGE: {
            const Rzkv__ReplicaPurge *p = op->purge;
            struct stamp st = wire_stamp_view(p->stamp);
            int purged;
            if (store_purge(sw->store, p->key.data, p->key.len, &st,
                            p->min_age_ms, &purged) != 0)
                return -1;
            o->res.applied = purged != 0;
            break;
        }
        default:
            continue;
        }
        (*ops)++;
    }
    return 0;
}

/*
 * After the commit (or its failure): complete the results and reply.  A
 * failed group wrote nothing: its writes are marked refused (never to be
 * applied), and the coordinator may tell its client so rather than
 * UNKNOWN.
 */
static void
group_reply(struct sctx *c, int ok, struct clock now)
{
    for (size_t i = 0; i < c->nout; i++) {
        struct op_out *o = &c->out[i];
        if (o->kind == OP_ANSWERED)
            continue;
        if (!ok) {
            store_item_free(&o->item);
            o->res = (Rzkv__NodeResult)RZKV__NODE_RESULT__INIT;
            o->res.status = RZKV__STATUS__INTERNAL;
            o->res.message = "storage write failed; nothing applied";
            o->res.refused = 1;
            continue;
        }
        if (o->kind != OP_GET) {
            o->res.status = RZKV__STATUS__OK;
            op_set_clock(o, now);
        }
    }
    batch_reply(c);     /* c may be reused from here on */
}

/* Hand a committed (or failed) group to the replier. */
static void
replier_enqueue(struct storage *sw, struct sctx *list)
{
    struct sctx *last = list;
    while (last->next != NULL)
        last = last->next;
    pthread_mutex_lock(&sw->lock);
    *sw->reply_tail = list;
    sw->reply_tail = &last->next;
    pthread_cond_signal(&sw->replies);
    pthread_mutex_unlock(&sw->lock);
}

/*
 * What a commit changed, into the metrics file (writer thread only).
 * commit_ns: how long COMMIT took, its WAL write and fsync: the disk's
 * latency as writes see it.  Checkpoints run on their own thread and are
 * counted here, at the commit after them.
 */
static void
commit_metrics(struct storage *sw, int ok, size_t ops, uint64_t commit_ns)
{
    struct metrics_storage *m = &metrics->u.storage;
    struct store_stats st;

    if (!ok) {
        metrics_add(&m->commit_failures, 1);
        return;
    }
    store_stats(sw->store, &st);
    metrics_add(&m->commits, st.commits - sw->counted.commits);
    metrics_add(&m->fsyncs, st.fsyncs - sw->counted.fsyncs);
    metrics_add(&m->checkpoints, st.checkpoints - sw->counted.checkpoints);
    metrics_add(&m->wal_restarts, st.wal_restarts - sw->counted.wal_restarts);
    metrics_lat_observe(&m->commit_duration, commit_ns, 1);
    metrics_set(&m->entries, st.entries);
    metrics_size_observe(&m->group_commit_ops, ops);
    sw->counted = st;
}

/*
 * COMMIT failed after it may have written its commit record: an I/O
 * error, most likely its fsync.  The transaction may or may not be on
 * disk, and after a failed fsync the kernel may have dropped the pages
 * it could not write, so what this process believes of the file can no
 * longer be trusted.  Exit at once, answering nothing: the supervisor
 * restarts the worker, whose recovery reads what is really on disk, and
 * the coordinators see these writes time out, UNKNOWN.  (PostgreSQL
 * makes the same choice for a failed fsync.)
 */
static _Noreturn void
commit_in_doubt(struct storage *sw, size_t ops)
{
    log_error("COMMIT of %zu operations failed in doubt (%s): exiting so "
              "that a restart recovers the shard from disk", ops,
              store_errmsg(sw->store));
    _exit(RZKV_EXIT_FATAL);
}

static void
group_commit(struct storage *sw, struct sctx *list)
{
    size_t ops = 0;
    uint64_t commit_ns = 0;
    int ok = store_begin(sw->store) == 0;

    for (struct sctx *c = list; ok && c != NULL; c = c->next)
        ok = group_apply(sw, c, &ops) == 0;
    if (ok) {
        uint64_t t0 = metrics_now_ns();
        int rc = store_commit(sw->store, ops);
        commit_ns = metrics_now_ns() - t0;
        if (rc == STORE_IN_DOUBT)
            commit_in_doubt(sw, ops);
        ok = rc == 0;
    } else {
        store_rollback(sw->store);
    }
    if (!ok)
        log_warnx("write transaction failed, %zu operations refused: %s",
                  ops, store_errmsg(sw->store));
    commit_metrics(sw, ok, ops, commit_ns);

    struct clock now = store_clock(sw->store);
    for (struct sctx *c = list; c != NULL; c = c->next) {
        c->committed = ok;
        c->clock = now;
    }
    replier_enqueue(sw, list);
}

static void *
writer_main(void *arg)
{
    struct storage *sw = arg;

    for (;;) {
        pthread_mutex_lock(&sw->lock);
        while (sw->queue_head == NULL && !sw->writer_quit)
            pthread_cond_wait(&sw->work, &sw->lock);
        struct sctx *list = sw->queue_head;
        sw->queue_head = NULL;
        sw->queue_tail = &sw->queue_head;
        pthread_mutex_unlock(&sw->lock);
        if (list == NULL)
            return NULL;        /* quit, and nothing left to commit */
        group_commit(sw, list);
    }
}

static void *
replier_main(void *arg)
{
    struct storage *sw = arg;

    for (;;) {
        pthread_mutex_lock(&sw->lock);
        while (sw->reply_head == NULL && !sw->replier_quit)
            pthread_cond_wait(&sw->replies, &sw->lock);
        struct sctx *list = sw->reply_head;
        sw->reply_head = NULL;
        sw->reply_tail = &sw->reply_head;
        pthread_mutex_unlock(&sw->lock);
        if (list == NULL)
            return NULL;        /* quit, and every reply sent */
        for (struct sctx *c = list, *next; c != NULL; c = next) {
            next = c->next;
            group_reply(c, c->committed, c->clock);
        }
    }
}

/* ---- ListKeys, NodeInfo, Health --------------------------------------- */

struct list_out {
    Rzkv__Entry **entries;
    size_t n;
};

/* One listed entry: Entry, Stamp, key and writer in one allocation. */
static int
list_collect(void *arg, const struct store_entry *e)
{
    struct list_out *l = arg;
    struct {
        Rzkv__Entry entry;
        Rzkv__Stamp stamp;
        uint8_t bytes[];
    } *p = malloc(sizeof(*p) + e->key_len + e->stamp.writer_len);
    if (p == NULL)
        return -1;
    p->entry = (Rzkv__Entry)RZKV__ENTRY__INIT;
    p->stamp = (Rzkv__Stamp)RZKV__STAMP__INIT;
    memcpy(p->bytes, e->key, e->key_len);
    if (e->stamp.writer_len)
        memcpy(p->bytes + e->key_len, e->stamp.writer, e->stamp.writer_len);
    p->entry.key.data = p->bytes;
    p->entry.key.len = e->key_len;
    p->stamp.epoch = e->stamp.epoch;
    p->stamp.counter = e->stamp.counter;
    p->stamp.writer.data = p->bytes + e->key_len;
    p->stamp.writer.len = e->stamp.writer_len;
    p->stamp.nonce = e->stamp.nonce;
    p->entry.stamp = &p->stamp;
    p->entry.tombstone = e->tombstone != 0;
    p->entry.tombstone_age_ms = e->tombstone_age_ms;
    l->entries[l->n++] = &p->entry;
    return 0;
}

static void
handle_list(struct sctx *c)
{
    struct storage *sw = c->sw;
    const Rzkv__ListKeys *lk = c->env->list_keys;
    struct store_list_query q = {
        .start = lk->start_key.data, .start_len = lk->start_key.len,
        .end = lk->end_key.data, .end_len = lk->end_key.len,
        .any_hash = lk->hash_start == 0 && lk->hash_end == 0,
        .hash_start = lk->hash_start, .hash_end = lk->hash_end,
        .include_tombstones = lk->include_tombstones,
        .limit = lk->limit ? lk->limit : STORAGE_LIST_DEFAULT,
        .scan_budget = STORAGE_LIST_SCAN,
        .byte_budget = STORAGE_LIST_BYTES,
    };
    if (q.limit > STORAGE_LIST_MAX)
        q.limit = STORAGE_LIST_MAX;

    struct list_out l = { calloc(q.limit, sizeof(Rzkv__Entry *)), 0 };
    struct store_reader *r = store_reader_get(sw->store);
    uint8_t *next = NULL;
    size_t next_len = 0;
    long n = -1;
    if (l.entries != NULL && r != NULL)
        n = store_list(r, &q, list_collect, &l, &next, &next_len);
    if (r != NULL)
        store_reader_put(sw->store, r);

    if (n < 0) {
        log_warnx("listing keys failed");
        reply_error(c, RZKV__STATUS__INTERNAL, "listing keys failed");
    } else {
        Rzkv__ListKeysReply body = RZKV__LIST_KEYS_REPLY__INIT;
        Rzkv__Reply reply = RZKV__REPLY__INIT;
        body.n_entries = l.n;
        body.entries = l.entries;
        body.next_key.data = next;
        body.next_key.len = next_len;
        reply.status = RZKV__STATUS__OK;
        reply.message = "";
        reply.body_case = RZKV__REPLY__BODY_LIST_KEYS;
        reply.list_keys = &body;
        reply_pack(c, &reply);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.entries[i]);     /* the Entry is the allocation's start */
    free(l.entries);
    free(next);
}

static void
handle_info(struct sctx *c)
{
    struct storage *sw = c->sw;
    struct store_stats st;
    uint64_t bytes = 0;

    store_stats(sw->store, &st);
    struct store_reader *r = store_reader_get(sw->store);
    if (r != NULL) {
        bytes = store_bytes_on_disk(sw->store, r);
        store_reader_put(sw->store, r);
    }

    Rzkv__Clock clock = RZKV__CLOCK__INIT;
    Rzkv__WorkerInfo info = RZKV__WORKER_INFO__INIT;
    Rzkv__WorkerInfo *infos[1] = { &info };
    Rzkv__NodeInfoReply body = RZKV__NODE_INFO_REPLY__INIT;
    Rzkv__Reply reply = RZKV__REPLY__INIT;
    clock.epoch = st.clock.epoch;
    clock.counter = st.clock.counter;
    info.role = ROLE_STORAGE;
    info.instance = (uint32_t)sw->instance;
    info.entries = st.entries;
    info.bytes_on_disk = bytes;
    info.epoch = st.epoch;
    info.clock = &clock;
    info.fsyncs = st.fsyncs;
    info.commits = st.commits;
    info.ops_committed = st.ops_committed;
    body.n_workers = 1;
    body.workers = infos;
    reply.status = RZKV__STATUS__OK;
    reply.message = "";
    reply.body_case = RZKV__REPLY__BODY_NODE_INFO;
    reply.node_info = &body;
    reply_pack(c, &reply);
}

/* ---- dispatch --------------------------------------------------------- */

static void
handle_request(struct sctx *c, const uint8_t *body, size_t len)
{
    struct storage *sw = c->sw;
    char text[128];

    /* A copy of what the request holds, so the loop's buffer is free
     * again once this returns. */
    c->env = rzkv__envelope__unpack(&c->arena.pb, len, body);
    if (c->env == NULL) {
        bad_request(sw, "malformed message (%zu bytes)", len);
        reply_error(c, RZKV__STATUS__INVALID, "malformed message");
        return;
    }
    switch (c->env->msg_case) {
    case RZKV__ENVELOPE__MSG_NODE:
        handle_batch(c);
        break;
    case RZKV__ENVELOPE__MSG_LIST_KEYS:
        handle_list(c);
        break;
    case RZKV__ENVELOPE__MSG_NODE_INFO:
        handle_info(c);
        break;
    case RZKV__ENVELOPE__MSG_HEALTH:
        reply_error(c, RZKV__STATUS__OK, "ok");
        break;
    default:
        snprintf(text, sizeof(text), "unsupported message type %s: storage "
                 "workers serve the Node API", wire_envelope_type_str(c->env));
        bad_request(sw, "%s", text);
        reply_error(c, RZKV__STATUS__UNSUPPORTED, text);
        break;
    }
}

/* A request, on the loop thread (sp_loop.c); -1: no context free. */
static int
storage_request(struct sp_conn *conn, const uint8_t *hdr, size_t hdrlen,
                const uint8_t *body, size_t len)
{
    struct sctx *c = ctx_take(&self);
    if (c == NULL)
        return -1;
    if (c->msg == NULL && nng_msg_alloc(&c->msg, 0) != 0) {
        bad_request(&self, "out of memory for a %zu-byte request: dropped",
                    len);
        ctx_put(c);
        return 0;
    }
    c->conn = conn;
    sp_conn_ref(conn);
    c->hdrlen = (uint8_t)hdrlen;
    memcpy(c->hdr, hdr, hdrlen);
    c->start_ns = metrics_now_ns();
    pthread_mutex_lock(&self.lock);
    self.inflight++;
    int stopping = self.stopping;
    pthread_mutex_unlock(&self.lock);
    if (stopping)
        reply_error(c, RZKV__STATUS__STOPPING, "storage worker is stopping");
    else
        handle_request(c, body, len);
    return 0;
}

/* ---- start and stop --------------------------------------------------- */

/* mkdir -p; 0 or -1 with errno. */
static int
make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST)
            return -1;
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/*
 * A socket file left by a dead worker is removed; one a live process
 * answers on means another worker holds this instance.
 */
static void
clear_stale_socket(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct stat st;

    if (lstat(path, &st) != 0)
        return;
    if (!S_ISSOCK(st.st_mode))
        fatalx_config("%s exists and is not a socket", path);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal("socket");
    int live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    if (live)
        fatalx("%s: another process is listening there", path);
    if (unlink(path) != 0 && errno != ENOENT)
        fatal("unlink stale socket %s", path);
    log_info("removed stale socket %s", path);
}

static void
storage_open_db(struct storage *sw, const struct node_conf *node)
{
    char path[4096], err[1024];

    if (make_dirs(node->data_dir) != 0)
        fatalx_config("cannot create data directory %s: %s", node->data_dir,
                      strerror(errno));
    snprintf(path, sizeof(path), RZKV_STORAGE_DB_FMT, node->data_dir,
             sw->instance);
    struct store_config cfg = {
        .path = path,
        .shard = sw->instance,
        .shard_count = node->storage_workers,
        .sync_full = node->durability == DURABILITY_FULL,
    };
    /*
     * A full or failing disk (or a locked file) may pass: wait for it
     * here, not serving, rather than exit and have the supervisor give
     * up on a worker that died ten times in a minute.  Anything else
     * needs an operator: exit 78, not restarted.
     */
    enum store_status st;
    unsigned waited_s = 0;
    while ((st = store_open(&cfg, &sw->store, err, sizeof(err))) ==
           STORE_E_ENV) {
        if (waited_s % STORAGE_OPEN_RETRY_LOG_S == 0)
            log_warnx("%s; trying again every second", err);
        if (worker_stop_pending()) {
            log_info("stopped while waiting for the database");
            exit(RZKV_EXIT_OK);
        }
        sleep(1);
        waited_s++;
    }
    if (st != STORE_OK)
        fatalx_config("%s", err);
    if (waited_s)
        log_notice("%s: opened after %u s of trying", path, waited_s);
    struct store_stats stats;
    store_stats(sw->store, &stats);
    if (stats.upgraded_from)
        log_notice("%s: upgraded from format %llu to %d", path,
                   (unsigned long long)stats.upgraded_from,
                   STORE_FORMAT_VERSION);
    log_info("%s: %llu entries, epoch %llu, durability %s", path,
             (unsigned long long)stats.entries,
             (unsigned long long)stats.epoch,
             cfg.sync_full ? "full (fsync at every commit)"
                           : "normal (no fsync at commit: a power loss may "
                             "lose the last acknowledged writes)");
}

static void
storage_listen(struct storage *sw, const struct node_conf *node)
{
    char url[4096];

    if (make_dirs(node->run_dir) != 0)
        fatalx_config("cannot create run directory %s: %s", node->run_dir,
                      strerror(errno));
    snprintf(url, sizeof(url), RZKV_STORAGE_IPC_FMT, node->run_dir,
             sw->instance);
    const char *path = url + strlen("ipc://");
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        fatalx_config("socket path %s is too long (node.run_dir)", path);
    clear_stale_socket(path);

    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
        listen(fd, STORAGE_BACKLOG) != 0)
        fatal("listen on %s", url);
    sw->listen_fd = fd;
    for (int i = STORAGE_CONTEXTS; i-- > 0;) {
        sw->ctxs[i].sw = sw;
        arena_init(&sw->ctxs[i].arena);
        ctx_put(&sw->ctxs[i]);
    }
    /* Larger messages close their connection before they are read. */
    sp_loop_listen(fd, 1, (size_t)sw->max_value + STORAGE_RECV_HEADROOM,
                   storage_request);
    log_info("listening on %s", url);
}

/* Answer what is in flight, commit what is queued, close everything. */
static void
storage_stop(struct storage *sw)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += STORAGE_STOP_WAIT_S;
    pthread_mutex_lock(&sw->lock);
    sw->stopping = 1;
    while (sw->inflight > 0)
        if (pthread_cond_timedwait(&sw->idle, &sw->lock, &deadline) != 0)
            break;
    if (sw->inflight > 0)
        log_warnx("%u requests still in flight after %d s", sw->inflight,
                  STORAGE_STOP_WAIT_S);
    sw->writer_quit = 1;
    pthread_cond_signal(&sw->work);
    pthread_mutex_unlock(&sw->lock);
    pthread_join(sw->writer, NULL);     /* commits anything still queued */
    pthread_mutex_lock(&sw->lock);
    sw->replier_quit = 1;
    pthread_cond_signal(&sw->replies);
    pthread_mutex_unlock(&sw->lock);
    pthread_join(sw->replier, NULL);    /* and answers it */

    sp_loop_stop();
    close(sw->listen_fd);
    for (int i = 0; i < STORAGE_CONTEXTS; i++) {
        ctx_release(&sw->ctxs[i]);
        arena_free(&sw->ctxs[i].arena);
        if (sw->ctxs[i].msg != NULL)
            nng_msg_free(sw->ctxs[i].msg);
        free(sw->ctxs[i].out);
        free(sw->ctxs[i].results);
    }
    store_close(sw->store);
    log_info("stopped");
}

/* This slot's counters file (metrics.h): kept counting across restarts. */
static void
storage_metrics_open(struct storage *sw, const struct node_conf *node)
{
    metrics_open(node->run_dir, ROLE_STORAGE, sw->instance);
    store_stats(sw->store, &sw->counted);
    metrics_set(&metrics->u.storage.epoch, sw->counted.epoch);
    metrics_set(&metrics->u.storage.entries, sw->counted.entries);
}

int
storage_main(const struct node_conf *node, const char *cluster_path,
             int instance)
{
    (void)cluster_path;         /* a shard needs no cluster view */

    worker_setup(ROLE_STORAGE, instance);
    if (instance < 0 || instance >= node->storage_workers)
        fatalx_config("instance %d out of range: node.storage_workers is %d",
                      instance, node->storage_workers);
    self.instance = instance;
    self.max_value = node->max_value_size;
    self.shards = (unsigned)node->storage_workers;
    pthread_mutex_init(&self.lock, NULL);
    pthread_mutex_init(&self.bad_lock, NULL);
    pthread_mutex_init(&self.free_lock, NULL);
    pthread_cond_init(&self.work, NULL);
    pthread_cond_init(&self.replies, NULL);
    pthread_cond_init(&self.idle, NULL);
    self.queue_tail = &self.queue_head;
    self.reply_tail = &self.reply_head;

    storage_open_db(&self, node);       /* new epoch committed here */
    storage_metrics_open(&self, node);
    sp_loop_init();
    if (pthread_create(&self.writer, NULL, writer_main, &self) != 0 ||
        pthread_create(&self.replier, NULL, replier_main, &self) != 0)
        fatalx("cannot start the writer threads");
    storage_listen(&self, node);
    worker_ready();

    for (;;) {
        switch (worker_wait_command()) {
        case WORKER_CMD_STOP:
            log_info("stopping");
            storage_stop(&self);
            return RZKV_EXIT_OK;
        case WORKER_CMD_RELOAD:
            log_debug("reload: nothing to reload in a storage worker");
            break;
        case WORKER_CMD_REPAIR:
            log_warnx("repair: a storage worker does not run anti-entropy");
            break;
        case WORKER_CMD_EOF:
            log_info("supervisor gone: exiting now");
            _exit(RZKV_EXIT_OK);
        }
    }
}

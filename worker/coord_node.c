/*
 * coord_node.c - the Node API as a peer sees this node: replica
 * operations split over the local storage workers, key listings and
 * worker info gathered from all of them.
 *
 * A NodeBatch from a peer coordinator is cut by ring_shard(key) into the
 * local storage dests (which batch again), and its answer is put back
 * together in the original order from the raw NodeResult records, which
 * are copied, never unpacked.  An operation whose storage worker is down
 * or late gets UNAVAILABLE; the others still get their results.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "coord.h"
#include "log.h"
#include "wire.h"

#define NODE_BATCH_MAX_OPS  65536
#define FWD_REPLY_SLACK     4096    /* Reply framing around the results */
#define LIST_DEFAULT_LIMIT  1000

/* ---- NodeBatch -------------------------------------------------------------- */

struct fwd {
    unsigned refs;
    struct srv *srv;
    nng_msg *msg;
    size_t n;
    uint8_t *opbuf;             /* the operations, packed back to back */
    struct { uint8_t *data; size_t len; } *res;
    struct dest_op dop[];
};

/* A NodeResult carrying only a status and message, packed. */
static void
fwd_error(struct fwd *f, size_t i, Rzkv__Status status, const char *fmt,
          ...) __attribute__((format(printf, 4, 5)));

static void
fwd_error(struct fwd *f, size_t i, Rzkv__Status status, const char *fmt,
          ...)
{
    Rzkv__NodeResult r = RZKV__NODE_RESULT__INIT;
    char text[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    r.status = status;
    r.message = text;
    free(f->res[i].data);
    f->res[i].len = rzkv__node_result__get_packed_size(&r);
    f->res[i].data = malloc(f->res[i].len ? f->res[i].len : 1);
    if (f->res[i].data == NULL)
        f->res[i].len = 0;      /* an empty result: status OK, sadly */
    else
        rzkv__node_result__pack(&r, f->res[i].data);
}

static void
fwd_free(struct fwd *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->res[i].data);
    free(f->res);
    free(f->opbuf);
    if (f->msg != NULL)
        nng_msg_free(f->msg);
    free(f);
}

static int
cmp_len_desc(const void *a, const void *b, void *arg)
{
    const struct fwd *f = arg;
    size_t x = f->res[*(const size_t *)a].len, y = f->res[*(const size_t *)b].len;
    return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Keep the reply under what the peer (and our front door) accepts: the
 * largest results give way to TOO_LARGE, which the asking coordinator
 * takes as "ask again alone" (one result always fits).  Returns the body
 * size.
 */
static size_t
fwd_fit(struct fwd *f, size_t body)
{
    size_t limit = coord.recvmax - FWD_REPLY_SLACK;
    size_t *order;

    if (body <= limit || f->n < 2 ||
        (order = malloc(f->n * sizeof(*order))) == NULL)
        return body;
    for (size_t i = 0; i < f->n; i++)
        order[i] = i;
    qsort_r(order, f->n, sizeof(*order), cmp_len_desc, f);
    for (size_t k = 0; k < f->n && body > limit; k++) {
        size_t i = order[k];
        body -= batch_record_len(BATCH_RESULTS, f->res[i].len);
        fwd_error(f, i, RZKV__STATUS__TOO_LARGE, "%s", FWD_RESEND_ALONE);
        body += batch_record_len(BATCH_RESULTS, f->res[i].len);
    }
    free(order);
    return body;
}

/* Every operation is back: put the reply together and send it. */
static void
fwd_finish(struct fwd *f)
{
    size_t body = 0;
    for (size_t i = 0; i < f->n; i++)
        body += batch_record_len(BATCH_RESULTS, f->res[i].len);
    body = fwd_fit(f, body);
    nng_msg_clear(f->msg);
    if (nng_msg_realloc(f->msg, batch_record_len(BATCH_REPLY_NODE, body))
        != 0) {
        srv_reply_error(f->srv, f->msg, RZKV__STATUS__INTERNAL,
                        "out of memory");
    } else {
        uint8_t *p = batch_put_header(nng_msg_body(f->msg),
                                      BATCH_REPLY_NODE, body);
        for (size_t i = 0; i < f->n; i++)
            p = batch_put_record(p, BATCH_RESULTS, f->res[i].data,
                                 f->res[i].len);
        srv_reply(f->srv, f->msg);
    }
    f->msg = NULL;
    coord.pending_replies--;
    fwd_free(f);
}

static void
fwd_unref(struct fwd *f)
{
    if (--f->refs == 0)
        fwd_finish(f);
}

static void
fwd_done(struct dest_op *op, const uint8_t *rec, size_t len, const char *err)
{
    struct fwd *f = op->arg;
    size_t i = (size_t)(op - f->dop);

    if (err != NULL) {
        fwd_error(f, i, RZKV__STATUS__UNAVAILABLE, "node %s: %s",
                  coord.node->id, err);
    } else if ((f->res[i].data = malloc(len ? len : 1)) == NULL) {
        fwd_error(f, i, RZKV__STATUS__INTERNAL, "out of memory");
    } else {
        memcpy(f->res[i].data, rec, len);
        f->res[i].len = len;
    }
    fwd_unref(f);
}

static const ProtobufCBinaryData *
op_key(const Rzkv__NodeOp *op)
{
    switch (op->op_case) {
    case RZKV__NODE_OP__OP_GET: return &op->get->key;
    case RZKV__NODE_OP__OP_SET:
        return op->set->entry ? &op->set->entry->key : NULL;
    case RZKV__NODE_OP__OP_CLOCK_GET: return &op->clock_get->key;
    case RZKV__NODE_OP__OP_CLOCK_SET: return &op->clock_set->key;
    case RZKV__NODE_OP__OP_PURGE: return &op->purge->key;
    default: return NULL;
    }
}

/* Pack every op once, back to back; the dest_ops point into the buffer. */
static int
fwd_pack(struct fwd *f, const Rzkv__NodeBatch *b)
{
    size_t total = 0;
    for (size_t i = 0; i < f->n; i++)
        total += rzkv__node_op__get_packed_size(b->ops[i]);
    if ((f->opbuf = malloc(total ? total : 1)) == NULL)
        return -1;
    uint8_t *p = f->opbuf;
    for (size_t i = 0; i < f->n; i++) {
        f->dop[i].op = p;
        f->dop[i].op_len = rzkv__node_op__pack(b->ops[i], p);
        p += f->dop[i].op_len;
    }
    return 0;
}

void
node_batch(struct srv *s, nng_msg *m, struct req *rq)
{
    const Rzkv__NodeBatch *b = rq->env->node;
    size_t n = b->n_ops;
    struct fwd *f = NULL;

    if (n > NODE_BATCH_MAX_OPS) {
        req_free(rq);
        coord_log_bad("NodeBatch of %zu operations refused", n);
        srv_reply_error(s, m, RZKV__STATUS__TOO_LARGE,
                        "%zu operations in one batch: the maximum is %d",
                        n, NODE_BATCH_MAX_OPS);
        return;
    }
    if ((f = calloc(1, sizeof(*f) + n * sizeof(f->dop[0]))) == NULL ||
        (f->res = calloc(n ? n : 1, sizeof(*f->res))) == NULL)
        goto nomem;
    f->n = n;
    f->srv = s;
    f->msg = m;
    if (fwd_pack(f, b) != 0)
        goto nomem;

    nng_mtx_lock(coord.lock);
    coord.stats.batches++;
    coord.stats.batch_ops += n;
    coord.pending_replies++;
    f->refs = 1;                /* until every op is submitted */
    nng_time deadline = nng_clock() +
                        (nng_time)coord.topo->conf->timeout_ms;
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *key = op_key(b->ops[i]);
        const char *why;
        if (key == NULL || key->len == 0 || key->len > RZKV_MAX_KEY) {
            fwd_error(f, i, RZKV__STATUS__INVALID,
                      key == NULL ? "operation without a key"
                                  : "key of %zu bytes: keys are 1..%d bytes",
                      key ? key->len : 0, RZKV_MAX_KEY);
            continue;
        }
        unsigned shard = ring_shard(key->data, key->len, coord.shards);
        struct dest_op *op = &f->dop[i];
        op->deadline = deadline;
        op->done = fwd_done;
        op->arg = f;
        if (dest_submit(coord.shard[shard], op, &why) != 0) {
            fwd_error(f, i, RZKV__STATUS__UNAVAILABLE, "node %s: %s: %s",
                      coord.node->id, dest_name(coord.shard[shard]), why);
            continue;
        }
        f->refs++;
    }
    req_free(rq);
    fwd_unref(f);
    nng_mtx_unlock(coord.lock);
    return;
nomem:
    if (f != NULL) {
        f->msg = NULL;
        fwd_free(f);
    }
    req_free(rq);
    srv_reply_error(s, m, RZKV__STATUS__INTERNAL, "out of memory");
}

/* ---- gathering from every storage worker ------------------------------------ */

struct gather;
typedef void (*gather_fn)(struct gather *g);

struct gather {
    struct srv *srv;
    nng_msg *msg;
    struct req *rq;             /* the request, sent to every shard */
    gather_fn finish;
    unsigned pending;
    Rzkv__Reply **replies;      /* per shard, NULL if it failed */
    char **errors;              /* per shard, why it failed */
};

static void
gather_free(struct gather *g)
{
    for (unsigned i = 0; i < coord.shards; i++) {
        if (g->replies[i] != NULL)
            rzkv__reply__free_unpacked(g->replies[i], NULL);
        free(g->errors[i]);
    }
    free(g->replies);
    free(g->errors);
    if (g->rq != NULL)
        req_free(g->rq);
    if (g->msg != NULL)
        nng_msg_free(g->msg);
    free(g);
}

static void
gather_unref(struct gather *g)
{
    if (--g->pending > 0)
        return;
    g->finish(g);
    coord.pending_replies--;
    gather_free(g);
}

/* A dest_call's answer; the shard is found by its slot in the array. */
struct gather_arg {
    struct gather *g;
    unsigned shard;
};

static void
gather_done(void *arg, nng_msg *reply, const char *err)
{
    struct gather_arg *a = arg;
    struct gather *g = a->g;
    unsigned i = a->shard;
    char text[256];

    free(a);
    if (reply != NULL) {
        Rzkv__Reply *r = wire_unpack_reply(reply);
        nng_msg_free(reply);
        if (r == NULL) {
            err = "malformed reply";
        } else if (r->status != RZKV__STATUS__OK) {
            snprintf(text, sizeof(text), "%s: %s",
                     wire_status_str(r->status), r->message);
            rzkv__reply__free_unpacked(r, NULL);
            err = text;
        } else {
            g->replies[i] = r;
        }
    }
    if (err != NULL) {
        char buf[300];
        snprintf(buf, sizeof(buf), "%s: %s", dest_name(coord.shard[i]), err);
        g->errors[i] = strdup(buf);
    }
    gather_unref(g);
}

/* Send the request (m's bytes) to every shard; finish runs when all
 * answered.  Consumes m and rq. */
static void
gather_start(struct srv *s, nng_msg *m, struct req *rq, gather_fn fn)
{
    struct gather *g = calloc(1, sizeof(*g));

    if (g == NULL ||
        (g->replies = calloc(coord.shards, sizeof(*g->replies))) == NULL ||
        (g->errors = calloc(coord.shards, sizeof(*g->errors))) == NULL) {
        if (g != NULL)
            free(g->replies);
        free(g);
        req_free(rq);
        srv_reply_error(s, m, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    g->srv = s;
    g->msg = m;
    g->rq = rq;
    g->finish = fn;
    nng_mtx_lock(coord.lock);
    coord.pending_replies++;
    g->pending = 1;
    nng_duration timeout = coord.topo->conf->timeout_ms;
    for (unsigned i = 0; i < coord.shards; i++) {
        struct gather_arg *a = malloc(sizeof(*a));
        nng_msg *dup = NULL;
        const char *why = "out of memory";
        if (a != NULL && nng_msg_dup(&dup, m) == 0) {
            a->g = g;
            a->shard = i;
            if (dest_call(coord.shard[i], dup, timeout, gather_done, a,
                          &why) == 0) {
                g->pending++;
                continue;
            }
        } else if (dup != NULL) {
            nng_msg_free(dup);
        }
        free(a);
        char buf[300];
        snprintf(buf, sizeof(buf), "%s: %s", dest_name(coord.shard[i]), why);
        g->errors[i] = strdup(buf);
    }
    gather_unref(g);
    nng_mtx_unlock(coord.lock);
}

/* The first shard error, for messages. */
static const char *
gather_error(const struct gather *g)
{
    for (unsigned i = 0; i < coord.shards; i++)
        if (g->errors[i] != NULL)
            return g->errors[i];
    return NULL;
}

/* ---- ListKeys --------------------------------------------------------------- */

int
list_key_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->data, b->data, n) : 0;
    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int
entry_cmp(const void *a, const void *b)
{
    const Rzkv__Entry *const *x = a, *const *y = b;
    return list_key_cmp(&(*x)->key, &(*y)->key);
}

/*
 * Merge the shards' pages.  Each shard returned its first keys from
 * start_key on, and next_key (its first key not returned) if it has more.
 * The merged page stops before the smallest of: every shard's next_key,
 * and the (limit+1)-th key overall; everything before that point has
 * been returned by its shard, so nothing is skipped, and the page holds
 * at most limit keys.
 */
int
list_merge(Rzkv__Reply *const *replies, unsigned n, size_t limit,
           struct list_page *page)
{
    size_t total = 0;

    for (unsigned i = 0; i < n; i++)
        if (replies[i]->body_case == RZKV__REPLY__BODY_LIST_KEYS)
            total += replies[i]->list_keys->n_entries;
    page->entries = calloc(total ? total : 1, sizeof(*page->entries));
    if (page->entries == NULL)
        return -1;
    const ProtobufCBinaryData *stop = NULL;
    Rzkv__Entry **all = page->entries;
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        const Rzkv__Reply *r = replies[i];
        if (r->body_case != RZKV__REPLY__BODY_LIST_KEYS)
            continue;
        for (size_t j = 0; j < r->list_keys->n_entries; j++)
            all[k++] = r->list_keys->entries[j];
        const ProtobufCBinaryData *nk = &r->list_keys->next_key;
        if (nk->len > 0 && (stop == NULL || list_key_cmp(nk, stop) < 0))
            stop = nk;
    }
    qsort(all, k, sizeof(*all), entry_cmp);
    if (k > limit &&
        (stop == NULL || list_key_cmp(&all[limit]->key, stop) < 0))
        stop = &all[limit]->key;
    size_t take = 0;
    while (take < k &&
           (stop == NULL || list_key_cmp(&all[take]->key, stop) < 0))
        take++;
    page->n = take;
    page->next = stop;
    return 0;
}

static void
list_finish(struct gather *g)
{
    const char *err = gather_error(g);
    size_t limit = g->rq->env->list_keys->limit;
    struct list_page page;

    if (err != NULL) {
        srv_reply_error(g->srv, g->msg, RZKV__STATUS__UNAVAILABLE,
                        "listing incomplete: %s", err);
        g->msg = NULL;
        return;
    }
    if (limit == 0)
        limit = LIST_DEFAULT_LIMIT;
    if (list_merge(g->replies, coord.shards, limit, &page) != 0) {
        srv_reply_error(g->srv, g->msg, RZKV__STATUS__INTERNAL,
                        "out of memory");
        g->msg = NULL;
        return;
    }

    Rzkv__Reply reply = RZKV__REPLY__INIT;
    Rzkv__ListKeysReply lk = RZKV__LIST_KEYS_REPLY__INIT;
    lk.n_entries = page.n;
    lk.entries = page.entries;
    if (page.next != NULL)
        lk.next_key = *page.next;
    reply.body_case = RZKV__REPLY__BODY_LIST_KEYS;
    reply.list_keys = &lk;
    if (wire_pack_into(g->msg, &reply.base) != 0)
        wire_pack_error(g->msg, RZKV__STATUS__INTERNAL, "out of memory");
    free(page.entries);
    srv_reply(g->srv, g->msg);
    g->msg = NULL;
}

void
node_list_keys(struct srv *s, nng_msg *m, struct req *rq)
{
    gather_start(s, m, rq, list_finish);
}

/* ---- NodeInfo --------------------------------------------------------------- */

static void
info_finish(struct gather *g)
{
    size_t total = 1;
    for (unsigned i = 0; i < coord.shards; i++)
        if (g->replies[i] != NULL &&
            g->replies[i]->body_case == RZKV__REPLY__BODY_NODE_INFO)
            total += g->replies[i]->node_info->n_workers;
    Rzkv__WorkerInfo **all = calloc(total, sizeof(*all));
    if (all == NULL) {
        srv_reply_error(g->srv, g->msg, RZKV__STATUS__INTERNAL,
                        "out of memory");
        g->msg = NULL;
        return;
    }
    Rzkv__WorkerInfo me = RZKV__WORKER_INFO__INIT;
    me.role = (char *)ROLE_COORDINATOR;
    me.instance = (uint32_t)coord.instance;
    me.requests = coord.stats.requests;
    struct dest_stats ds;
    for (unsigned i = 0; i < coord.shards; i++) {
        dest_get_stats(coord.shard[i], &ds);
        me.batches_sent += ds.messages;
        me.ops_sent += ds.ops;
    }
    for (size_t i = 0; i < coord.npeers; i++) {
        dest_get_stats(coord.peers[i].dest, &ds);
        me.batches_sent += ds.messages;
        me.ops_sent += ds.ops;
    }
    size_t k = 0;
    all[k++] = &me;
    for (unsigned i = 0; i < coord.shards; i++) {
        const Rzkv__Reply *r = g->replies[i];
        if (r == NULL || r->body_case != RZKV__REPLY__BODY_NODE_INFO)
            continue;
        for (size_t j = 0; j < r->node_info->n_workers; j++)
            all[k++] = r->node_info->workers[j];
    }
    Rzkv__Reply reply = RZKV__REPLY__INIT;
    Rzkv__NodeInfoReply ni = RZKV__NODE_INFO_REPLY__INIT;
    const char *err = gather_error(g);
    char text[400];
    ni.n_workers = k;
    ni.workers = all;
    if (err != NULL) {
        /* Still OK: the workers that answered are worth showing. */
        snprintf(text, sizeof(text), "incomplete: %s", err);
        reply.message = text;
    }
    reply.body_case = RZKV__REPLY__BODY_NODE_INFO;
    reply.node_info = &ni;
    if (wire_pack_into(g->msg, &reply.base) != 0)
        wire_pack_error(g->msg, RZKV__STATUS__INTERNAL, "out of memory");
    free(all);
    srv_reply(g->srv, g->msg);
    g->msg = NULL;
}

void
node_info(struct srv *s, nng_msg *m, struct req *rq)
{
    gather_start(s, m, rq, info_finish);
}

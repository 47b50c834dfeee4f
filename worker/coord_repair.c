/*
 * coord_repair.c - anti-entropy: re-replication between a node and its
 * peers.  Coordinator 0 of every node runs it on a thread of its own.
 *
 * Every node.anti_entropy_interval_ms, a pass walks this node's keys in
 * key order, a page at a time (tombstones included):
 *
 *   1. list a page of local keys, merged over the storage workers;
 *   2. list every peer's keys in the same key range (its pages, until
 *      the range is done);
 *   3. for each local key, and each other replica the key's placement
 *      names: if that replica lacks the key or holds an older stamp,
 *      read the local entry (with its value) and send it there as a
 *      ReplicaSet.
 *
 * Only pushes, never pulls: what this node lacks, a peer holding it
 * pushes on its own pass.  A ReplicaSet is applied only if newer, so a
 * push racing a client's write can never undo it, and the stamp (hence
 * the clock raise) travels with the entry.  A peer that can't be listed
 * or written is skipped for that page and counted as a failure; the next
 * pass tries again.  A node that lost its disk, or missed writes while
 * it was down, so gets back every key it should hold within a pass of
 * each peer that holds it.
 *
 * The pass uses the coordinator's own dests (dest.c), so it shares their
 * connections and batching; it waits on a condition variable under
 * coord.lock, which the dests' callbacks take.  After each page it
 * pauses as long as the page took (at least AE_PAGE_PAUSE_MS): a pass
 * keeps the processes it lists busy at most half of its time, and
 * yields more to clients the slower they make it.
 *
 * Tombstones are copied like any entry and never purged here (rzkv(7),
 * DELETES AND TOMBSTONES).
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "coord.h"
#include "log.h"
#include "metrics.h"
#include "stamp.h"
#include "wire.h"

#define AE_PAGE_KEYS        256     /* local keys a page: a listing
                                     * holds up the storage worker's
                                     * loop thread, keep it short */
#define AE_FETCH_KEYS       32      /* entries read and pushed at once */
#define AE_PAGE_PAUSE_MS    5       /* between pages, at least */

static struct {
    pthread_t thread;
    nng_cv *cv;                 /* with coord.lock */
    int running;
    int stop;
    unsigned pending;           /* calls and ops not completed yet */
} ae;

/* The counts of one pass, for its log line and the metrics. */
struct ae_pass {
    uint64_t keys, pushed, failures;
    const char *first_failure;  /* a dest name, for the log */
};

/* ---- waiting for the dests ------------------------------------------------ */

static void
ae_wait_all(void)
{
    while (ae.pending > 0)
        nng_cv_wait(ae.cv);
}

/* A ListKeys call's answer. */
struct ae_call {
    Rzkv__Reply *reply;         /* a LIST_KEYS reply, or NULL */
    char err[256];
};

static void
ae_call_done(void *arg, nng_msg *reply, const char *err)
{
    struct ae_call *c = arg;

    if (reply != NULL) {
        Rzkv__Reply *r = wire_unpack_reply(reply);
        nng_msg_free(reply);
        if (r == NULL)
            snprintf(c->err, sizeof(c->err), "malformed reply");
        else if (r->status != RZKV__STATUS__OK)
            snprintf(c->err, sizeof(c->err), "%s: %s",
                     wire_status_str(r->status), r->message);
        else if (r->body_case != RZKV__REPLY__BODY_LIST_KEYS)
            snprintf(c->err, sizeof(c->err), "not a key listing");
        else
            c->reply = r, r = NULL;
        if (r != NULL)
            rzkv__reply__free_unpacked(r, NULL);
    } else {
        snprintf(c->err, sizeof(c->err), "%s", err);
    }
    ae.pending--;
    nng_cv_wake(ae.cv);
}

/* Ask d for its keys in [start, end) (end NULL: no bound); the answer
 * lands in c once ae_wait_all() returns. */
static void
ae_list(struct dest *d, const ProtobufCBinaryData *start,
        const ProtobufCBinaryData *end, struct ae_call *c)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__ListKeys lk = RZKV__LIST_KEYS__INIT;
    const char *why = "out of memory";

    memset(c, 0, sizeof(*c));
    lk.start_key = *start;
    if (end != NULL)
        lk.end_key = *end;
    lk.limit = AE_PAGE_KEYS;
    lk.include_tombstones = true;
    env.msg_case = RZKV__ENVELOPE__MSG_LIST_KEYS;
    env.list_keys = &lk;
    nng_msg *m = wire_pack(&env.base);
    if (m != NULL &&
        dest_call(d, m, coord.topo->conf->timeout_ms, ae_call_done, c,
                  &why) == 0) {
        ae.pending++;
        return;
    }
    snprintf(c->err, sizeof(c->err), "%s", why);
}

/* A replica operation of the pass and its result. */
struct ae_op {
    struct dest_op dop;
    struct dest *dest;
    uint8_t *buf;               /* the packed NodeOp */
    Rzkv__NodeResult *res;      /* its result, or NULL */
    char err[128];
};

static void
ae_op_done(struct dest_op *dop, const uint8_t *rec, size_t len,
           const char *err)
{
    struct ae_op *o = dop->arg;
    const char *why;

    if (err == NULL) {
        o->res = rzkv__node_result__unpack(NULL, len, rec);
        if (o->res == NULL)
            err = "malformed result";
    }
    if (o->res != NULL && o->res->status == RZKV__STATUS__TOO_LARGE &&
        !dop->alone) {
        /* It didn't fit in a batch's reply: ask again, alone. */
        rzkv__node_result__free_unpacked(o->res, NULL);
        o->res = NULL;
        dop->alone = 1;
        dop->deadline = nng_clock() + coord.topo->conf->timeout_ms;
        if (dest_submit(o->dest, dop, &why) == 0)
            return;
        err = why;
    }
    if (err != NULL)
        snprintf(o->err, sizeof(o->err), "%s", err);
    ae.pending--;
    nng_cv_wake(ae.cv);
}

/* Pack op into o and send it to d; a refusal is recorded in o->err. */
static void
ae_submit(struct ae_op *o, const Rzkv__NodeOp *op, struct dest *d)
{
    const char *why = "out of memory";
    size_t len = rzkv__node_op__get_packed_size(op);

    o->dest = d;
    if ((o->buf = malloc(len ? len : 1)) != NULL) {
        rzkv__node_op__pack(op, o->buf);
        o->dop.op = o->buf;
        o->dop.op_len = len;
        o->dop.deadline = nng_clock() + coord.topo->conf->timeout_ms;
        o->dop.done = ae_op_done;
        o->dop.arg = o;
        o->dop.alone = 0;
        if (d != NULL && dest_submit(d, &o->dop, &why) == 0) {
            ae.pending++;
            return;
        }
        if (d == NULL)
            why = "no such node";
    }
    snprintf(o->err, sizeof(o->err), "%s", why);
}

static void
ae_ops_free(struct ae_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ops[i].buf);
        if (ops[i].res != NULL)
            rzkv__node_result__free_unpacked(ops[i].res, NULL);
    }
    free(ops);
}

static void
ae_failed(struct ae_pass *pass, const char *what)
{
    pass->failures++;
    if (pass->first_failure == NULL)
        pass->first_failure = what;
}

/* ---- one page ----------------------------------------------------------- */

/* A peer's keys in the page's range, in key order, over its pages. */
struct ae_peer {
    Rzkv__Reply **replies;
    size_t nreplies;
    Rzkv__Entry **e;
    size_t n, cap;
    size_t pos;                 /* compare cursor */
    int failed;
};

static void
ae_peer_free(struct ae_peer *p)
{
    for (size_t i = 0; i < p->nreplies; i++)
        rzkv__reply__free_unpacked(p->replies[i], NULL);
    free(p->replies);
    free(p->e);
}

/* Append one page of a peer's listing; 0, or -1 out of memory. */
static int
ae_peer_add(struct ae_peer *p, Rzkv__Reply *r)
{
    Rzkv__ListKeysReply *lk = r->list_keys;
    Rzkv__Reply **nr = realloc(p->replies,
                               (p->nreplies + 1) * sizeof(*nr));
    if (nr == NULL)
        return -1;
    p->replies = nr;
    p->replies[p->nreplies++] = r;
    if (p->n + lk->n_entries > p->cap) {
        size_t cap = p->cap ? p->cap : 1024;
        while (cap < p->n + lk->n_entries)
            cap *= 2;
        Rzkv__Entry **ne = realloc(p->e, cap * sizeof(*ne));
        if (ne == NULL)
            return -1;
        p->e = ne;
        p->cap = cap;
    }
    if (lk->n_entries > 0)
        memcpy(p->e + p->n, lk->entries, lk->n_entries * sizeof(*p->e));
    p->n += lk->n_entries;
    return 0;
}

/* List all of peer d's keys in [start, end) into p.  Lock held. */
static void
ae_peer_list(struct dest *d, const ProtobufCBinaryData *start,
             const ProtobufCBinaryData *end, struct ae_peer *p,
             struct ae_pass *pass)
{
    ProtobufCBinaryData from = *start;
    struct ae_call c;

    for (;;) {
        ae_list(d, &from, end, &c);
        ae_wait_all();
        if (c.reply == NULL || ae_peer_add(p, c.reply) != 0) {
            if (c.reply != NULL)
                rzkv__reply__free_unpacked(c.reply, NULL);
            log_debug("anti-entropy: listing %s: %s", dest_name(d),
                      c.reply != NULL ? "out of memory" : c.err);
            p->failed = 1;
            ae_failed(pass, dest_name(d));
            return;
        }
        const ProtobufCBinaryData *next = &c.reply->list_keys->next_key;
        if (next->len == 0 || (end != NULL && list_key_cmp(next, end) >= 0)
            || list_key_cmp(next, &from) <= 0 || ae.stop)
            return;
        from = *next;           /* lives in p->replies */
    }
}

static struct stamp
ae_stamp(const Rzkv__Entry *e)
{
    static const struct stamp none;
    return e->stamp != NULL ? wire_stamp_view(e->stamp) : none;
}

/* A copy to make: local entry e to node `node`. */
struct ae_push {
    const Rzkv__Entry *e;
    size_t node;
};

/*
 * Which other replicas of the page's keys lack them or hold them older.
 * Runs without the lock: the page and the listings are the pass's own,
 * the view is referenced.  Returns how many pushes were written to out
 * (room for page->n * (replica_count - 1)).
 */
static size_t
ae_compare(const struct topo *t, const struct list_page *page,
           struct ae_peer *peers, struct ae_push *out)
{
    size_t want = (size_t)t->conf->replica_count, npush = 0;
    size_t nodes[QUORUM_MAX_REPLICAS];

    for (size_t k = 0; k < page->n; k++) {
        const Rzkv__Entry *e = page->entries[k];
        size_t n = ring_locate(&t->ring, e->key.data, e->key.len, want,
                               nodes);
        for (size_t r = 0; r < n; r++) {
            struct ae_peer *p = &peers[nodes[r]];
            if ((int)nodes[r] == t->self || p->failed)
                continue;
            while (p->pos < p->n &&
                   list_key_cmp(&p->e[p->pos]->key, &e->key) < 0)
                p->pos++;
            const Rzkv__Entry *held = NULL;
            if (p->pos < p->n &&
                list_key_cmp(&p->e[p->pos]->key, &e->key) == 0)
                held = p->e[p->pos];
            struct stamp mine = ae_stamp(e);
            struct stamp theirs = mine;
            if (held != NULL)
                theirs = ae_stamp(held);
            if (held == NULL || stamp_cmp(&mine, &theirs) > 0) {
                out[npush].e = e;
                out[npush].node = nodes[r];
                npush++;
            }
        }
    }
    return npush;
}

/*
 * Make the copies: read each key's entry (with its value) from the local
 * storage worker, then send it as a ReplicaSet to the replicas that lack
 * it, AE_FETCH_KEYS keys at a time.  Lock held.
 */
static void
ae_push_all(const struct topo *t, const struct ae_push *push, size_t npush,
            struct ae_pass *pass)
{
    size_t i = 0;

    while (i < npush && !ae.stop) {
        /* [i, j): the pushes of the next AE_FETCH_KEYS keys */
        size_t j = i, nkeys = 0;
        while (j < npush) {
            int new_key = j == i || push[j].e != push[j - 1].e;
            if (new_key && nkeys == AE_FETCH_KEYS)
                break;
            nkeys += (size_t)new_key;
            j++;
        }
        struct ae_op *get = calloc(nkeys, sizeof(*get));
        struct ae_op *set = calloc(j - i, sizeof(*set));
        if (get == NULL || set == NULL) {
            free(get);
            free(set);
            ae_failed(pass, "out of memory");
            return;
        }
        size_t g = 0;
        for (size_t x = i; x < j; x++) {
            if (x > i && push[x].e == push[x - 1].e)
                continue;
            Rzkv__ReplicaGet rg = RZKV__REPLICA_GET__INIT;
            Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
            rg.key = push[x].e->key;
            op.op_case = RZKV__NODE_OP__OP_GET;
            op.get = &rg;
            ae_submit(&get[g++], &op, coord.shard[ring_shard(
                rg.key.data, rg.key.len, coord.shards)]);
        }
        ae_wait_all();
        g = 0;
        for (size_t x = i; x < j; x++) {
            if (x > i && push[x].e != push[x - 1].e)
                g++;
            const struct ae_op *got = &get[g];
            if (got->res == NULL || got->res->status != RZKV__STATUS__OK ||
                got->res->entry == NULL) {
                /* Gone since it was listed (or the read failed): the
                 * next pass sees what is there then. */
                if (got->res == NULL ||
                    got->res->status != RZKV__STATUS__NOT_FOUND)
                    ae_failed(pass, dest_name(got->dest));
                continue;
            }
            Rzkv__ReplicaSet rs = RZKV__REPLICA_SET__INIT;
            Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
            rs.entry = got->res->entry;
            op.op_case = RZKV__NODE_OP__OP_SET;
            op.set = &rs;
            ae_submit(&set[x - i], &op, t->dest[push[x].node]);
        }
        ae_wait_all();
        for (size_t x = i; x < j; x++) {
            const struct ae_op *s = &set[x - i];
            if (s->dest == NULL)
                continue;               /* not sent: nothing to send */
            if (s->res != NULL && s->res->status == RZKV__STATUS__OK) {
                if (s->res->applied)
                    pass->pushed++;
            } else {
                log_debug("anti-entropy: copy to %s: %s", dest_name(s->dest),
                          s->res != NULL ? s->res->message : s->err);
                ae_failed(pass, dest_name(s->dest));
            }
        }
        ae_ops_free(get, nkeys);
        ae_ops_free(set, j - i);
        i = j;
    }
}

/*
 * One page from *start (a key, empty: the first): returns 1 with *start
 * set to the next page's first key, 0 after the last page, -1 if the
 * local listing failed.  Lock held.
 */
static int
ae_page(const struct topo *t, ProtobufCBinaryData *start,
        struct ae_pass *pass)
{
    size_t nn = t->conf->node_count;
    struct ae_call *local = calloc(coord.shards, sizeof(*local));
    Rzkv__Reply **replies = calloc(coord.shards, sizeof(*replies));
    struct ae_peer *peers = calloc(nn, sizeof(*peers));
    struct list_page page = { NULL, 0, NULL };
    struct ae_push *push = NULL;
    int rv = -1;

    if (local == NULL || replies == NULL || peers == NULL)
        goto out;
    for (unsigned i = 0; i < coord.shards; i++)
        ae_list(coord.shard[i], start, NULL, &local[i]);
    ae_wait_all();
    for (unsigned i = 0; i < coord.shards; i++) {
        if (local[i].reply == NULL) {
            log_warnx("anti-entropy: listing %s: %s; pass abandoned",
                      dest_name(coord.shard[i]), local[i].err);
            ae_failed(pass, dest_name(coord.shard[i]));
            goto out;
        }
        replies[i] = local[i].reply;
    }
    if (list_merge(replies, coord.shards, AE_PAGE_KEYS, &page) != 0)
        goto out;
    for (size_t j = 0; j < nn && !ae.stop; j++)
        if ((int)j != t->self && page.n > 0)
            ae_peer_list(t->dest[j], start, page.next, &peers[j], pass);

    size_t room = page.n * (size_t)t->conf->replica_count;
    if ((push = calloc(room ? room : 1, sizeof(*push))) == NULL)
        goto out;
    nng_mtx_unlock(coord.lock);
    size_t npush = ae_compare(t, &page, peers, push);
    nng_mtx_lock(coord.lock);
    ae_push_all(t, push, npush, pass);
    pass->keys += page.n;

    rv = 0;
    if (page.next != NULL) {
        uint8_t *copy = malloc(page.next->len);
        if (copy == NULL) {
            rv = -1;
            goto out;
        }
        memcpy(copy, page.next->data, page.next->len);
        free(start->data);
        start->data = copy;
        start->len = page.next->len;
        rv = 1;
    }
out:
    if (rv < 0 && pass->first_failure == NULL)
        ae_failed(pass, "out of memory");
    free(push);
    free(page.entries);
    for (size_t j = 0; peers != NULL && j < nn; j++)
        ae_peer_free(&peers[j]);
    free(peers);
    for (unsigned i = 0; local != NULL && i < coord.shards; i++)
        if (local[i].reply != NULL)
            rzkv__reply__free_unpacked(local[i].reply, NULL);
    free(local);
    free(replies);
    return rv;
}

/* ---- the pass and its thread ---------------------------------------------- */

static void
ae_pass(const struct topo *t)
{
    struct ae_pass pass = { 0, 0, 0, NULL };
    ProtobufCBinaryData start = { 0, NULL };
    nng_time began = nng_clock();
    int rv;

    for (;;) {
        nng_time page_began = nng_clock();
        if ((rv = ae_page(t, &start, &pass)) != 1 || ae.stop)
            break;
        nng_time took = nng_clock() - page_began;
        nng_time until = nng_clock() +
                         (took > AE_PAGE_PAUSE_MS ? took : AE_PAGE_PAUSE_MS);
        while (!ae.stop && nng_clock() < until)
            nng_cv_until(ae.cv, until);
    }
    free(start.data);
    metrics_add(&metrics->u.coord.antientropy_keys, pass.keys);
    metrics_add(&metrics->u.coord.antientropy_pushed, pass.pushed);
    metrics_add(&metrics->u.coord.antientropy_failures, pass.failures);
    if (rv == 0)
        metrics_add(&metrics->u.coord.antientropy_passes, 1);
    if (ae.stop)
        return;
    double secs = (double)(nng_clock() - began) / 1000.0;
    if (pass.pushed > 0 || pass.failures > 0)
        log_info("anti-entropy %s: %llu keys compared, %llu copies pushed, "
                 "%llu failures%s%s%s, %.1f s",
                 rv == 0 ? "pass" : "pass abandoned",
                 (unsigned long long)pass.keys,
                 (unsigned long long)pass.pushed,
                 (unsigned long long)pass.failures,
                 pass.first_failure ? " (first: " : "",
                 pass.first_failure ? pass.first_failure : "",
                 pass.first_failure ? ")" : "", secs);
    else
        log_debug("anti-entropy pass: %llu keys compared, all replicas "
                  "current, %.1f s", (unsigned long long)pass.keys, secs);
}

static void *
repair_main(void *arg)
{
    nng_duration interval = coord.node->anti_entropy_interval_ms;
    (void)arg;

    nng_mtx_lock(coord.lock);
    nng_time next = nng_clock() + interval;
    while (!ae.stop) {
        if (nng_clock() < next) {
            nng_cv_until(ae.cv, next);
            continue;
        }
        struct topo *t = coord.topo;
        topo_ref(t);
        ae_pass(t);
        topo_unref(t);
        next = nng_clock() + interval;
    }
    nng_mtx_unlock(coord.lock);
    return NULL;
}

void
repair_start(void)
{
    int rv;

    if (coord.instance != 0 || coord.node->anti_entropy_interval_ms <= 0)
        return;
    if ((rv = nng_cv_alloc(&ae.cv, coord.lock)) != 0)
        fatalx("nng_cv_alloc: %s", nng_strerror(rv));
    if ((rv = pthread_create(&ae.thread, NULL, repair_main, NULL)) != 0)
        fatalx("pthread_create: %s", strerror(rv));
    ae.running = 1;
    log_info("anti-entropy every %d ms", coord.node->anti_entropy_interval_ms);
}

void
repair_stop(void)
{
    if (!ae.running)
        return;
    nng_mtx_lock(coord.lock);
    ae.stop = 1;
    nng_cv_wake(ae.cv);
    nng_mtx_unlock(coord.lock);
    pthread_join(ae.thread, NULL);
    ae.running = 0;
}

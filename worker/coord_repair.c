/*
 * coord_repair.c - anti-entropy: re-replication between a node and its
 * peers.  Coordinator 0 of every node runs it on a thread of its own.
 *
 * Every node.anti_entropy_interval_ms, and at once after a reload that
 * moved keys or on rzkvctl repair (repair_soon), a pass walks this node's
 * keys in key order, a step at a time (tombstones included):
 *
 *   1. list a page of local keys, merged over the storage workers;
 *   2. list a page of the same key range from every peer listed after
 *      this node in the cluster file; the step ends where the first of
 *      these pages does;
 *   3. for each key in the range held by this node or such a peer, where
 *      both are replicas by the key's placement: if one of them holds an
 *      older stamp, or lacks a value the other holds, read the entry
 *      (with its value) where it is newer and send it to the other as a
 *      ReplicaSet.  A tombstone is not copied to a replica that lacks the
 *      key: there is nothing there for it to hide, and copying it back
 *      would undo purges (below).
 *
 * So each pair of nodes is compared by one of them, the one listed first,
 * and copies flow both ways: the last node of the file only answers.  A
 * ReplicaSet is applied only if newer, so a copy racing a client's write
 * can never undo it, and the stamp (hence the clock raise) travels with
 * the entry.  A peer that can't be listed or written is skipped for that
 * step and counted as a failure; the next pass tries again.  A node that
 * lost its disk, or missed writes while it was down, so gets back every
 * key it should hold within a pass of each peer.
 *
 * The pass uses the coordinator's own dests (dest.c), so it shares their
 * connections and batching; it waits on a condition variable under
 * coord.lock, which the dests' callbacks take.  After each step it
 * pauses as long as the step took (at least AE_STEP_PAUSE_MS): a pass
 * keeps the processes it lists busy at most half of its time, and
 * yields more to clients the slower they make it.
 *
 * A step also purges tombstones: a tombstone is removed from every
 * replica of its key once each of them either holds it, with the same
 * stamp, for node.tombstone_purge_delay_ms or longer, or holds nothing
 * for the key.  The node that checks is the key's first replica in the
 * cluster file, which lists all the others in its steps; each replica
 * checks stamp and age again before it removes the row (ReplicaPurge).
 * Why that is safe, and what the delay is for: rzkv(7), DELETES AND
 * TOMBSTONES.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "coord.h"
#include "log.h"
#include "metrics.h"
#include "stamp.h"
#include "wire.h"

#define AE_PAGE_KEYS        256     /* keys a page: a listing
                                     * holds up the storage worker's
                                     * loop thread, keep it short */
#define AE_FETCH_KEYS       32      /* entries read and copied at once */
#define AE_STEP_PAUSE_MS    5       /* between steps, at least */

static struct {
    pthread_t thread;
    nng_cv *cv;                 /* with coord.lock */
    int running;
    int stop;
    unsigned pending;           /* calls and ops not completed yet */
    int soon;                   /* pass now, not at the interval */
} ae;

/* The counts of one pass, for its log line and the metrics. */
struct ae_pass {
    uint64_t keys, copied, purged, failures;
    uint64_t kept;              /* tombstones judged and not purged yet */
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

/* Did write o (a copy or a purge) take effect?  A failure is counted. */
static int
ae_applied(const struct ae_op *o, const char *what, struct ae_pass *pass)
{
    if (o->res != NULL && o->res->status == RZKV__STATUS__OK)
        return o->res->applied != 0;
    log_debug("anti-entropy: %s at %s: %s", what,
              o->dest ? dest_name(o->dest) : "?",
              o->res != NULL ? o->res->message : o->err);
    ae_failed(pass, o->dest ? dest_name(o->dest) : what);
    return 0;
}

/* ---- one step: a key range, this node against its peers ----------------- */

/* A copy to make: the key's newer version, from one replica to the other. */
struct ae_copy {
    const ProtobufCBinaryData *key;
    size_t peer;                /* node index of the other replica */
    int pull;                   /* 1: from the peer to here; 0: to it */
};

/* Does node `node` hold a replica of key, by the view's placement?  (While
 * nodes join or leave: by the placement before the change or after it, so
 * that a pass copies each key to its new replicas.) */
static int
ae_is_replica(const struct topo *t, const ProtobufCBinaryData *key,
              size_t node)
{
    size_t nodes[QUORUM_MAX_REPLICAS];
    size_t n = topo_replicas(t, key->data, key->len, nodes, NULL);
    for (size_t i = 0; i < n; i++)
        if (nodes[i] == node)
            return 1;
    return 0;
}

/*
 * Compare this node's entries mine[0, nm) with peer j's theirs[0, nt),
 * both in key order, and write the copies that make the two replicas of
 * each key agree to out (room for nm + nt).  Keys only one of the two is
 * a replica of are skipped.  Runs without the lock.
 */
static size_t
ae_compare(const struct topo *t, size_t j, Rzkv__Entry *const *mine,
           size_t nm, Rzkv__Entry *const *theirs, size_t nt,
           struct ae_copy *out)
{
    size_t a = 0, b = 0, n = 0;

    while (a < nm || b < nt) {
        int c = a == nm ? 1 : b == nt ? -1
              : list_key_cmp(&mine[a]->key, &theirs[b]->key);
        const Rzkv__Entry *e = c <= 0 ? mine[a] : theirs[b];
        int pull;
        if (c == 0) {
            struct stamp sm = wire_stamp_view(mine[a]->stamp);
            struct stamp st = wire_stamp_view(theirs[b]->stamp);
            int d = stamp_cmp(&sm, &st);
            a++, b++;
            if (d == 0)
                continue;
            pull = d < 0;
        } else {
            pull = c > 0;       /* only the peer holds it */
            if (c < 0)
                a++;
            else
                b++;
            if (e->tombstone)
                continue;       /* nothing there for it to hide */
        }
        if (ae_is_replica(t, &e->key, (size_t)t->self) &&
            ae_is_replica(t, &e->key, j)) {
            out[n].key = &e->key;
            out[n].peer = j;
            out[n].pull = pull;
            n++;
        }
    }
    return n;
}

/* The dest that serves key on node `node` (this node: its storage). */
static struct dest *
ae_dest(const struct topo *t, const ProtobufCBinaryData *key, size_t node)
{
    if ((int)node == t->self)
        return coord.shard[ring_shard(key->data, key->len, coord.shards)];
    return t->dest[node];
}

/*
 * Make the copies, AE_FETCH_KEYS at a time: read each entry, with its
 * value, where it is newer, then send it as a ReplicaSet to the other
 * replica.  Lock held.
 */
static void
ae_copy_all(const struct topo *t, const struct ae_copy *copy, size_t n,
            struct ae_pass *pass)
{
    for (size_t i = 0; i < n && !ae.stop; i += AE_FETCH_KEYS) {
        size_t m = n - i < AE_FETCH_KEYS ? n - i : AE_FETCH_KEYS;
        struct ae_op *get = calloc(m, sizeof(*get));
        struct ae_op *set = calloc(m, sizeof(*set));
        if (get == NULL || set == NULL) {
            free(get);
            free(set);
            ae_failed(pass, "out of memory");
            return;
        }
        for (size_t x = 0; x < m; x++) {
            const struct ae_copy *c = &copy[i + x];
            Rzkv__ReplicaGet rg = RZKV__REPLICA_GET__INIT;
            Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
            rg.key = *c->key;
            op.op_case = RZKV__NODE_OP__OP_GET;
            op.get = &rg;
            ae_submit(&get[x], &op, ae_dest(t, c->key, c->pull
                                            ? c->peer : (size_t)t->self));
        }
        ae_wait_all();
        for (size_t x = 0; x < m; x++) {
            const struct ae_copy *c = &copy[i + x];
            const struct ae_op *got = &get[x];
            if (got->res == NULL || got->res->status != RZKV__STATUS__OK ||
                got->res->entry == NULL) {
                /* Gone since it was listed (purged, or the read
                 * failed): the next pass sees what is there then.  An
                 * absent key reads as OK without an entry. */
                if (got->res == NULL ||
                    got->res->status != RZKV__STATUS__OK)
                    ae_failed(pass, got->dest ? dest_name(got->dest)
                                              : "a read");
                continue;
            }
            Rzkv__ReplicaSet rs = RZKV__REPLICA_SET__INIT;
            Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
            rs.entry = got->res->entry;
            rs.expires_ms = topo_write_expiry(t,
                                              (unsigned)t->conf->timeout_ms);
            op.op_case = RZKV__NODE_OP__OP_SET;
            op.set = &rs;
            ae_submit(&set[x], &op, ae_dest(t, c->key, c->pull
                                            ? (size_t)t->self : c->peer));
        }
        ae_wait_all();
        for (size_t x = 0; x < m; x++) {
            const struct ae_op *s = &set[x];
            if (s->buf == NULL && s->err[0] == '\0')
                continue;               /* nothing to send */
            pass->copied += ae_applied(s, "copy", pass);
        }
        ae_ops_free(get, m);
        ae_ops_free(set, m);
    }
}

/* ---- purging tombstones ---------------------------------------------------- */

/* A tombstone to remove from the replicas of its key that hold it. */
struct ae_purge {
    const Rzkv__Entry *entry;   /* as listed: key and stamp */
    size_t node[QUORUM_MAX_REPLICAS];   /* the replicas that hold it */
    size_t n;
};

/* A page of a node's listing, for looking keys up; n is SIZE_MAX if its
 * listing failed. */
struct ae_listed {
    Rzkv__Entry *const *entries;
    size_t n;
};

/* The entry for key in l, or NULL. */
static const Rzkv__Entry *
ae_lookup(const struct ae_listed *l, const ProtobufCBinaryData *key)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = list_key_cmp(&l->entries[mid]->key, key);
        if (c == 0)
            return l->entries[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Is e the tombstone `like` (same stamp), held at least `delay` ms? */
static int
ae_same_old_tombstone(const Rzkv__Entry *e, const Rzkv__Entry *like,
                      uint64_t delay)
{
    if (e == NULL || !e->tombstone || e->tombstone_age_ms < delay)
        return 0;
    struct stamp a = wire_stamp_view(e->stamp);
    struct stamp b = wire_stamp_view(like->stamp);
    return stamp_cmp(&a, &b) == 0;
}

enum ae_verdict {
    AE_NOT_MINE,                /* another node judges it, or another
                                 * listing of this step already did */
    AE_KEEP,                    /* too young, not on every replica yet, or
                                 * a replica could not be listed */
    AE_PURGE,
};

/*
 * What to do with the tombstone e, listed by node `from`, in this step.
 * It is this node's to judge only if this node is the first replica of
 * its key in the cluster file (so every other replica was listed in the
 * step), and only from the first listing that has it, so each key is
 * judged once.  It is purged if the listing of every replica succeeded
 * and each replica holds either that tombstone (same stamp) for `delay`
 * ms or more, or nothing for the key.  p gets the replicas that hold it.
 */
static enum ae_verdict
ae_judge(const struct topo *t, const struct ae_listed *listed, size_t from,
         const Rzkv__Entry *e, uint64_t delay, struct ae_purge *p)
{
    size_t node[QUORUM_MAX_REPLICAS];
    size_t n = topo_replicas(t, e->key.data, e->key.len, node, NULL);

    int me = 0, keep = 0;
    p->n = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = node[i];
        if (j < (size_t)t->self)
            return AE_NOT_MINE;
        me |= j == (size_t)t->self;
        if (listed[j].n == SIZE_MAX) {
            keep = 1;
            continue;
        }
        const Rzkv__Entry *held = ae_lookup(&listed[j], &e->key);
        if (held == NULL)
            continue;
        if (j < from)
            return AE_NOT_MINE;
        if (ae_same_old_tombstone(held, e, delay))
            p->node[p->n++] = j;
        else
            keep = 1;
    }
    if (!me || (p->n == 0 && !keep))
        return AE_NOT_MINE;     /* held only by a node that is no replica */
    p->entry = e;
    return keep ? AE_KEEP : AE_PURGE;
}

/* The purges of this step, from the listings of this node and the peers
 * after it; the tombstones it keeps are counted in pass.  Runs without
 * the lock. */
static size_t
ae_find_purges(const struct topo *t, const struct ae_listed *listed,
               uint64_t delay, struct ae_purge *out, struct ae_pass *pass)
{
    size_t n = 0;

    for (size_t from = (size_t)t->self; from < t->conf->node_count; from++)
        for (size_t a = 0; listed[from].n != SIZE_MAX &&
                           a < listed[from].n; a++) {
            const Rzkv__Entry *e = listed[from].entries[a];
            if (!e->tombstone)
                continue;
            switch (ae_judge(t, listed, from, e, delay, &out[n])) {
            case AE_PURGE: n++; break;
            case AE_KEEP: pass->kept++; break;
            case AE_NOT_MINE: break;
            }
        }
    return n;
}

/* Send each replica that holds the tombstone its ReplicaPurge, a page of
 * keys at a time: a purge carries no value, so a whole step's purges fit
 * in a message or two for each replica.  Lock held. */
static void
ae_purge_all(const struct topo *t, const struct ae_purge *purge, size_t n,
             uint64_t delay, struct ae_pass *pass)
{
    for (size_t i = 0; i < n && !ae.stop; i += AE_PAGE_KEYS) {
        size_t m = n - i < AE_PAGE_KEYS ? n - i : AE_PAGE_KEYS;
        struct ae_op *ops = calloc(m * QUORUM_MAX_REPLICAS, sizeof(*ops));
        size_t nops = 0;
        if (ops == NULL) {
            ae_failed(pass, "out of memory");
            return;
        }
        for (size_t x = 0; x < m; x++) {
            const struct ae_purge *p = &purge[i + x];
            for (size_t r = 0; r < p->n; r++) {
                Rzkv__ReplicaPurge rp = RZKV__REPLICA_PURGE__INIT;
                Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
                rp.key = p->entry->key;
                rp.stamp = p->entry->stamp;
                rp.min_age_ms = delay;
                op.op_case = RZKV__NODE_OP__OP_PURGE;
                op.purge = &rp;
                ae_submit(&ops[nops++], &op,
                          ae_dest(t, &p->entry->key, p->node[r]));
            }
        }
        ae_wait_all();
        for (size_t x = 0; x < nops; x++) {
            pass->purged += ae_applied(&ops[x], "purge", pass);
        }
        ae_ops_free(ops, nops);
    }
}

/* How many of entries[0, n) sort before end (NULL: all). */
static size_t
ae_before(Rzkv__Entry *const *entries, size_t n,
          const ProtobufCBinaryData *end)
{
    size_t k = 0;
    while (k < n && (end == NULL || list_key_cmp(&entries[k]->key, end) < 0))
        k++;
    return k;
}

/*
 * One step from *start (a key; empty: the first).  This node lists a page
 * of its keys; every peer after it in the cluster file lists the same
 * range, one page each; the step covers the range up to the first key one
 * of them did not list, and makes the copies it finds there.  Each pair
 * of nodes is so compared by one of them, the one listed first.
 * Returns 1 with *start moved past the range, 0 after the last step, -1
 * if this node's own listing failed.  Lock held.
 */
static int
ae_step(const struct topo *t, ProtobufCBinaryData *start,
        struct ae_pass *pass)
{
    size_t nn = t->conf->node_count;
    struct ae_call *local = calloc(coord.shards, sizeof(*local));
    struct ae_call *peer = calloc(nn, sizeof(*peer));
    Rzkv__Reply **replies = calloc(coord.shards, sizeof(*replies));
    struct ae_listed *listed = calloc(nn, sizeof(*listed));
    struct list_page page = { NULL, 0, NULL };
    struct ae_copy *copy = NULL;
    struct ae_purge *purge = NULL;
    uint64_t delay = (uint64_t)coord.node->tombstone_purge_delay_ms;
    int rv = -1;

    if (local == NULL || peer == NULL || replies == NULL || listed == NULL)
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

    /* The peers' pages of the same range; the step ends where the first
     * of them (or this node's) stops. */
    const ProtobufCBinaryData *end = page.next;
    for (size_t j = (size_t)t->self + 1; j < nn; j++)
        ae_list(t->dest[j], start, page.next, &peer[j]);
    ae_wait_all();
    for (size_t j = (size_t)t->self + 1; j < nn; j++) {
        if (peer[j].reply == NULL) {
            log_debug("anti-entropy: listing %s: %s", dest_name(t->dest[j]),
                      peer[j].err);
            ae_failed(pass, dest_name(t->dest[j]));
            continue;
        }
        const ProtobufCBinaryData *nk = &peer[j].reply->list_keys->next_key;
        if (nk->len == 0)
            continue;
        if (list_key_cmp(nk, start) <= 0) {     /* no progress: ignore it */
            rzkv__reply__free_unpacked(peer[j].reply, NULL);
            peer[j].reply = NULL;
            ae_failed(pass, dest_name(t->dest[j]));
            continue;
        }
        if (end == NULL || list_key_cmp(nk, end) < 0)
            end = nk;
    }

    /* Every page up to the step's end; nodes not listed are failed. */
    for (size_t j = 0; j < nn; j++)
        listed[j].n = SIZE_MAX;
    size_t nm = ae_before(page.entries, page.n, end), room = 0;
    listed[t->self].entries = page.entries;
    listed[t->self].n = nm;
    for (size_t j = (size_t)t->self + 1; j < nn; j++) {
        if (peer[j].reply == NULL)
            continue;
        Rzkv__ListKeysReply *lk = peer[j].reply->list_keys;
        listed[j].entries = lk->entries;
        listed[j].n = ae_before(lk->entries, lk->n_entries, end);
        room += nm + listed[j].n;
    }
    if ((copy = calloc(room ? room : 1, sizeof(*copy))) == NULL ||
        (delay > 0 && (purge = calloc(nm + room ? nm + room : 1,
                                      sizeof(*purge))) == NULL))
        goto out;
    size_t ncopy = 0, npurge = 0;
    nng_mtx_unlock(coord.lock);
    for (size_t j = (size_t)t->self + 1; j < nn; j++)
        if (listed[j].n != SIZE_MAX)
            ncopy += ae_compare(t, j, page.entries, nm, listed[j].entries,
                                listed[j].n, copy + ncopy);
    if (delay > 0)
        npurge = ae_find_purges(t, listed, delay, purge, pass);
    nng_mtx_lock(coord.lock);
    ae_copy_all(t, copy, ncopy, pass);
    ae_purge_all(t, purge, npurge, delay, pass);
    pass->keys += nm;

    rv = 0;
    if (end != NULL) {
        uint8_t *next = malloc(end->len);
        if (next == NULL) {
            rv = -1;
            goto out;
        }
        memcpy(next, end->data, end->len);
        free(start->data);
        start->data = next;
        start->len = end->len;
        rv = 1;
    }
out:
    if (rv < 0 && pass->first_failure == NULL)
        ae_failed(pass, "out of memory");
    free(copy);
    free(purge);
    free(listed);
    free(page.entries);
    for (size_t j = 0; peer != NULL && j < nn; j++)
        if (peer[j].reply != NULL)
            rzkv__reply__free_unpacked(peer[j].reply, NULL);
    for (unsigned i = 0; local != NULL && i < coord.shards; i++)
        if (local[i].reply != NULL)
            rzkv__reply__free_unpacked(local[i].reply, NULL);
    free(peer);
    free(local);
    free(replies);
    return rv;
}

/* ---- the pass and its thread ---------------------------------------------- */

static void
ae_pass(const struct topo *t)
{
    struct ae_pass pass = { 0, 0, 0, 0, 0, NULL };
    ProtobufCBinaryData start = { 0, NULL };
    nng_time began = nng_clock();
    uint64_t began_wall = wire_wall_ms();
    int rv;

    /* The last node of the file compares nothing itself: its peers
     * compare their pairs with it. */
    if (!conf_antientropy_has_work(t->conf, coord.node))
        return;

    for (;;) {
        nng_time step_began = nng_clock();
        if ((rv = ae_step(t, &start, &pass)) != 1 || ae.stop)
            break;
        nng_time took = nng_clock() - step_began;
        nng_time until = nng_clock() +
                         (took > AE_STEP_PAUSE_MS ? took : AE_STEP_PAUSE_MS);
        while (!ae.stop && nng_clock() < until)
            nng_cv_until(ae.cv, until);
    }
    free(start.data);
    metrics_add(&metrics->u.coord.antientropy_keys, pass.keys);
    metrics_add(&metrics->u.coord.antientropy_pushed, pass.copied);
    metrics_add(&metrics->u.coord.antientropy_purged, pass.purged);
    metrics_add(&metrics->u.coord.antientropy_failures, pass.failures);
    if (rv == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        metrics_add(&metrics->u.coord.antientropy_passes, 1);
        metrics_set(&metrics->u.coord.antientropy_last_pass_ms,
                    (uint64_t)now.tv_sec * 1000 +
                    (uint64_t)now.tv_nsec / 1000000);
        metrics_set(&metrics->u.coord.antientropy_tombstones_kept,
                    pass.kept);
        /* What a membership change waits for (rzkv(7)): every key this
         * node held when the pass began is now on its other replicas. */
        if (pass.failures == 0)
            metrics_set(&metrics->u.coord.antientropy_clean_pass_ms,
                        began_wall);
    }
    if (ae.stop)
        return;
    double secs = (double)(nng_clock() - began) / 1000.0;
    if (pass.copied > 0 || pass.purged > 0 || pass.failures > 0)
        log_info("anti-entropy %s: %llu keys compared, %llu copies made, "
                 "%llu tombstones purged, %llu failures%s%s%s, %.1f s",
                 rv == 0 ? "pass" : "pass abandoned",
                 (unsigned long long)pass.keys,
                 (unsigned long long)pass.copied,
                 (unsigned long long)pass.purged,
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
        if (!ae.soon && nng_clock() < next) {
            nng_cv_until(ae.cv, next);
            continue;
        }
        ae.soon = 0;
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
    if (coord.node->tombstone_purge_delay_ms > 0)
        log_info("anti-entropy every %d ms, purging tombstones every replica "
                 "has held for %d ms", coord.node->anti_entropy_interval_ms,
                 coord.node->tombstone_purge_delay_ms);
    else
        log_info("anti-entropy every %d ms, keeping tombstones",
                 coord.node->anti_entropy_interval_ms);
}

/*
 * Start a pass now (after the pass in progress, if any) rather than up to
 * an interval later: after a reload that moved keys to new replica sets,
 * whose new replicas lack them until a pass copies them there (and a read
 * may miss them until then), or when an operator asks (rzkvctl repair,
 * e.g. after a node came back).
 */
void
repair_soon(const struct topo *t, const char *why)
{
    if (!ae.running) {
        if (coord.instance == 0)
            log_warnx("%s, but anti-entropy is off (anti_entropy_interval_ms "
                      "0): keys reach the replicas that lack them only when "
                      "they are read or written", why);
        return;
    }
    if (!conf_antientropy_has_work(t->conf, coord.node)) {
        log_info("%s: this node compares nothing itself; its peers' passes "
                 "compare their keys with it", why);
        return;
    }
    log_info("%s: an anti-entropy pass starts now", why);
    nng_mtx_lock(coord.lock);
    ae.soon = 1;
    nng_cv_wake(ae.cv);
    nng_mtx_unlock(coord.lock);
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

/*
 * dest.c - batched, pipelined requests to one storage worker or peer.
 *
 * One connection per destination (sp.c: nng's REQ protocol, spoken on the
 * coordinator's front thread), with DEST_INFLIGHT message slots on it.
 * Each slot carries one NodeBatch at a time; operations that arrive while
 * the slots are busy wait in the queue and leave together in the next
 * message that a slot frees up for.  A round trip costs far more than an
 * operation (DESIGN.md section 4), so under load this is what keeps the
 * message rate, not the operation rate, the cost.
 *
 * A message's request id names its slot and the slot's generation, so a
 * reply that comes after its message timed out is recognised and dropped.
 * Every operation ends in exactly one place: slot_deliver() for those
 * that were sent (answered, timed out, or lost with the connection),
 * fail_list() for those failed while queued.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "batch.h"
#include "dest.h"
#include "log.h"
#include "metrics.h"
#include "rzkv.pb-c.h"
#include "sp.h"

#define DEST_GRACE_MS 50        /* message timeout past its last deadline */
#define CALL_ID_BIT   0x40000000u   /* request ids of dest_call()s */
#define SLOT_ID_GEN   0xfffffu      /* slot ids: generation << 8 | slot */

enum slot_state { SLOT_IDLE = 0, SLOT_BUSY };

struct dest_slot {
    struct dest *d;
    enum slot_state state;
    uint32_t gen;               /* of the message in flight */
    struct dest_op_list ops;    /* in this message, in order */
    size_t nops;
    int writes;                 /* a message of writes, or of reads */
    nng_time deadline;
    nng_time started;           /* when this message left */
};

struct dest_call {
    enum slot_state state;
    uint32_t id;
    nng_time deadline;
    dest_call_fn cb;
    void *arg;
    struct dest_call *next;     /* all calls of the dest */
};

struct dest {
    char *name;
    char *url;
    enum dest_kind kind;
    nng_mtx *lock;
    struct spc *conn;
    struct buf scratch;         /* the message being sent */
    uint32_t call_seq;
    nng_time opened;
    int retired;
    char retire_why[64];
    struct dest_op_list queue;
    size_t queued;
    size_t queued_writes;       /* of them, writes (op_writes) */
    nng_time queue_due;         /* no queued op expires before this */
    struct dest_slot slot[DEST_INFLIGHT];
    struct dest_call *calls;
    struct dest_stats stats;
};

static void slot_deliver(struct dest_slot *s, const struct batch_reply *r,
                         const char *err);

const char *
dest_name(const struct dest *d)
{
    return d->name;
}

const char *
dest_url(const struct dest *d)
{
    return d->url;
}

int
dest_connected(const struct dest *d)
{
    return spc_up(d->conn);
}

const char *
dest_down_reason(const struct dest *d, nng_time now)
{
    if (d->retired)
        return d->retire_why;
    if (!dest_connected(d))
        return "not connected";
    (void)now;
    return NULL;
}

int
dest_idle(const struct dest *d)
{
    if (d->queued > 0)
        return 0;
    for (int i = 0; i < DEST_INFLIGHT; i++)
        if (d->slot[i].state != SLOT_IDLE)
            return 0;
    for (const struct dest_call *c = d->calls; c != NULL; c = c->next)
        if (c->state != SLOT_IDLE)
            return 0;
    return 1;
}

void
dest_get_stats(const struct dest *d, struct dest_stats *st)
{
    *st = d->stats;
}

/* A peer not connected fails fast, once it had time to connect. */
static const char *
refuse_reason(const struct dest *d, nng_time now)
{
    if (d->retired)
        return d->retire_why;
    if (d->kind == DEST_PEER && !dest_connected(d) &&
        now - d->opened >= DEST_CONNECT_GRACE)
        return "not connected";
    return NULL;
}

/* Complete every operation of list with err. */
static void
fail_list(struct dest *d, struct dest_op_list *list, const char *err)
{
    struct dest_op *op;
    while ((op = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, op, link);
        d->stats.failed++;
        op->done(op, NULL, 0, err);
    }
}

/*
 * Does op write (ReplicaSet, ClockSet, ReplicaPurge)?  A storage worker answers a
 * message of reads at once but a message with any write only after its
 * commit, so reads and writes travel in messages of their own: a set's
 * ClockGet must not wait for other sets' fsync.  The op's first byte is
 * its NodeOp field's key (field number << 3 | wire type).
 */
static int
op_writes(const struct dest_op *op)
{
    unsigned field = op->op_len > 0 ? op->op[0] >> 3 : 0;
    return field == RZKV__NODE_OP__OP_SET ||
           field == RZKV__NODE_OP__OP_CLOCK_SET ||
           field == RZKV__NODE_OP__OP_PURGE;
}

/* Take op off the queue. */
static void
unqueue(struct dest *d, struct dest_op *op)
{
    TAILQ_REMOVE(&d->queue, op, link);
    d->queued--;
    if (op_writes(op))
        d->queued_writes--;
}

/* Pack the oldest queued reads, or writes, into one message on slot. */
static void
slot_start(struct dest_slot *s, nng_time now, int writes)
{
    struct dest *d = s->d;
    size_t body = 0, n = 0;
    struct dest_op *op, *next;

    /* The oldest of the kind, up to the message's limits.  One past its
     * deadline stays for dest_tick to fail: its requester may already
     * have answered that it never left this node. */
    struct dest_op_list taken = TAILQ_HEAD_INITIALIZER(taken);
    for (op = TAILQ_FIRST(&d->queue); op != NULL; op = next) {
        next = TAILQ_NEXT(op, link);
        if (op_writes(op) != writes || op->deadline <= now)
            continue;
        size_t rec = batch_record_len(BATCH_OPS, op->op_len);
        if (n > 0 && (n == DEST_BATCH_OPS || body + rec > DEST_BATCH_BYTES ||
                      op->alone))
            break;
        unqueue(d, op);
        TAILQ_INSERT_TAIL(&taken, op, link);
        body += rec;
        n++;
        if (op->alone)
            break;
    }
    if (n == 0)
        return;
    size_t len = batch_record_len(BATCH_ENVELOPE_NODE, body);
    d->scratch.off = d->scratch.len = 0;
    if (buf_reserve(&d->scratch, len) != 0) {
        fail_list(d, &taken, "out of memory");
        return;
    }
    uint8_t *p = batch_put_header(d->scratch.data, BATCH_ENVELOPE_NODE, body);
    s->deadline = now;
    s->nops = n;
    s->writes = writes;
    TAILQ_FOREACH(op, &taken, link) {
        p = batch_put_record(p, BATCH_OPS, op->op, op->op_len);
        op->sent = 1;
        if (op->deadline > s->deadline)
            s->deadline = op->deadline;
    }
    TAILQ_CONCAT(&s->ops, &taken, link);
    d->stats.messages++;
    d->stats.ops += n;
    metrics_size_observe(&metrics->u.coord.batch_ops, n);
    metrics_add(&metrics->u.coord.batch_messages[d->kind == DEST_PEER
                                                 ? MDEST_PEER
                                                 : MDEST_LOCAL], 1);
    s->state = SLOT_BUSY;
    s->gen = (s->gen + 1) & SLOT_ID_GEN;
    s->started = now;
    /* A send that finds the connection broken fails the slot through
     * dest_conn_state before it returns: s is not touched after it. */
    uint32_t id = s->gen << 8 | (uint32_t)(s - d->slot);
    if (spc_send(d->conn, id, d->scratch.data, len) != 0) {
        TAILQ_FOREACH(op, &s->ops, link)
            op->sent = 0;       /* refused before a byte left */
        slot_deliver(s, NULL, "not connected");
    }
}

/*
 * Fill idle slots from the queue, reads and writes apart: of each, one
 * message in flight while answers come back in time, so everything
 * waiting shares the next message; a further one only once every message
 * of its kind in flight has been out for DEST_STALL_MS (a slow or lost
 * message must not hold up the rest).
 */
static void
kick(struct dest *d)
{
    if (d->retired || d->queued == 0 || !spc_up(d->conn))
        return;                 /* dest_tick or dest_close fail the queue;
                                 * a reconnection kicks again */
    nng_time now = nng_clock();
    for (int writes = 0; writes <= 1 && spc_up(d->conn); writes++) {
        size_t waiting = writes ? d->queued_writes
                                : d->queued - d->queued_writes;
        int fresh = 0, idle = -1;
        for (int i = 0; i < DEST_INFLIGHT; i++) {
            const struct dest_slot *s = &d->slot[i];
            if (s->state == SLOT_IDLE)
                idle = idle < 0 ? i : idle;
            else if (s->writes == writes && now - s->started < DEST_STALL_MS)
                fresh = 1;
        }
        if (waiting > 0 && !fresh && idle >= 0)
            slot_start(&d->slot[idle], now, writes);
    }
}

int
dest_submit(struct dest *d, struct dest_op *op, const char **why)
{
    const char *no = refuse_reason(d, nng_clock());
    if (no == NULL && d->queued >= DEST_QUEUE_MAX)
        no = "queue full";
    if (no != NULL) {
        *why = no;
        return -1;
    }
    op->sent = 0;
    if (d->queued == 0 || op->deadline < d->queue_due)
        d->queue_due = op->deadline;
    TAILQ_INSERT_TAIL(&d->queue, op, link);
    d->queued++;
    if (op_writes(op))
        d->queued_writes++;
    kick(d);
    return 0;
}

/*
 * Deliver a finished message: results in order, or the error to all.
 * Runs with the lock held; the slot is idle again before any callback,
 * so callbacks may reuse it.
 */
static void
slot_deliver(struct dest_slot *s, const struct batch_reply *r,
             const char *err)
{
    struct dest *d = s->d;
    struct dest_op_list ops = TAILQ_HEAD_INITIALIZER(ops);
    char errbuf[160];
    const uint8_t *p = NULL, *end = NULL;
    struct dest_op *op;

    TAILQ_CONCAT(&ops, &s->ops, link);
    s->state = SLOT_IDLE;
    s->nops = 0;
    if (err == NULL && r->status != 0) {
        snprintf(errbuf, sizeof(errbuf), "%s: status %u: %.*s", d->name,
                 (unsigned)r->status, (int)(r->message_len > 100 ? 100
                                            : r->message_len),
                 r->message ? (const char *)r->message : "");
        err = errbuf;
    }
    if (err == NULL) {
        p = r->results;
        end = r->results ? r->results + r->results_len : NULL;
    }
    while ((op = TAILQ_FIRST(&ops)) != NULL) {
        TAILQ_REMOVE(&ops, op, link);
        const uint8_t *rec;
        size_t len;
        if (err != NULL) {
            d->stats.failed++;
            op->done(op, NULL, 0, err);
        } else if (p != NULL && batch_next_result(&p, end, &rec, &len) == 1) {
            op->done(op, rec, len, NULL);
        } else {
            d->stats.failed++;
            op->done(op, NULL, 0, "short or malformed reply");
            err = "short or malformed reply";
        }
    }
    kick(d);
}

/* Fail every message in flight with err (its replies will not come). */
static void
fail_in_flight(struct dest *d, const char *err)
{
    for (int i = 0; i < DEST_INFLIGHT; i++)
        if (d->slot[i].state != SLOT_IDLE)
            slot_deliver(&d->slot[i], NULL, err);
    for (struct dest_call *c = d->calls; c != NULL; c = c->next)
        if (c->state != SLOT_IDLE) {
            c->state = SLOT_IDLE;
            c->cb(c->arg, NULL, err);
        }
}

/* A reply, on the front thread with the lock held. */
static void
dest_conn_reply(void *arg, uint32_t id, const uint8_t *body, size_t len)
{
    struct dest *d = arg;

    id &= 0x7fffffffu;
    if (id & CALL_ID_BIT) {
        for (struct dest_call *c = d->calls; c != NULL; c = c->next) {
            if (c->state == SLOT_IDLE || c->id != id)
                continue;
            nng_msg *m = NULL;
            c->state = SLOT_IDLE;
            if (nng_msg_alloc(&m, len) != 0) {
                c->cb(c->arg, NULL, "out of memory");
                return;
            }
            memcpy(nng_msg_body(m), body, len);
            c->cb(c->arg, m, NULL);
            return;
        }
        return;
    }
    uint32_t i = id & 0xff;
    if (i >= DEST_INFLIGHT)
        return;
    struct dest_slot *s = &d->slot[i];
    if (s->state == SLOT_IDLE || s->gen != (id >> 8))
        return;                 /* it timed out: too late */
    struct batch_reply r;
    if (batch_scan_reply(body, len, &r) != 0)
        slot_deliver(s, NULL, "malformed reply");
    else
        slot_deliver(s, &r, NULL);
}

/* The connection came up (send what waits) or broke. */
static void
dest_conn_state(void *arg, int up, const char *why)
{
    struct dest *d = arg;
    char err[96];

    if (up) {
        kick(d);
        return;
    }
    snprintf(err, sizeof(err), "connection lost: %s", why);
    fail_in_flight(d, err);
}

void
dest_tick(struct dest *d, nng_time now)
{
    struct dest_op_list expired = TAILQ_HEAD_INITIALIZER(expired);
    struct dest_op *op, *next;
    const char *down = NULL;

    if (d->retired)
        down = d->retire_why;
    else if (d->kind == DEST_PEER && !dest_connected(d) &&
             now - d->opened >= DEST_CONNECT_GRACE)
        down = "connection lost";

    if (down != NULL) {
        /* Don't let operations wait for a peer that is gone. */
        fail_in_flight(d, down);
        TAILQ_CONCAT(&expired, &d->queue, link);
        d->queued = d->queued_writes = 0;
        fail_list(d, &expired, down);
        return;
    }
    for (int i = 0; i < DEST_INFLIGHT; i++) {
        struct dest_slot *s = &d->slot[i];
        if (s->state != SLOT_IDLE && now > s->deadline + DEST_GRACE_MS)
            slot_deliver(s, NULL, "timeout");
    }
    for (struct dest_call *c = d->calls; c != NULL; c = c->next)
        if (c->state != SLOT_IDLE && now > c->deadline) {
            c->state = SLOT_IDLE;
            c->cb(c->arg, NULL, "timeout");
        }
    if (d->queued == 0)
        return;
    kick(d);                    /* a message in flight may have stalled */
    if (d->queued == 0 || now < d->queue_due)
        return;
    nng_time due = UINT64_MAX;
    for (op = TAILQ_FIRST(&d->queue); op != NULL; op = next) {
        next = TAILQ_NEXT(op, link);
        if (op->deadline <= now) {
            unqueue(d, op);
            TAILQ_INSERT_TAIL(&expired, op, link);
        } else if (op->deadline < due) {
            due = op->deadline;
        }
    }
    d->queue_due = due;
    fail_list(d, &expired, "timeout");
}

/* ---- whole-envelope calls (listing, info) -------------------------------- */

static struct dest_call *
call_get(struct dest *d)
{
    struct dest_call *c;
    for (c = d->calls; c != NULL; c = c->next)
        if (c->state == SLOT_IDLE)
            return c;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->next = d->calls;
    d->calls = c;
    return c;
}

int
dest_call(struct dest *d, nng_msg *req, nng_duration timeout,
          dest_call_fn cb, void *arg, const char **why)
{
    nng_time now = nng_clock();
    const char *no = refuse_reason(d, now);
    struct dest_call *c = NULL;

    if (no == NULL && !spc_up(d->conn))
        no = "not connected";
    if (no == NULL && (c = call_get(d)) == NULL)
        no = "out of memory";
    if (no != NULL) {
        nng_msg_free(req);
        *why = no;
        return -1;
    }
    c->cb = cb;
    c->arg = arg;
    c->state = SLOT_BUSY;
    c->id = CALL_ID_BIT | (d->call_seq++ & (CALL_ID_BIT - 1));
    c->deadline = now + (nng_time)timeout;
    /* A broken connection fails it through dest_conn_state. */
    spc_send(d->conn, c->id, nng_msg_body(req), nng_msg_len(req));
    nng_msg_free(req);
    return 0;
}

/* ---- life cycle ------------------------------------------------------------ */

struct dest *
dest_open(const char *name, const char *url, enum dest_kind kind,
          nng_mtx *lock, size_t recvmax, char *err, size_t errlen)
{
    struct dest *d = calloc(1, sizeof(*d));
    char why[256];

    if (d == NULL || (d->name = strdup(name)) == NULL ||
        (d->url = strdup(url)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    d->kind = kind;
    d->lock = lock;
    d->opened = nng_clock();
    TAILQ_INIT(&d->queue);
    for (int i = 0; i < DEST_INFLIGHT; i++) {
        d->slot[i].d = d;
        TAILQ_INIT(&d->slot[i].ops);
    }
    /* A storage worker's replies are not limited: a batch of reads
     * answers with all their values.  A reply carries a request id. */
    d->conn = spc_open(url, kind == DEST_STORAGE ? 0 : recvmax + 4, lock,
                       dest_conn_reply, dest_conn_state, d, why,
                       sizeof(why));
    if (d->conn == NULL) {
        snprintf(err, errlen, "%s: %s", name, why);
        goto fail;
    }
    return d;
fail:
    if (d != NULL) {
        free(d->name);
        free(d->url);
        free(d);
    }
    return NULL;
}

void
dest_retire(struct dest *d, const char *why)
{
    d->retired = 1;
    snprintf(d->retire_why, sizeof(d->retire_why), "%s", why);
}

void
dest_hangup(struct dest *d)
{
    spc_hangup(d->conn);
}

void
dest_close(struct dest *d)
{
    if (d == NULL)
        return;
    nng_mtx_lock(d->lock);
    dest_retire(d, "closed");
    nng_mtx_unlock(d->lock);
    spc_hangup(d->conn);
    nng_mtx_lock(d->lock);
    fail_in_flight(d, "closed");
    struct dest_op_list left = TAILQ_HEAD_INITIALIZER(left);
    TAILQ_CONCAT(&left, &d->queue, link);
    d->queued = d->queued_writes = 0;
    fail_list(d, &left, "closed");
    nng_mtx_unlock(d->lock);
    /* The struct itself stays: a late reference finds it retired. */
}

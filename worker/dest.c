/*
 * dest.c - batched, pipelined requests to one storage worker or peer.
 *
 * One nng REQ socket per destination, DEST_INFLIGHT contexts on it.  Each
 * context carries one NodeBatch at a time; operations that arrive while
 * all contexts are busy wait in the queue and leave together in the next
 * message that a context frees up for.  A round trip costs far more than
 * an operation (DESIGN.md section 4), so under load this is what keeps
 * the message rate, not the operation rate, the cost.
 *
 * Every operation ends in exactly one place: slot_done() for those that
 * were sent, fail_list() for those failed while queued.  Cancelling a
 * message (peer lost) only cancels its aio; slot_done() then fails its
 * operations with the reason left in the slot.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "batch.h"
#include "dest.h"
#include "log.h"
#include "metrics.h"

#define DEST_GRACE_MS 50        /* message timeout past its last deadline */

enum slot_state { SLOT_IDLE = 0, SLOT_SEND, SLOT_RECV };

struct dest_slot {
    struct dest *d;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state;
    struct dest_op_list ops;    /* in this message, in order */
    size_t nops;
    nng_time deadline;
    nng_time started;           /* when this message left */
    const char *cancel_why;     /* set before cancelling the aio */
};

struct dest_call {
    struct dest *d;
    nng_ctx ctx;
    nng_aio *aio;
    enum slot_state state;
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
    nng_socket sock;
    nng_dialer dialer;
    int pipes;                  /* atomic: connected pipes */
    nng_time opened;
    int retired;
    char retire_why[64];
    struct dest_op_list queue;
    size_t queued;
    nng_time queue_due;         /* no queued op expires before this */
    struct dest_slot slot[DEST_INFLIGHT];
    struct dest_call *calls;
    struct dest_stats stats;
};

static void slot_cb(void *arg);
static void call_cb(void *arg);

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
    return __atomic_load_n(&d->pipes, __ATOMIC_RELAXED) > 0;
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

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct dest *d = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST)
        __atomic_add_fetch(&d->pipes, 1, __ATOMIC_RELAXED);
    else if (ev == NNG_PIPE_EV_REM_POST)
        __atomic_sub_fetch(&d->pipes, 1, __ATOMIC_RELAXED);
}

/* A peer without a pipe fails fast, once it had time to connect. */
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

static nng_duration
remaining(nng_time deadline, nng_time now)
{
    return deadline > now ? (nng_duration)(deadline - now) + DEST_GRACE_MS
                          : DEST_GRACE_MS;
}

static const char *
nng_why(int rv, const char *cancel_why)
{
    switch (rv) {
    case NNG_ETIMEDOUT: return "timeout";
    case NNG_ECANCELED: return cancel_why ? cancel_why : "canceled";
    case NNG_ECLOSED: return "closed";
    default: return nng_strerror(rv);
    }
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

/* Pack the head of the queue into one message and send it on slot. */
static void
slot_start(struct dest_slot *s, nng_time now)
{
    struct dest *d = s->d;
    size_t body = 0, n = 0;
    struct dest_op *op;

    TAILQ_FOREACH(op, &d->queue, link) {
        size_t rec = batch_record_len(BATCH_OPS, op->op_len);
        if (n > 0 && (n == DEST_BATCH_OPS || body + rec > DEST_BATCH_BYTES ||
                      op->alone))
            break;
        body += rec;
        n++;
        if (op->alone)
            break;
    }
    nng_msg *m;
    if (nng_msg_alloc(&m, batch_record_len(BATCH_ENVELOPE_NODE, body)) != 0) {
        struct dest_op_list failed = TAILQ_HEAD_INITIALIZER(failed);
        for (size_t i = 0; i < n; i++) {
            op = TAILQ_FIRST(&d->queue);
            TAILQ_REMOVE(&d->queue, op, link);
            TAILQ_INSERT_TAIL(&failed, op, link);
        }
        d->queued -= n;
        fail_list(d, &failed, "out of memory");
        return;
    }
    uint8_t *p = batch_put_header(nng_msg_body(m), BATCH_ENVELOPE_NODE, body);
    s->deadline = now;
    s->nops = n;
    for (size_t i = 0; i < n; i++) {
        op = TAILQ_FIRST(&d->queue);
        TAILQ_REMOVE(&d->queue, op, link);
        TAILQ_INSERT_TAIL(&s->ops, op, link);
        p = batch_put_record(p, BATCH_OPS, op->op, op->op_len);
        op->sent = 1;
        if (op->deadline > s->deadline)
            s->deadline = op->deadline;
    }
    d->queued -= n;
    d->stats.messages++;
    d->stats.ops += n;
    metrics_size_observe(&metrics->u.coord.batch_ops, n);
    metrics_add(&metrics->u.coord.batch_messages[d->kind == DEST_PEER
                                                 ? MDEST_PEER
                                                 : MDEST_LOCAL], 1);
    s->state = SLOT_SEND;
    s->started = now;
    s->cancel_why = NULL;
    nng_aio_set_msg(s->aio, m);
    nng_aio_set_timeout(s->aio, remaining(s->deadline, now));
    nng_ctx_send(s->ctx, s->aio);
}

/*
 * Fill idle slots from the queue: one message in flight while answers
 * come back in time, so everything waiting shares the next message; a
 * further one only once every message in flight has been out for
 * DEST_STALL_MS (a slow or lost message must not hold up the rest).
 */
static void
kick(struct dest *d)
{
    if (d->retired || d->queued == 0)
        return;                 /* dest_tick or dest_close fail the queue */
    nng_time now = nng_clock();
    for (int i = 0; i < DEST_INFLIGHT; i++) {
        const struct dest_slot *s = &d->slot[i];
        if (s->state != SLOT_IDLE && now - s->started < DEST_STALL_MS)
            return;
    }
    for (int i = 0; i < DEST_INFLIGHT; i++) {
        if (d->slot[i].state == SLOT_IDLE) {
            slot_start(&d->slot[i], now);
            return;
        }
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

static void
slot_cb(void *arg)
{
    struct dest_slot *s = arg;
    struct dest *d = s->d;
    int rv = nng_aio_result(s->aio);
    nng_msg *reply = NULL;
    struct batch_reply r;
    const char *err = NULL;

    if (s->state == SLOT_SEND) {
        if (rv == 0) {
            nng_mtx_lock(d->lock);
            if (s->cancel_why != NULL) {
                /* Cancelled just as the send completed: give up now. */
                err = s->cancel_why;
            } else {
                s->state = SLOT_RECV;
                nng_aio_set_timeout(s->aio, remaining(s->deadline,
                                                      nng_clock()));
                nng_ctx_recv(s->ctx, s->aio);
                nng_mtx_unlock(d->lock);
                return;
            }
        } else {
            nng_msg_free(nng_aio_get_msg(s->aio));
            nng_aio_set_msg(s->aio, NULL);
            nng_mtx_lock(d->lock);
            err = nng_why(rv, s->cancel_why);
        }
    } else {
        if (rv == 0) {
            reply = nng_aio_get_msg(s->aio);
            nng_aio_set_msg(s->aio, NULL);
            if (batch_scan_reply(nng_msg_body(reply), nng_msg_len(reply),
                                 &r) != 0)
                err = "malformed reply";
        } else {
            err = nng_why(rv, s->cancel_why);
        }
        nng_mtx_lock(d->lock);
    }
    slot_deliver(s, &r, err);
    nng_mtx_unlock(d->lock);
    if (reply != NULL)
        nng_msg_free(reply);
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
        for (int i = 0; i < DEST_INFLIGHT; i++) {
            struct dest_slot *s = &d->slot[i];
            if (s->state != SLOT_IDLE && s->cancel_why == NULL) {
                s->cancel_why = down;
                nng_aio_cancel(s->aio);
            }
        }
        TAILQ_CONCAT(&expired, &d->queue, link);
        d->queued = 0;
        fail_list(d, &expired, down);
        return;
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
            TAILQ_REMOVE(&d->queue, op, link);
            TAILQ_INSERT_TAIL(&expired, op, link);
            d->queued--;
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
    c->d = d;
    if (nng_ctx_open(&c->ctx, d->sock) != 0) {
        free(c);
        return NULL;
    }
    if (nng_aio_alloc(&c->aio, call_cb, c) != 0) {
        nng_ctx_close(c->ctx);
        free(c);
        return NULL;
    }
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

    if (no == NULL && (c = call_get(d)) == NULL)
        no = "out of memory";
    if (no != NULL) {
        nng_msg_free(req);
        *why = no;
        return -1;
    }
    c->cb = cb;
    c->arg = arg;
    c->state = SLOT_SEND;
    c->deadline = now + (nng_time)timeout;
    nng_aio_set_msg(c->aio, req);
    nng_aio_set_timeout(c->aio, timeout);
    nng_ctx_send(c->ctx, c->aio);
    return 0;
}

static void
call_cb(void *arg)
{
    struct dest_call *c = arg;
    struct dest *d = c->d;
    int rv = nng_aio_result(c->aio);
    nng_msg *reply = NULL;
    const char *err = NULL;

    nng_mtx_lock(d->lock);
    if (c->state == SLOT_SEND && rv == 0) {
        c->state = SLOT_RECV;
        nng_aio_set_timeout(c->aio, remaining(c->deadline, nng_clock()));
        nng_ctx_recv(c->ctx, c->aio);
        nng_mtx_unlock(d->lock);
        return;
    }
    if (rv != 0) {
        if (c->state == SLOT_SEND) {
            nng_msg_free(nng_aio_get_msg(c->aio));
            nng_aio_set_msg(c->aio, NULL);
        }
        err = nng_why(rv, NULL);
    } else {
        reply = nng_aio_get_msg(c->aio);
        nng_aio_set_msg(c->aio, NULL);
    }
    c->state = SLOT_IDLE;
    c->cb(c->arg, reply, err);
    nng_mtx_unlock(d->lock);
}

/* ---- life cycle ------------------------------------------------------------ */

static int
set_options(struct dest *d, size_t recvmax)
{
    int rv;
    if ((rv = nng_socket_set_size(d->sock, NNG_OPT_RECVMAXSZ,
                                  d->kind == DEST_STORAGE ? 0 : recvmax)) != 0 ||
        (rv = nng_socket_set_ms(d->sock, NNG_OPT_REQ_RESENDTIME,
                                NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_socket_set_ms(d->sock, NNG_OPT_RECONNMINT, 10)) != 0 ||
        (rv = nng_socket_set_ms(d->sock, NNG_OPT_RECONNMAXT, 250)) != 0)
        return rv;
    if ((rv = nng_pipe_notify(d->sock, NNG_PIPE_EV_ADD_POST, pipe_event,
                              d)) != 0 ||
        (rv = nng_pipe_notify(d->sock, NNG_PIPE_EV_REM_POST, pipe_event,
                              d)) != 0)
        return rv;
    return 0;
}

struct dest *
dest_open(const char *name, const char *url, enum dest_kind kind,
          nng_mtx *lock, size_t recvmax, char *err, size_t errlen)
{
    struct dest *d = calloc(1, sizeof(*d));
    int rv;

    if (d == NULL || (d->name = strdup(name)) == NULL ||
        (d->url = strdup(url)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    d->kind = kind;
    d->lock = lock;
    d->opened = nng_clock();
    TAILQ_INIT(&d->queue);
    if ((rv = nng_req0_open(&d->sock)) != 0) {
        snprintf(err, errlen, "%s: nng_req0_open: %s", name, nng_strerror(rv));
        goto fail;
    }
    if ((rv = set_options(d, recvmax)) != 0) {
        snprintf(err, errlen, "%s: socket options: %s", name,
                 nng_strerror(rv));
        goto close;
    }
    for (int i = 0; i < DEST_INFLIGHT; i++) {
        struct dest_slot *s = &d->slot[i];
        s->d = d;
        TAILQ_INIT(&s->ops);
        if ((rv = nng_ctx_open(&s->ctx, d->sock)) != 0 ||
            (rv = nng_aio_alloc(&s->aio, slot_cb, s)) != 0) {
            snprintf(err, errlen, "%s: context: %s", name, nng_strerror(rv));
            goto close;
        }
    }
    if ((rv = nng_dial(d->sock, url, &d->dialer, NNG_FLAG_NONBLOCK)) != 0) {
        snprintf(err, errlen, "%s: dial %s: %s", name, url, nng_strerror(rv));
        goto close;
    }
    return d;
close:
    nng_close(d->sock);
    for (int i = 0; i < DEST_INFLIGHT; i++)
        if (d->slot[i].aio != NULL)
            nng_aio_free(d->slot[i].aio);
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
    nng_dialer_close(d->dialer);
}

void
dest_close(struct dest *d)
{
    if (d == NULL)
        return;
    nng_mtx_lock(d->lock);
    dest_retire(d, "closed");
    nng_mtx_unlock(d->lock);
    /* Closing aborts every aio; their callbacks fail what was in flight
     * (taking the lock), and nng_aio_free waits for them. */
    nng_close(d->sock);
    for (int i = 0; i < DEST_INFLIGHT; i++) {
        nng_aio_free(d->slot[i].aio);
        d->slot[i].aio = NULL;
    }
    struct dest_call *c, *next;
    for (c = d->calls; c != NULL; c = next) {
        next = c->next;
        nng_aio_free(c->aio);
        free(c);
    }
    d->calls = NULL;
    nng_mtx_lock(d->lock);
    struct dest_op_list left = TAILQ_HEAD_INITIALIZER(left);
    TAILQ_CONCAT(&left, &d->queue, link);
    d->queued = 0;
    fail_list(d, &left, "closed");
    nng_mtx_unlock(d->lock);
    /* The struct itself stays: a late reference finds it retired. */
}

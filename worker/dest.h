/*
 * dest.h - an outgoing destination of the coordinator: one local storage
 * worker (ipc) or one peer node (tcp), as a queue of replica operations.
 *
 * An operation is sent at once if the destination has no message in
 * flight; otherwise it waits and leaves with everything else queued in
 * the next NodeBatch (at most DEST_BATCH_OPS operations and about
 * DEST_BATCH_BYTES bytes).  So at low load nothing waits and under load
 * many operations share one message.
 *
 * Locking: every function but dest_open() and dest_close() is called with
 * the coordinator lock held (the one given to dest_open), and every
 * callback runs with it held.  Callbacks may submit more operations.
 *
 * An operation completes exactly once, by its done callback: with the raw
 * bytes of its NodeResult (batch.h), or with an error phrase ("timeout",
 * "not connected", "storage: INTERNAL: ...") and no bytes.  dest_submit()
 * that returns -1 never calls it.
 */
#ifndef RZKV_DEST_H
#define RZKV_DEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

/*
 * Messages in flight per dest: one while answers come back within
 * DEST_STALL_MS, so under load everything queued meanwhile leaves in the
 * next message (measured on 3 local nodes, 64 clients: one in flight
 * batched ~6 ops a message and did clearly more sets/s than two or four);
 * up to DEST_INFLIGHT once every message out is older than that, so a
 * message lost with a crashed peer worker doesn't stall the dest until
 * its timeout.
 */
#define DEST_INFLIGHT       4
#define DEST_STALL_MS       50
#define DEST_BATCH_OPS      256
#define DEST_BATCH_BYTES    (1u << 20)  /* a single larger op goes alone */
#define DEST_QUEUE_MAX      100000      /* queued ops before refusing */
#define DEST_CONNECT_GRACE  1000        /* ms after open before a peer
                                         * without a pipe fails fast */

enum dest_kind {
    DEST_STORAGE = 0,           /* a local storage worker: wait for it */
    DEST_PEER,                  /* a peer node: fail fast when down */
};

struct dest_op;
typedef void (*dest_done_fn)(struct dest_op *op, const uint8_t *result,
                             size_t len, const char *err);

struct dest_op {
    TAILQ_ENTRY(dest_op) link;
    const uint8_t *op;          /* a packed rzkv.NodeOp; not owned, must
                                 * live until done */
    size_t op_len;
    nng_time deadline;          /* fail with "timeout" after this */
    dest_done_fn done;
    void *arg;
    int sent;                   /* set once handed to the network */
    int alone;                  /* send in a message of its own (its
                                 * result may be as large as a message) */
};
TAILQ_HEAD(dest_op_list, dest_op);

struct dest;

/* A raw request's answer: reply is the caller's (NULL on error). */
typedef void (*dest_call_fn)(void *arg, nng_msg *reply, const char *err);

/*
 * Open a connection to url (ipc:// or tcp://), dialed by the front
 * thread and redialed forever (sp.c).
 * name is for messages ("storage 1", "node n2").  A peer's replies are
 * limited to recvmax bytes (its front door's limit too); a local storage
 * worker's are not, since a batch of reads answers with all their values.
 * NULL with err on error.
 */
struct dest *dest_open(const char *name, const char *url,
                       enum dest_kind kind, nng_mtx *lock, size_t recvmax,
                       char *err, size_t errlen);
/* A peer removed by a reload: submissions fail from now on, and what is
 * in flight fails at the next tick. */
void dest_retire(struct dest *d, const char *why);
/* Stop dialing a retired dest; call without the lock. */
void dest_hangup(struct dest *d);
/*
 * Close the socket, failing everything in flight or queued; call without
 * the lock.  The struct stays allocated and retired, so a view or an
 * operation that still points at it gets "closed" instead of a crash;
 * only the process exit reclaims it.
 */
void dest_close(struct dest *d);

const char *dest_name(const struct dest *d);
const char *dest_url(const struct dest *d);
/* A pipe is up.  Readable without the lock too. */
int dest_connected(const struct dest *d);
/* Why it is not reachable ("not connected", "removed"), or NULL. */
const char *dest_down_reason(const struct dest *d, nng_time now);
/* No message in flight and nothing queued. */
int dest_idle(const struct dest *d);

/* 0: queued or sent; -1: refused now, *why says why (op not kept). */
int dest_submit(struct dest *d, struct dest_op *op, const char **why);

/*
 * Send one whole Envelope (ListKeys, NodeInfoRequest) and call cb with the
 * reply message.  req is consumed.  0, or -1 with *why (cb not called).
 */
int dest_call(struct dest *d, nng_msg *req, nng_duration timeout,
              dest_call_fn cb, void *arg, const char **why);

/*
 * Periodic work: fail queued operations past their deadline, and fail
 * fast the messages in flight to a peer that lost its connection.
 */
void dest_tick(struct dest *d, nng_time now);

struct dest_stats {
    uint64_t messages;          /* NodeBatch messages sent */
    uint64_t ops;               /* operations sent in them */
    uint64_t failed;            /* operations completed with an error */
};
void dest_get_stats(const struct dest *d, struct dest_stats *st);

#endif

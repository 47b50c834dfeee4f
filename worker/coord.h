/*
 * coord.h - the coordinator worker's state, shared by its three files:
 *
 *   coord.c          coord_main(): sockets, request slots, the tick,
 *                    reload and stop
 *   coord_front.c    the node's TCP address: clients' and peers'
 *                    connections, served on the loop thread (sp_loop.c),
 *                    which also carries dest.c's connections
 *   coord_cluster.c  the Cluster API: quorum reads and writes (ABD)
 *   coord_node.c     the Node API from peers: NodeBatch split over the
 *                    local storage workers, key listing, node info
 *   coord_repair.c   anti-entropy: coordinator 0 compares this node's
 *                    keys with its peers' and copies the newer versions
 *
 * Threads: the loop's (sp_loop.c), the tick's, anti-entropy's (on
 * coordinator 0), nng's callbacks.  One lock (coord.lock) guards
 * everything below that changes; it is never held across a blocking call
 * (anti-entropy waits on a condition variable, which releases it).
 */
#ifndef RZKV_COORD_H
#define RZKV_COORD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <nng/nng.h>

#include "arena.h"
#include "conf.h"
#include "dest.h"
#include "quorum.h"
#include "ring.h"
#include "rzkv.pb-c.h"

#define COORD_SLOTS          512    /* requests at once from the front door */
#define FRONT_MAX_BACKTRACE  32     /* 8 hops of 4 bytes, as nng allows */
#define COORD_MAX_CLUSTER    384    /* cluster ops at once: the rest of the
                                     * slots stay free for peers' batches,
                                     * so nodes can't starve each other */
#define COORD_TICK_MS        5
#define COORD_MAX_TIMEOUT_MS 600000
/* The message of a TOO_LARGE NodeResult that only means "this result did
 * not fit in the batch's reply: ask for it alone". */
#define FWD_RESEND_ALONE     "result too large for a batch reply; resend alone"

/* One view of the cluster: what a reload replaces as a whole. */
struct topo {
    unsigned refs;
    struct cluster_conf *conf;
    struct placement place;     /* node i of it is conf->nodes[i] */
    int self;                   /* this node's index */
    struct dest **dest;         /* per node; NULL for self */
    const char **names;         /* per node: its id */
};

struct sp_conn;

/* A request slot: one request from the front door (coord_front.c). */
struct srv {
    struct sp_conn *conn;       /* the requester's connection */
    struct srv *next_free;      /* free slots */
    nng_msg *spare;             /* a free slot's last reply, emptied: the
                                 * next request's message, no malloc */
    uint8_t hdrlen;
    uint8_t hdr[FRONT_MAX_BACKTRACE]; /* the requester's backtrace */
};

struct coord_peer {             /* every peer dest ever opened */
    char *id;
    char *url;
    struct dest *dest;
    int retired;
    int hung_up;                /* its dialer closed (main thread only) */
};

struct cop;
TAILQ_HEAD(cop_list, cop);

struct coord {
    nng_mtx *lock;
    const struct node_conf *node;
    int instance;
    char writer[300];           /* "NODE-ID/cINSTANCE" */
    size_t writer_len;
    uint64_t nonce;             /* per stamp minted, from CLOCK_REALTIME */
    size_t recvmax;

    struct topo *topo;
    unsigned shards;
    struct dest **shard;        /* local storage workers */
    struct coord_peer *peers;
    size_t npeers;

    struct srv *srv;            /* COORD_SLOTS request slots */
    pthread_t tick;             /* the deadline tick */
    int stopping;               /* STOP received: refuse cluster requests */
    int ticking;

    struct cop_list by_deadline;/* cluster ops not yet answered */
    unsigned cluster_ops;       /* answered or not: alive */
    unsigned cluster_waiting;   /* not answered yet */
    unsigned pending_replies;   /* requests taken and not answered */

    struct {
        uint64_t requests, gets, sets, dels, batches, batch_ops;
        uint64_t unavailable, unknown, repairs, bad;
    } stats;
};

extern struct coord coord;

/* coord.c */
void srv_dispatch(struct srv *s, nng_msg *m);
void srv_reply(struct srv *s, nng_msg *m);
void srv_reply_error(struct srv *s, nng_msg *m, Rzkv__Status status,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void topo_ref(struct topo *t);
void topo_unref(struct topo *t);
/*
 * A key's replicas under t, as node indexes (room for QUORUM_MAX_REPLICAS):
 * while nodes join or leave, those of the placement after the change and
 * of the one before it, in[i] (if not NULL) saying which (ring.h).
 */
unsigned topo_replicas(const struct topo *t, const void *key, size_t len,
                       size_t *node, uint8_t *in);
/*
 * ReplicaSet.expires_ms for a write sent now by a request of timeout_ms:
 * its deadline plus cluster.max_clock_skew_ms, by this node's wall clock.
 */
uint64_t topo_write_expiry(const struct topo *t, unsigned timeout_ms);
/* Log at most a few lines a second about bad input. */
#define coord_log_bad(...) coord_log_bad_at(__func__, __VA_ARGS__)
void coord_log_bad_at(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* coord_front.c: the node's address, on the loop thread (sp_loop.c) */
void front_listen(struct srv *slots, size_t nslots);
void front_reply(struct srv *s, nng_msg *m);

/*
 * A request unpacked into an arena of its own (arena.h), so that its
 * dozen pieces cost no malloc and free: env and all it points to are
 * valid until req_free().  The arenas are pooled.
 */
struct req {
    Rzkv__Envelope *env;        /* NULL: the bytes did not decode */
    struct arena arena;
    struct req *next_free;
};

/* coord.c; NULL if out of memory.  Any thread. */
struct req *req_unpack(const uint8_t *data, size_t len);
void req_free(struct req *rq);

/* coord_cluster.c; rq is consumed. */
void cluster_request(struct srv *s, nng_msg *m, struct req *rq);
void cluster_tick(nng_time now);

/* coord_node.c; rq is consumed. */
void node_batch(struct srv *s, nng_msg *m, struct req *rq);
void node_list_keys(struct srv *s, nng_msg *m, struct req *rq);
void node_info(struct srv *s, nng_msg *m, struct req *rq);

/* One merged page of key listings: entries point into the replies. */
struct list_page {
    Rzkv__Entry **entries;      /* in key order; free() the array */
    size_t n;
    const ProtobufCBinaryData *next;    /* first key not listed, or NULL */
};
int list_key_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b);
/* Merge the ListKeysReply pages of n shards into at most limit entries,
 * without skipping a key any shard has not listed yet.  0, or -1 (memory). */
int list_merge(Rzkv__Reply *const *replies, unsigned n, size_t limit,
               struct list_page *page);

/* coord_repair.c: called by coord_main(), without the lock */
void repair_start(void);
void repair_stop(void);
/* Pass now, not at the interval: a reload changed where keys are placed,
 * or rzkvctl repair.  t: coord.topo; why: for the log. */
void repair_soon(const struct topo *t, const char *why);

#endif

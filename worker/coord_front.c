/*
 * coord_front.c - the node's TCP address, served by the coordinator itself.
 *
 * NAME
 *	coord_front - clients' and peers' connections on one epoll thread
 * DESCRIPTION
 *	The supervisor binds node.local_address once and hands the socket to
 *	every coordinator it starts (RZKV_LISTEN_FD, common/contract.h).  The
 *	socket outlives any coordinator: while one restarts, new connections
 *	wait in the kernel's backlog.  A coordinator listen()s on it when it
 *	is ready, accepts connections and speaks nng's SP protocol over TCP
 *	itself, as the REP end: an 8-byte handshake each way, then messages
 *	framed by a 64-bit big-endian length, each starting with the
 *	requester's backtrace (4-byte words up to one with the high bit set,
 *	the request id) that the reply carries back.  Clients and peers are
 *	ordinary nng REQ sockets and see no difference.
 *
 *	Why not an nng socket: nng 1.5 hands every message between several
 *	threads on each side of each hop, and on this class of machine those
 *	handoffs were most of the cluster's CPU (bench/RESULTS.md).  Here the
 *	loop thread (sp_loop.c) reads every connection and calls
 *	srv_dispatch() directly; a reply is written by whichever thread
 *	produces it, straight to the socket (the loop's, once the event that
 *	produced it is handled: sp_loop.c).
 *
 *	A peer's NodeBatch at a node with one storage worker goes, undecoded,
 *	straight to that worker over its IPC socket (the SP protocol again,
 *	with IPC framing: a 0x01 byte before the length), with our own
 *	request id in front; the worker's reply goes back to the peer with the
 *	peer's backtrace.  The worker answers what the coordinator would
 *	(worker/storage.c).  When the worker is not connected, or too many
 *	batches are waiting on it, a batch takes the long way, through
 *	node_batch(), which answers UNAVAILABLE for what it cannot reach.  A
 *	batch in flight when the worker dies is lost, and the peer's deadline
 *	answers for it, as before.
 *
 *	Limits: a message longer than coord.recvmax closes its connection (as
 *	nng does); at most COORD_SLOTS requests are served at once, after
 *	which reading stops until one is answered.
 * SEE ALSO
 *	supervisor/sup_front.c (the socket's owner), worker/sp_loop.c,
 *	worker/coord.c
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batch.h"
#include "coord.h"
#include "log.h"
#include "sp.h"
#include "wire.h"

#define FRONT_LISTEN_BACKLOG 1024
#define FRONT_FWD_MAX       1024    /* batches waiting on the storage worker */
#define FRONT_SPARE_MAX     (16 * 1024) /* a reply message a slot keeps */

/* A batch handed to the storage worker, waiting for its reply. */
struct front_fwd {
    struct sp_conn *conn;       /* NULL: free */
    uint32_t gen;
    uint8_t hdrlen;
    uint8_t hdr[SP_MAX_BACKTRACE];
};

static struct {
    /* Peers' batches straight to storage worker 0: under coord.lock. */
    struct spc *store;          /* NULL: every batch to node_batch() */
    unsigned nfwd, free_top;
    uint32_t free_idx[FRONT_FWD_MAX];
    struct front_fwd fwd[FRONT_FWD_MAX];

    pthread_mutex_t pool_lock;  /* the free request slots */
    struct srv *free_srv;
} front = { .pool_lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- request slots --------------------------------------------------------- */

static struct srv *
srv_take(void)
{
    pthread_mutex_lock(&front.pool_lock);
    struct srv *s = front.free_srv;
    if (s != NULL)
        front.free_srv = s->next_free;
    pthread_mutex_unlock(&front.pool_lock);
    return s;
}

static void
srv_put(struct srv *s)
{
    pthread_mutex_lock(&front.pool_lock);
    s->next_free = front.free_srv;
    front.free_srv = s;
    pthread_mutex_unlock(&front.pool_lock);
    sp_loop_resume();
}

/* ---- the storage worker -------------------------------------------------- */

/*
 * Hand a peer's batch to the storage worker; 0 if it took it, -1 if the
 * batch must take the long way.  Loop thread.
 */
static int
store_forward(struct sp_conn *c, const uint8_t *hdr, size_t hdrlen,
              const uint8_t *body, size_t len)
{
    int rc = -1;
    nng_mtx_lock(coord.lock);
    if (spc_up(front.store) && front.free_top > 0) {
        uint32_t idx = front.free_idx[--front.free_top];
        struct front_fwd *f = &front.fwd[idx];
        /* Our request id: the slot and its generation. */
        uint32_t id = (f->gen & 0x1fffff) << 10 | idx;
        if (spc_send(front.store, id, body, len) == 0) {
            f->conn = c;
            sp_conn_ref(c);
            f->hdrlen = (uint8_t)hdrlen;
            memcpy(f->hdr, hdr, hdrlen);
            front.nfwd++;
            rc = 0;
        } else {
            front.free_top++;
        }
    }
    nng_mtx_unlock(coord.lock);
    return rc;
}

/* A reply from the storage worker: back to the peer that asked. */
static void
store_reply(void *arg, uint32_t id, const uint8_t *body, size_t len)
{
    (void)arg;
    uint32_t idx = id & (FRONT_FWD_MAX - 1);
    struct front_fwd *f = &front.fwd[idx];
    if (f->conn == NULL || ((id >> 10) & 0x1fffff) != (f->gen & 0x1fffff))
        return;                 /* not ours any more */
    sp_conn_reply(f->conn, f->hdr, f->hdrlen, body, len);
    sp_conn_unref(f->conn);
    f->conn = NULL;
    f->gen++;
    front.free_idx[front.free_top++] = idx;
    front.nfwd--;
}

/* Batches in flight when the worker goes are dropped: their peers'
 * deadlines answer for them. */
static void
store_state(void *arg, int up, const char *why)
{
    (void)arg;
    if (up) {
        log_info("front door: peers' batches go to storage worker 0");
        return;
    }
    log_info("front door: storage worker 0 disconnected (%s); %u "
             "forwarded batches dropped", why, front.nfwd);
    for (unsigned i = 0; i < FRONT_FWD_MAX; i++) {
        struct front_fwd *f = &front.fwd[i];
        if (f->conn != NULL) {
            sp_conn_unref(f->conn);
            f->conn = NULL;
            f->gen++;
            front.free_idx[front.free_top++] = i;
        }
    }
    front.nfwd = 0;
}

/* ---- requests -------------------------------------------------------------- */

static int
is_node_batch(const uint8_t *body, size_t len)
{
    return len > 0 && body[0] == ((BATCH_ENVELOPE_NODE << 3) | PB_LEN);
}

/*
 * One request from c, on the loop thread: to the storage worker, or to a
 * slot and srv_dispatch().  -1 when no slot is free.
 */
static int
front_request(struct sp_conn *c, const uint8_t *hdr, size_t hdrlen,
              const uint8_t *body, size_t len)
{
    if (front.store != NULL && is_node_batch(body, len) &&
        store_forward(c, hdr, hdrlen, body, len) == 0)
        return 0;
    struct srv *s = srv_take();
    if (s == NULL)
        return -1;
    nng_msg *m = s->spare;
    s->spare = NULL;
    if ((m == NULL && nng_msg_alloc(&m, 0) != 0) ||
        nng_msg_append(m, body, len) != 0) {
        if (m != NULL)
            nng_msg_free(m);
        srv_put(s);
        coord_log_bad("out of memory for a %zu-byte request: dropped", len);
        return 0;
    }
    s->conn = c;
    sp_conn_ref(c);
    s->hdrlen = (uint8_t)hdrlen;
    memcpy(s->hdr, hdr, hdrlen);
    srv_dispatch(s, m);
    return 0;
}

void
front_reply(struct srv *s, nng_msg *m)
{
    struct sp_conn *c = s->conn;
    sp_conn_reply(c, s->hdr, s->hdrlen, nng_msg_body(m), nng_msg_len(m));
    wire_msg_recycle(&s->spare, m, FRONT_SPARE_MAX);
    s->conn = NULL;
    sp_conn_unref(c);
    srv_put(s);
}

/*
 * Serve the node's address, when the supervisor gave its socket as
 * RZKV_LISTEN_FD (a coordinator started by hand has none and serves only
 * its IPC socket), with slots as the requests' slots.  listen() on a
 * socket that already listens (a restarted coordinator's) only sets the
 * backlog.
 */
void
front_listen(struct srv *slots, size_t nslots)
{
    const char *env = getenv(RZKV_ENV_LISTEN_FD);
    char err[256];

    for (size_t i = nslots; i-- > 0;)
        srv_put(&slots[i]);
    if (env == NULL || atoi(env) != RZKV_LISTEN_FD)
        return;
    int type;
    socklen_t tl = sizeof(type);
    if (getsockopt(RZKV_LISTEN_FD, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
        type != SOCK_STREAM)
        fatalx("%s=%d is not a stream socket", RZKV_ENV_LISTEN_FD,
               RZKV_LISTEN_FD);
    int fd = RZKV_LISTEN_FD;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
        fatal("front door: fcntl");
    if (coord.node->storage_workers == 1) {
        char url[4200];
        snprintf(url, sizeof(url), RZKV_STORAGE_IPC_FMT, coord.node->run_dir,
                 0);
        for (unsigned i = 0; i < FRONT_FWD_MAX; i++)
            front.free_idx[front.free_top++] = FRONT_FWD_MAX - 1 - i;
        front.store = spc_open(url, 0, coord.lock, store_reply, store_state,
                               NULL, err, sizeof(err));
        if (front.store == NULL)
            fatalx("front door: %s", err);
    }
    if (listen(fd, FRONT_LISTEN_BACKLOG) != 0)
        fatal("front door: listen");
    sp_loop_listen(fd, 0, coord.recvmax, front_request);
    log_info("front door: serving %s%s", coord.node->local_address,
             front.store != NULL ? "; peers' batches go straight to storage "
             "worker 0" : "");
}

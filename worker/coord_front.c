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
 *	handoffs were most of the cluster's CPU (bench/RESULTS.md).  Here one
 *	thread reads every connection and calls srv_dispatch() directly; a
 *	reply is written by whichever thread produces it, straight to the
 *	socket, and the epoll thread only finishes writes that would block.
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
 *	nng does); at most COORD_TCP_SLOTS requests are served at once, after
 *	which reading stops until one is answered.
 * SEE ALSO
 *	supervisor/sup_front.c (the socket's owner), worker/coord.c
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "batch.h"
#include "coord.h"
#include "log.h"
#include "sp.h"

#define FRONT_LISTEN_BACKLOG 1024
#define FRONT_READ_CHUNK    65536
#define FRONT_EVENTS        64
#define FRONT_FWD_MAX       1024    /* batches waiting on the storage worker */

/* A client's or a peer's connection. */
struct front_conn {
    struct front_item item;
    pthread_mutex_t lock;       /* fd, out, want_out, stalled, refs */
    int fd;                     /* -1 once closed */
    unsigned refs;              /* the epoll thread's, and one per request */
    int handshaken;
    int want_out;               /* EPOLLOUT is armed: out is not empty */
    int stalled;                /* no free slot: not reading */
    int closed;                 /* epoll thread: closed in this round */
    struct buf in;              /* epoll thread only */
    struct buf out;
    struct front_conn *next_stalled;
    LIST_ENTRY(front_conn) link;  /* front.conns, while open */
};

/* A batch handed to the storage worker, waiting for its reply. */
struct front_fwd {
    struct front_conn *conn;    /* NULL: free */
    uint32_t gen;
    uint8_t hdrlen;
    uint8_t hdr[SP_MAX_BACKTRACE];
};

static struct {
    int epfd;
    struct front_item listen_item, wake_item;
    int listen_fd;
    int wake_fd;
    pthread_t thread;
    _Atomic int stopping;
    LIST_HEAD(, front_conn) conns;  /* epoll thread: the open ones */
    size_t maxmsg;              /* coord.recvmax plus a backtrace */

    /* Peers' batches straight to storage worker 0: under coord.lock. */
    struct spc *store;          /* NULL: every batch to node_batch() */
    unsigned nfwd, free_top;
    uint32_t free_idx[FRONT_FWD_MAX];
    struct front_fwd fwd[FRONT_FWD_MAX];

    pthread_mutex_t pool_lock;  /* the free TCP slots, stalled, kicked */
    struct srv *free_srv;
    struct front_conn *stalled;
    int kicked;                 /* the wake fd was written */
    struct front_conn *closed;  /* epoll thread: freed after each round */
} front;

/* ---- wakeups and slots --------------------------------------------------- */

void
front_wake_up(void)
{
    uint64_t one = 1;
    if (write(front.wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("front door: wake");
}

int
front_epoll_fd(void)
{
    return front.epfd;
}

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
    int kick = front.stalled != NULL && !front.kicked;
    if (kick)
        front.kicked = 1;
    pthread_mutex_unlock(&front.pool_lock);
    if (kick)
        front_wake_up();
}

/* ---- connections --------------------------------------------------------- */

/* Under c->lock: what epoll should wait for on c. */
static void
conn_arm(struct front_conn *c)
{
    struct epoll_event ev = {
        .events = (c->stalled ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0),
        .data.ptr = &c->item,
    };
    if (c->fd >= 0 && epoll_ctl(front.epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        log_warn("front door: epoll_ctl");
}

static void
conn_unref(struct front_conn *c)
{
    pthread_mutex_lock(&c->lock);
    unsigned left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left > 0)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

static void
conn_ref(struct front_conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

/*
 * Send one frame on c, from any thread: write what the socket takes now
 * and leave the rest to the epoll thread.  A connection gone meanwhile
 * drops it: its requester has hung up.
 */
static void
conn_send(struct front_conn *c, const struct iovec *iov, int n)
{
    size_t total = 0, done = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;

    pthread_mutex_lock(&c->lock);
    if (c->fd < 0)
        goto out;
    if (!c->want_out) {
        ssize_t w = writev(c->fd, iov, n);
        if (w > 0)
            done = (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            shutdown(c->fd, SHUT_RDWR);     /* the epoll thread closes it */
            goto out;
        }
    }
    if (done == total)
        goto out;
    for (int i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if (done >= len) {
            done -= len;
            continue;
        }
        if (buf_append(&c->out, (const uint8_t *)iov[i].iov_base + done,
                       len - done) != 0) {
            log_warnx("front door: out of memory for a reply: closing "
                      "the connection");
            shutdown(c->fd, SHUT_RDWR);
            goto out;
        }
        done = 0;
    }
    if (!c->want_out) {
        c->want_out = 1;
        conn_arm(c);
    }
out:
    pthread_mutex_unlock(&c->lock);
}

/* Reply frame: length, the requester's backtrace, the body. */
static void
conn_reply(struct front_conn *c, const uint8_t *hdr, size_t hdrlen,
           const void *body, size_t len)
{
    uint8_t lenb[8];
    sp_put_be64(lenb, hdrlen + len);
    struct iovec iov[3] = {
        { lenb, sizeof(lenb) },
        { (void *)hdr, hdrlen },
        { (void *)body, len },
    };
    conn_send(c, iov, 3);
}

/* The epoll thread's end of a connection; requests in flight keep it. */
static void
conn_close(struct front_conn *c)
{
    if (c->closed)
        return;
    pthread_mutex_lock(&c->lock);
    epoll_ctl(front.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&c->lock);
    c->closed = 1;
    LIST_REMOVE(c, link);
    /* Off the stalled list; freed after this round of events. */
    pthread_mutex_lock(&front.pool_lock);
    for (struct front_conn **pp = &front.stalled; *pp != NULL;
         pp = &(*pp)->next_stalled)
        if (*pp == c) {
            *pp = c->next_stalled;
            break;
        }
    pthread_mutex_unlock(&front.pool_lock);
    c->next_stalled = front.closed;
    front.closed = c;
}

static void
conn_flush(struct front_conn *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->fd >= 0 && c->out.off < c->out.len) {
        ssize_t w = write(c->fd, c->out.data + c->out.off,
                          c->out.len - c->out.off);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                shutdown(c->fd, SHUT_RDWR);
            break;
        }
        c->out.off += (size_t)w;
    }
    if (c->out.off == c->out.len) {
        c->out.off = c->out.len = 0;
        buf_trim(&c->out);
        c->want_out = 0;
        conn_arm(c);
    }
    pthread_mutex_unlock(&c->lock);
}

static void
conn_set_stalled(struct front_conn *c, int stalled)
{
    pthread_mutex_lock(&c->lock);
    c->stalled = stalled;
    conn_arm(c);
    pthread_mutex_unlock(&c->lock);
}

/* ---- the storage worker -------------------------------------------------- */

/*
 * Hand a peer's batch to the storage worker; 0 if it took it, -1 if the
 * batch must take the long way.  Front thread.
 */
static int
store_forward(struct front_conn *c, const uint8_t *hdr, size_t hdrlen,
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
            conn_ref(c);
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
    conn_reply(f->conn, f->hdr, f->hdrlen, body, len);
    conn_unref(f->conn);
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
            conn_unref(f->conn);
            f->conn = NULL;
            f->gen++;
            front.free_idx[front.free_top++] = i;
        }
    }
    front.nfwd = 0;
}

/* ---- requests ------------------------------------------------------------ */

static int
is_node_batch(const uint8_t *body, size_t len)
{
    return len > 0 && body[0] == ((BATCH_ENVELOPE_NODE << 3) | PB_LEN);
}

/*
 * One request from c: to the storage worker, or to a slot and
 * srv_dispatch().  -1 when no slot is free: c stalls until one is.
 */
static int
conn_request(struct front_conn *c, const uint8_t *p, size_t len)
{
    size_t hdrlen = sp_backtrace_len(p, len);
    if (hdrlen == 0)
        return 0;               /* no request id: dropped, as nng does */
    const uint8_t *body = p + hdrlen;
    size_t blen = len - hdrlen;
    if (front.store != NULL && is_node_batch(body, blen) &&
        store_forward(c, p, hdrlen, body, blen) == 0)
        return 0;
    struct srv *s = srv_take();
    if (s == NULL)
        return -1;
    nng_msg *m;
    if (nng_msg_alloc(&m, blen) != 0) {
        srv_put(s);
        coord_log_bad("out of memory for a %zu-byte request: dropped", blen);
        return 0;
    }
    memcpy(nng_msg_body(m), body, blen);
    s->conn = c;
    conn_ref(c);
    s->hdrlen = (uint8_t)hdrlen;
    memcpy(s->hdr, p, hdrlen);
    srv_dispatch(s, m);
    return 0;
}

/* Take every whole message in c's input; stall if slots run out. */
static void
conn_process(struct front_conn *c)
{
    struct buf *in = &c->in;
    for (;;) {
        size_t have = in->len - in->off;
        const uint8_t *p = in->data + in->off;
        if (!c->handshaken) {
            if (have < SP_HANDSHAKE_LEN)
                break;
            if (!sp_handshake_ok(p, SP_PROTO_REQ)) {
                coord_log_bad("front door: a connection that is not an SP "
                              "REQ socket: closed");
                conn_close(c);
                return;
            }
            in->off += SP_HANDSHAKE_LEN;
            c->handshaken = 1;
            continue;
        }
        if (have < 8)
            break;
        uint64_t n = sp_get_be64(p);
        if (n > front.maxmsg) {
            coord_log_bad("front door: a %llu-byte message, over the "
                          "%zu-byte limit: connection closed",
                          (unsigned long long)n, front.maxmsg);
            conn_close(c);
            return;
        }
        if (have < 8 + n) {
            if (buf_reserve(in, 8 + n - have) != 0) {
                coord_log_bad("front door: out of memory for a %llu-byte "
                              "message: connection closed",
                              (unsigned long long)n);
                conn_close(c);
            }
            break;
        }
        if (conn_request(c, p + 8, n) != 0) {
            /* No free slot.  Recheck under the pool's lock: a slot freed
             * since would not have woken us. */
            pthread_mutex_lock(&front.pool_lock);
            int still = front.free_srv == NULL;
            if (still) {
                c->next_stalled = front.stalled;
                front.stalled = c;
            }
            pthread_mutex_unlock(&front.pool_lock);
            if (!still)
                continue;
            conn_set_stalled(c, 1);
            return;
        }
        in->off += 8 + n;
    }
    buf_trim(in);
}

static void
conn_read(struct front_conn *c)
{
    struct buf *in = &c->in;
    if (buf_reserve(in, FRONT_READ_CHUNK) != 0) {
        conn_close(c);
        return;
    }
    ssize_t r = read(c->fd, in->data + in->len, in->cap - in->len);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (r > 0) {
        in->len += (size_t)r;
        conn_process(c);
    }
}

/* Slots came free: serve the stalled connections again. */
static void
unstall(void)
{
    uint64_t n;
    if (read(front.wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warn("front door: wake read");
    pthread_mutex_lock(&front.pool_lock);
    struct front_conn *list = front.stalled;
    front.stalled = NULL;
    front.kicked = 0;
    pthread_mutex_unlock(&front.pool_lock);
    while (list != NULL) {
        struct front_conn *c = list;
        list = c->next_stalled;
        conn_set_stalled(c, 0);
        conn_process(c);
    }
}

/* ---- accepting ----------------------------------------------------------- */

static void
front_accept(void)
{
    for (;;) {
        int fd = accept4(front.listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EINVAL) {
                /* shut down by the supervisor: the node is stopping */
                epoll_ctl(front.epfd, EPOLL_CTL_DEL, front.listen_fd, NULL);
                log_info("front door: closed, no new connections");
                return;
            }
            coord_log_bad("front door: accept: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct front_conn *c = calloc(1, sizeof(*c));
        uint8_t hs[SP_HANDSHAKE_LEN];
        sp_handshake(hs, SP_PROTO_REP);
        struct epoll_event ev = { .events = EPOLLIN };
        if (c == NULL || write(fd, hs, sizeof(hs)) != sizeof(hs)) {
            free(c);
            close(fd);
            continue;
        }
        c->item.kind = FK_CONN;
        pthread_mutex_init(&c->lock, NULL);
        c->fd = fd;
        c->refs = 1;
        LIST_INSERT_HEAD(&front.conns, c, link);
        ev.data.ptr = &c->item;
        if (epoll_ctl(front.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            log_warn("front door: epoll_ctl");
            close(fd);
            LIST_REMOVE(c, link);
            pthread_mutex_destroy(&c->lock);
            free(c);
        }
    }
}

/* ---- the thread ---------------------------------------------------------- */

/* The connections closed in this round: the epoll thread's hold goes. */
static void
release_closed(void)
{
    while (front.closed != NULL) {
        struct front_conn *c = front.closed;
        front.closed = c->next_stalled;
        conn_unref(c);
    }
}

static void *
front_main(void *arg)
{
    struct epoll_event evs[FRONT_EVENTS];
    (void)arg;

    while (!front.stopping) {
        int timeout = spc_poll(nng_clock());
        int n = epoll_wait(front.epfd, evs, FRONT_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            fatal("front door: epoll_wait");
        for (int i = 0; i < n; i++) {
            struct front_item *it = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (it->kind == FK_LISTEN) {
                front_accept();
            } else if (it->kind == FK_WAKE) {
                unstall();
            } else if (it->kind == FK_SPC) {
                spc_event(it, e);
            } else {
                struct front_conn *c = (struct front_conn *)it;
                if (c->closed)
                    continue;
                if (e & EPOLLOUT)
                    conn_flush(c);
                if (c->stalled && (e & (EPOLLHUP | EPOLLERR)))
                    conn_close(c);  /* gone while we waited for a slot */
                else if (!c->stalled && (e & (EPOLLIN | EPOLLHUP |
                                              EPOLLERR)))
                    conn_read(c);
            }
        }
        release_closed();
    }
    return NULL;
}

/* ---- the coordinator's side ---------------------------------------------- */

void
front_reply(struct srv *s, nng_msg *m)
{
    struct front_conn *c = s->conn;
    conn_reply(c, s->hdr, s->hdrlen, nng_msg_body(m), nng_msg_len(m));
    nng_msg_free(m);
    s->conn = NULL;
    conn_unref(c);
    srv_put(s);
}

/*
 * Start the front thread, before the coordinator opens its connections
 * to storage and peers (sp.c), which it drives.
 */
void
front_init(void)
{
    front.listen_fd = -1;
    front.maxmsg = coord.recvmax + SP_MAX_BACKTRACE;
    front.listen_item.kind = FK_LISTEN;
    front.wake_item.kind = FK_WAKE;
    pthread_mutex_init(&front.pool_lock, NULL);
    LIST_INIT(&front.conns);
    if ((front.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (front.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        fatal("front door: epoll");
    struct epoll_event ev = { .events = EPOLLIN,
                              .data.ptr = &front.wake_item };
    if (epoll_ctl(front.epfd, EPOLL_CTL_ADD, front.wake_fd, &ev) != 0)
        fatal("front door: epoll_ctl");
    int rv = pthread_create(&front.thread, NULL, front_main, NULL);
    if (rv != 0)
        fatalx("pthread_create: %s", strerror(rv));
}

/*
 * Stop the front thread, and close every connection: the coordinator is
 * exiting, and nothing it frees at exit may be in use by that thread.
 */
void
front_stop(void)
{
    front.stopping = 1;
    front_wake_up();
    pthread_join(front.thread, NULL);
    while (!LIST_EMPTY(&front.conns))
        conn_close(LIST_FIRST(&front.conns));
    release_closed();
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
    front.listen_fd = RZKV_LISTEN_FD;
    if (fcntl(front.listen_fd, F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(front.listen_fd, F_SETFL, O_NONBLOCK) != 0)
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
    if (listen(front.listen_fd, FRONT_LISTEN_BACKLOG) != 0)
        fatal("front door: listen");
    struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
                              .data.ptr = &front.listen_item };
    if (epoll_ctl(front.epfd, EPOLL_CTL_ADD, front.listen_fd, &ev) != 0)
        fatal("front door: epoll_ctl");
    log_info("front door: serving %s%s", coord.node->local_address,
             front.store != NULL ? "; peers' batches go straight to storage "
             "worker 0" : "");
}

/*
 * sp_loop.c - one epoll thread that serves SP connections (the REP side)
 * and drives the REQ side's (sp.c), for a worker: the coordinator serves
 * the node's TCP address on it, a storage worker its IPC socket.
 *
 * One thread reads every connection and hands each whole request to the
 * worker's request function (sp_request_fn).  A reply is written by the
 * thread that makes it, straight to the socket, under the connection's
 * lock; the loop only finishes writes that would block.  The loop's own
 * replies wait until it has handled the event that made them, so that
 * what one event answers (a storage acknowledgement completes many sets)
 * leaves in one write for each connection.  When the worker
 * has no room for a request (its function returns -1), the loop stops
 * reading that connection until the worker calls sp_loop_resume().
 * Replies to a connection that closed meanwhile are dropped: its requester
 * is gone.  A connection is freed when the loop and every request that
 * holds it (sp_conn_ref) have let go.
 *
 * Limits: a message over the listener's maxmsg closes its connection, as
 * nng does; a message without a request id is dropped, as nng does.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "sp.h"

#define SP_READ_CHUNK       65536
#define SP_EVENTS           64

struct sp_conn {
    struct sp_item item;        /* first: what epoll points at */
    pthread_mutex_t lock;       /* fd, out, want_out, stalled, refs */
    int fd;                     /* -1 once closed */
    int ipc;                    /* IPC framing, else TCP */
    unsigned refs;              /* the loop's, and one per request */
    int handshaken;
    int want_out;               /* EPOLLOUT is armed: out is not empty */
    int stalled;                /* the worker had no room: not reading */
    int closed;                 /* loop: closed in this round */
    int corked;                 /* on loop.corked: out holds replies */
    struct sp_conn *cork_next;
    struct buf in;              /* loop only */
    struct buf out;
    struct sp_conn *next;       /* stalled list, then closed list */
    LIST_ENTRY(sp_conn) link;   /* loop.conns, while open */
};

static struct {
    int epfd;
    struct sp_item listen_item, wake_item;
    int listen_fd;
    int listen_ipc;
    size_t maxmsg;
    sp_request_fn request;
    int wake_fd;
    pthread_t thread;
    _Atomic int stopping;
    LIST_HEAD(, sp_conn) conns; /* loop only: the open ones */
    struct sp_conn *closed;     /* loop only: released after each round */
    struct sp_conn *corked;     /* loop only: replies held to the event.s end */

    pthread_mutex_t stall_lock; /* stalled, kicked; resumes changes under it */
    struct sp_conn *stalled;
    _Atomic unsigned resumes;   /* read without it: see conn_stall */
    int kicked;                 /* the wake fd was written */
} loop = { .epfd = -1, .listen_fd = -1, .wake_fd = -1 };

/* Set on the loop thread: the replies it makes while it handles one
 * event leave together when the event is done (uncork_all). */
static _Thread_local int on_loop;

void
sp_loop_wake(void)
{
    uint64_t one = 1;
    if (write(loop.wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("wake");
}

int
sp_loop_epoll_fd(void)
{
    return loop.epfd;
}

void
sp_loop_resume(void)
{
    pthread_mutex_lock(&loop.stall_lock);
    loop.resumes++;
    int kick = loop.stalled != NULL && !loop.kicked;
    if (kick)
        loop.kicked = 1;
    pthread_mutex_unlock(&loop.stall_lock);
    if (kick)
        sp_loop_wake();
}

/* ---- connections ----------------------------------------------------------- */

/* Under c->lock: what epoll should wait for on c. */
static void
conn_arm(struct sp_conn *c)
{
    struct epoll_event ev = {
        .events = (c->stalled ? 0 : EPOLLIN) | (c->want_out ? EPOLLOUT : 0),
        .data.ptr = &c->item,
    };
    if (c->fd >= 0 && epoll_ctl(loop.epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        log_warn("epoll_ctl");
}

void
sp_conn_ref(struct sp_conn *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

void
sp_conn_unref(struct sp_conn *c)
{
    pthread_mutex_lock(&c->lock);
    unsigned left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left > 0)
        return;
    pthread_mutex_destroy(&c->lock);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

/* Send iov on c, from any thread. */
static void
conn_send(struct sp_conn *c, const struct iovec *iov, int n)
{
    size_t total = 0, done = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;

    pthread_mutex_lock(&c->lock);
    if (c->fd < 0)
        goto out;
    /* The loop's replies to one event leave together (uncork_all). */
    int hold = on_loop && !c->want_out;
    /* Straight to the socket, unless bytes are waiting before these. */
    if (!hold && !c->want_out && !c->corked) {
        ssize_t w = writev(c->fd, iov, n);
        if (w > 0)
            done = (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            shutdown(c->fd, SHUT_RDWR);     /* the loop closes it */
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
            log_warnx("out of memory for a reply: closing the connection");
            shutdown(c->fd, SHUT_RDWR);
            goto out;
        }
        done = 0;
    }
    if (hold && !c->corked) {
        c->corked = 1;
        c->cork_next = loop.corked;
        loop.corked = c;
    } else if (!c->want_out && !c->corked) {
        c->want_out = 1;
        conn_arm(c);
    }
out:
    pthread_mutex_unlock(&c->lock);
}

void
sp_conn_reply(struct sp_conn *c, const uint8_t *hdr, size_t hdrlen,
              const void *body, size_t len)
{
    uint8_t head[SP_FRAME_HEAD_MAX];
    size_t hl = sp_frame_head(head, c->ipc, hdrlen + len);
    struct iovec iov[3] = {
        { head, hl },
        { (void *)hdr, hdrlen },
        { (void *)body, len },
    };
    conn_send(c, iov, 3);
}

/* The loop's end of a connection; requests in flight keep it. */
static void
conn_close(struct sp_conn *c)
{
    if (c->closed)
        return;
    pthread_mutex_lock(&c->lock);
    epoll_ctl(loop.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    pthread_mutex_unlock(&c->lock);
    c->closed = 1;
    LIST_REMOVE(c, link);
    pthread_mutex_lock(&loop.stall_lock);
    for (struct sp_conn **pp = &loop.stalled; *pp != NULL;
         pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_mutex_unlock(&loop.stall_lock);
    c->next = loop.closed;
    loop.closed = c;
}

static void
conn_flush(struct sp_conn *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->fd >= 0 && buf_send(&c->out, c->fd) != 0)
        shutdown(c->fd, SHUT_RDWR);     /* the loop closes it */
    if (c->out.off == c->out.len) {
        buf_trim(&c->out);
        c->want_out = 0;
        conn_arm(c);
    }
    pthread_mutex_unlock(&c->lock);
}

/* An event handled: write what its replies left in each connection. */
static void
uncork_all(void)
{
    while (loop.corked != NULL) {
        struct sp_conn *c = loop.corked;
        loop.corked = c->cork_next;
        pthread_mutex_lock(&c->lock);
        c->corked = 0;
        if (c->fd >= 0 && !c->want_out) {
            if (buf_send(&c->out, c->fd) != 0) {
                shutdown(c->fd, SHUT_RDWR);     /* the loop closes it */
            } else if (c->out.off < c->out.len) {
                c->want_out = 1;
                conn_arm(c);
            } else {
                buf_trim(&c->out);
            }
        }
        pthread_mutex_unlock(&c->lock);
    }
}

static void
conn_set_stalled(struct sp_conn *c, int stalled)
{
    pthread_mutex_lock(&c->lock);
    c->stalled = stalled;
    conn_arm(c);
    pthread_mutex_unlock(&c->lock);
}

/*
 * No room for c's next request: stall it, unless room came since the
 * request was refused (resumes moved).  1 if stalled.
 */
static int
conn_stall(struct sp_conn *c, unsigned resumes_before)
{
    pthread_mutex_lock(&loop.stall_lock);
    int stall = loop.resumes == resumes_before;
    if (stall) {
        c->next = loop.stalled;
        loop.stalled = c;
    }
    pthread_mutex_unlock(&loop.stall_lock);
    if (stall)
        conn_set_stalled(c, 1);
    return stall;
}

/* Take every whole message in c's input; stall if the worker is full. */
static void
conn_process(struct sp_conn *c)
{
    struct buf *in = &c->in;
    for (;;) {
        size_t have = in->len - in->off;
        const uint8_t *p = in->data + in->off;
        if (!c->handshaken) {
            if (have < SP_HANDSHAKE_LEN)
                break;
            if (!sp_handshake_ok(p, SP_PROTO_REQ)) {
                log_warnx("a connection that is not an SP REQ socket: "
                          "closed");
                conn_close(c);
                return;
            }
            in->off += SP_HANDSHAKE_LEN;
            c->handshaken = 1;
            continue;
        }
        const uint8_t *msg;
        uint64_t n;
        size_t framed;
        int r = sp_frame_next(in, c->ipc, loop.maxmsg, &msg, &n, &framed);
        if (r == 0)
            break;
        if (r < 0) {
            if (r == -2)
                log_warnx("out of memory for a %llu-byte message: "
                          "connection closed", (unsigned long long)n);
            else
                log_warnx("a %llu-byte message, over the %zu-byte limit (or "
                          "misframed): connection closed",
                          (unsigned long long)n, loop.maxmsg);
            conn_close(c);
            return;
        }
        size_t hdrlen = sp_backtrace_len(msg, n);
        if (hdrlen > 0) {       /* else no request id: dropped, as nng does */
            unsigned resumes = loop.resumes;
            if (loop.request(c, msg, hdrlen, msg + hdrlen, n - hdrlen) != 0) {
                if (conn_stall(c, resumes))
                    return;
                continue;       /* room came meanwhile: try again */
            }
        }
        in->off += framed;
    }
    buf_trim(in);
}

static void
conn_read(struct sp_conn *c)
{
    struct buf *in = &c->in;
    if (buf_reserve(in, SP_READ_CHUNK) != 0) {
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

/* Room came: serve the stalled connections again. */
static void
unstall(void)
{
    uint64_t n;
    if (read(loop.wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_warn("wake read");
    pthread_mutex_lock(&loop.stall_lock);
    struct sp_conn *list = loop.stalled;
    loop.stalled = NULL;
    loop.kicked = 0;
    pthread_mutex_unlock(&loop.stall_lock);
    while (list != NULL) {
        struct sp_conn *c = list;
        list = c->next;
        conn_set_stalled(c, 0);
        conn_process(c);
    }
}

static void
conn_accept(void)
{
    for (;;) {
        int fd = accept4(loop.listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            if (errno == EINVAL) {
                /* shut down (by the supervisor): the node is stopping */
                epoll_ctl(loop.epfd, EPOLL_CTL_DEL, loop.listen_fd, NULL);
                log_info("listener closed: no new connections");
                return;
            }
            log_warn("accept");
            return;
        }
        if (!loop.listen_ipc) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        struct sp_conn *c = calloc(1, sizeof(*c));
        uint8_t hs[SP_HANDSHAKE_LEN];
        sp_handshake(hs, SP_PROTO_REP);
        if (c == NULL || write(fd, hs, sizeof(hs)) != sizeof(hs)) {
            free(c);
            close(fd);
            continue;
        }
        c->item.kind = SP_ITEM_CONN;
        pthread_mutex_init(&c->lock, NULL);
        c->fd = fd;
        c->ipc = loop.listen_ipc;
        c->refs = 1;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &c->item };
        if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            log_warn("epoll_ctl");
            close(fd);
            pthread_mutex_destroy(&c->lock);
            free(c);
            continue;
        }
        LIST_INSERT_HEAD(&loop.conns, c, link);
    }
}

/* ---- the thread ------------------------------------------------------------ */

static void
release_closed(void)
{
    while (loop.closed != NULL) {
        struct sp_conn *c = loop.closed;
        loop.closed = c->next;
        sp_conn_unref(c);
    }
}

static void *
loop_main(void *arg)
{
    struct epoll_event evs[SP_EVENTS];
    (void)arg;

    on_loop = 1;
    while (!loop.stopping) {
        int timeout = spc_poll(nng_clock());
        uncork_all();           /* what spc_poll's failures answered */
        int n = epoll_wait(loop.epfd, evs, SP_EVENTS, timeout);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct sp_item *it = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (it->kind == SP_ITEM_LISTEN) {
                conn_accept();
            } else if (it->kind == SP_ITEM_WAKE) {
                unstall();
            } else if (it->kind == SP_ITEM_SPC) {
                spc_event(it, e);
            } else {
                struct sp_conn *c = (struct sp_conn *)it;
                if (c->closed)
                    continue;
                if (e & EPOLLOUT)
                    conn_flush(c);
                if (c->stalled && (e & (EPOLLHUP | EPOLLERR)))
                    conn_close(c);  /* gone while it waited for room */
                else if (!c->stalled && (e & (EPOLLIN | EPOLLHUP |
                                              EPOLLERR)))
                    conn_read(c);
            }
            /* What this event answered leaves now: a later event's work
             * must not delay it. */
            uncork_all();
        }
        release_closed();
    }
    return NULL;
}

void
sp_loop_init(void)
{
    pthread_mutex_init(&loop.stall_lock, NULL);
    LIST_INIT(&loop.conns);
    loop.listen_item.kind = SP_ITEM_LISTEN;
    loop.wake_item.kind = SP_ITEM_WAKE;
    if ((loop.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (loop.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        fatal("epoll");
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &loop.wake_item };
    if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, loop.wake_fd, &ev) != 0)
        fatal("epoll_ctl");
    int rv = pthread_create(&loop.thread, NULL, loop_main, NULL);
    if (rv != 0)
        fatalx("pthread_create: %s", strerror(rv));
}

void
sp_loop_listen(int fd, int ipc, size_t maxmsg, sp_request_fn request)
{
    loop.listen_fd = fd;
    loop.listen_ipc = ipc;
    loop.maxmsg = maxmsg + SP_MAX_BACKTRACE;
    loop.request = request;
    /* EXCLUSIVE: the processes sharing a socket don't all wake. */
    struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
                              .data.ptr = &loop.listen_item };
    if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        fatal("epoll_ctl");
}

void
sp_loop_stop(void)
{
    if (loop.epfd < 0)
        return;
    loop.stopping = 1;
    sp_loop_wake();
    pthread_join(loop.thread, NULL);
    while (!LIST_EMPTY(&loop.conns))
        conn_close(LIST_FIRST(&loop.conns));
    release_closed();
}

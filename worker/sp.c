/*
 * sp.c - the coordinator's REQ connections (spc) to storage workers and
 * peers, driven by the loop thread (sp_loop.c).
 *
 * An spc is one connection to one REP socket, dialed again after every
 * failure (SPC_RETRY_MIN_MS doubling to SPC_RETRY_MAX_MS).  Sends are
 * written straight to the socket by the sending thread, under the lock
 * the owner gave (the coordinator's); what the socket does not take waits
 * in the connection's buffer for the loop thread, which also reads the
 * replies and hands each to the owner's callback, under that lock.  A
 * request id belongs to the owner (dest.c): the connection only carries
 * it and gives it back with the reply.
 *
 * See common/spwire.h for the protocol.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "sp.h"

#define SPC_RETRY_MIN_MS    10
#define SPC_RETRY_MAX_MS    250
#define SPC_READ_CHUNK      65536

/* ---- REQ connections ----------------------------------------------------- */

enum spc_state { SPC_DOWN, SPC_CONNECTING, SPC_HANDSHAKE, SPC_UP };

struct spc {
    struct sp_item item;        /* first: what epoll points at */
    nng_mtx *lock;
    int ipc;                    /* IPC framing, else TCP */
    char host[256], port[16];   /* tcp */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* ipc */
    size_t recvmax;
    spc_reply_fn reply;
    spc_state_fn state_cb;
    void *arg;

    int fd;
    enum spc_state state;
    _Atomic int up;
    int hung_up;
    int want_out;
    struct buf in, out;
    nng_time retry_at;
    nng_duration backoff;
    struct spc *next;           /* every spc (spc_all) */
};

static pthread_mutex_t spc_all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spc *spc_all;
static _Atomic nng_time spc_next_poll;  /* spc_poll is due at */

/* Some connection is down: the loop thread should dial soon. */
static void
spc_poll_soon(void)
{
    spc_next_poll = 0;
    sp_loop_wake();
}

static void
spc_arm(struct spc *c)
{
    struct epoll_event ev = {
        .events = c->state == SPC_CONNECTING ? EPOLLOUT
                  : EPOLLIN | (c->want_out ? EPOLLOUT : 0),
        .data.ptr = &c->item,
    };
    if (epoll_ctl(sp_loop_epoll_fd(), EPOLL_CTL_MOD, c->fd, &ev) != 0)
        log_warn("%s: epoll_ctl", c->ipc ? c->path : c->host);
}

/* Under the lock: close and tell the owner; redial later. */
static void
spc_down(struct spc *c, const char *why)
{
    if (c->fd < 0)
        return;
    int was_up = c->state == SPC_UP;
    epoll_ctl(sp_loop_epoll_fd(), EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = SPC_DOWN;
    c->up = 0;
    c->want_out = 0;
    c->in.off = c->in.len = 0;
    c->out.off = c->out.len = 0;
    /* No buf_trim: spc_parse may be handing out bytes of c->in. */
    c->retry_at = nng_clock() + (nng_time)c->backoff;
    spc_poll_soon();
    if (was_up)
        c->state_cb(c->arg, 0, why);
}

static void
spc_flush(struct spc *c)
{
    if (buf_send(&c->out, c->fd) != 0) {
        spc_down(c, strerror(errno));
        return;
    }
    int want = c->out.off < c->out.len;
    if (want != c->want_out) {
        c->want_out = want;
        spc_arm(c);
    }
}

static int
spc_socket(struct spc *c)
{
    if (c->ipc) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        memcpy(sun.sun_path, c->path, sizeof(sun.sun_path));
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sun,
                               sizeof(sun)) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo(c->host, c->port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

/* Under the lock: the connection is made; send our handshake. */
static void
spc_handshake(struct spc *c)
{
    uint8_t hs[SP_HANDSHAKE_LEN];
    sp_handshake(hs, SP_PROTO_REQ);
    c->state = SPC_HANDSHAKE;
    if (buf_append(&c->out, hs, sizeof(hs)) != 0) {
        spc_down(c, "out of memory");
        return;
    }
    c->want_out = 1;            /* spc_flush arms for EPOLLIN either way */
    spc_arm(c);
    spc_flush(c);
}

static void
spc_dial(struct spc *c, nng_time now)
{
    c->backoff = c->backoff ? c->backoff * 2 : SPC_RETRY_MIN_MS;
    if (c->backoff > SPC_RETRY_MAX_MS)
        c->backoff = SPC_RETRY_MAX_MS;
    c->retry_at = now + (nng_time)c->backoff;
    int fd = spc_socket(c);
    if (fd < 0)
        return;
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = &c->item };
    if (epoll_ctl(sp_loop_epoll_fd(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->state = SPC_CONNECTING;
}

/* Loop thread: dial what is down and due; ms until the next due dial,
 * or -1 if every connection is up. */
int
spc_poll(nng_time now)
{
    int wait = -1;
    if (now < spc_next_poll) {
        nng_time due = spc_next_poll;
        return due == UINT64_MAX ? -1 : (int)(due - now);
    }
    spc_next_poll = UINT64_MAX;     /* a connection lost from now on
                                     * sets it again */
    pthread_mutex_lock(&spc_all_lock);
    for (struct spc *c = spc_all; c != NULL; c = c->next) {
        nng_mtx_lock(c->lock);
        if (c->fd < 0 && !c->hung_up) {
            if (now >= c->retry_at)
                spc_dial(c, now);
            if (c->fd < 0) {
                int ms = (int)(c->retry_at - now);
                if (wait < 0 || ms < wait)
                    wait = ms < 1 ? 1 : ms;
            }
        }
        nng_mtx_unlock(c->lock);
    }
    pthread_mutex_unlock(&spc_all_lock);
    if (wait >= 0) {
        nng_time due = now + (nng_time)wait, cur = spc_next_poll;
        while (due < cur && !atomic_compare_exchange_weak(&spc_next_poll,
                                                          &cur, due))
            ;
    }
    return wait;
}

/* Under the lock: every whole reply in c->in, to the owner. */
static void
spc_parse(struct spc *c)
{
    for (;;) {
        size_t have = c->in.len - c->in.off;
        const uint8_t *p = c->in.data + c->in.off;
        if (c->state == SPC_HANDSHAKE) {
            if (have < SP_HANDSHAKE_LEN)
                break;
            if (!sp_handshake_ok(p, SP_PROTO_REP)) {
                spc_down(c, "not an SP REP socket");
                return;
            }
            c->in.off += SP_HANDSHAKE_LEN;
            c->state = SPC_UP;
            c->up = 1;
            c->backoff = 0;
            c->state_cb(c->arg, 1, NULL);
            if (c->fd < 0)
                return;
            continue;
        }
        const uint8_t *msg;
        uint64_t n;
        size_t framed;
        int r = sp_frame_next(&c->in, c->ipc, c->recvmax, &msg, &n, &framed);
        if (r == 0)
            break;
        if (r < 0 || n < 4) {
            spc_down(c, r == -2 ? "out of memory"
                        : n > c->recvmax ? "reply over the size limit"
                        : "bad frame");
            return;
        }
        c->in.off += framed;
        /* The reply may close c (its callback fails what is in flight):
         * the bytes stay valid until the buffer is reset below. */
        c->reply(c->arg, sp_get_be32(msg), msg + 4, n - 4);
        if (c->fd < 0)
            return;
    }
    buf_trim(&c->in);
}

/* Loop thread: events on c's socket. */
void
spc_event(struct sp_item *item, uint32_t events)
{
    struct spc *c = (struct spc *)item;
    nng_mtx_lock(c->lock);
    if (c->fd < 0)
        goto out;
    if (c->state == SPC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP)))
            spc_down(c, err ? strerror(err) : "connection refused");
        else
            spc_handshake(c);
        goto out;
    }
    if (events & EPOLLOUT)
        spc_flush(c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        if (buf_reserve(&c->in, SPC_READ_CHUNK) != 0) {
            spc_down(c, "out of memory");
            goto out;
        }
        ssize_t r = read(c->fd, c->in.data + c->in.len,
                         c->in.cap - c->in.len);
        if (r == 0)
            spc_down(c, "connection closed");
        else if (r < 0 && errno != EAGAIN && errno != EINTR)
            spc_down(c, strerror(errno));
        else if (r > 0) {
            c->in.len += (size_t)r;
            spc_parse(c);
        }
    }
out:
    nng_mtx_unlock(c->lock);
}

int
spc_send(struct spc *c, uint32_t id, const uint8_t *body, size_t len)
{
    uint8_t head[SP_FRAME_HEAD_MAX + 4];

    if (c->state != SPC_UP)
        return -1;
    size_t hl = sp_frame_head(head, c->ipc, 4 + len);
    sp_put_be32(head + hl, id | 0x80000000u);
    hl += 4;
    size_t done = 0, total = hl + len;
    if (c->out.off == c->out.len) {
        struct iovec iov[2] = { { head, hl }, { (void *)body, len } };
        ssize_t w = writev(c->fd, iov, 2);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            spc_down(c, strerror(errno));
            return 0;           /* sent as far as the owner knows: lost */
        }
        if (w > 0)
            done = (size_t)w;
    }
    if (done == total)
        return 0;
    if (done < hl) {
        if (buf_append(&c->out, head + done, hl - done) != 0 ||
            buf_append(&c->out, body, len) != 0) {
            spc_down(c, "out of memory");
            return 0;
        }
    } else if (buf_append(&c->out, body + (done - hl), total - done) != 0) {
        spc_down(c, "out of memory");
        return 0;
    }
    if (!c->want_out) {
        c->want_out = 1;
        spc_arm(c);
    }
    return 0;
}

int
spc_up(const struct spc *c)
{
    return c->up;
}

void
spc_hangup(struct spc *c)
{
    nng_mtx_lock(c->lock);
    c->hung_up = 1;
    spc_down(c, "hung up");
    nng_mtx_unlock(c->lock);
}

struct spc *
spc_open(const char *url, size_t recvmax, nng_mtx *lock, spc_reply_fn reply,
         spc_state_fn state, void *arg, char *err, size_t errlen)
{
    struct spc *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->item.kind = SP_ITEM_SPC;
    c->lock = lock;
    c->recvmax = recvmax ? recvmax : SIZE_MAX;
    c->reply = reply;
    c->state_cb = state;
    c->arg = arg;
    c->fd = -1;
    int port;
    if (strncmp(url, "ipc://", 6) == 0 &&
        strlen(url + 6) < sizeof(c->path)) {
        c->ipc = 1;
        snprintf(c->path, sizeof(c->path), "%s", url + 6);
    } else if (strncmp(url, "tcp://", 6) == 0 &&
               conf_parse_address(url + 6, c->host, sizeof(c->host),
                                  &port) == 0) {
        snprintf(c->port, sizeof(c->port), "%d", port);
    } else {
        snprintf(err, errlen, "%s: not an ipc:// or tcp:// address", url);
        free(c);
        return NULL;
    }
    pthread_mutex_lock(&spc_all_lock);
    c->next = spc_all;
    spc_all = c;
    pthread_mutex_unlock(&spc_all_lock);
    spc_poll_soon();            /* dial now */
    return c;
}

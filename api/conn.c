/*
 * conn.c - librzkv's connections to nodes, on one epoll thread (conn.h).
 *
 * One lock (the loop's) guards every conn of a client and every request
 * on them.  A request is in one place at a time: idle (the caller's), on
 * its conn's waiting list (for the connection), on its sent list (for
 * the reply), or on the loop's ended list (for its callback).  Whoever
 * moves it off a list, under the lock, decides how it ends; callbacks run
 * on the loop thread without the lock, so they may send again at once.
 *
 * Writes: a thread that sends writes to the socket itself, unless the
 * socket is full (the loop writes the rest when epoll says it can) or the
 * thread is the loop's own (a callback sending the next request): then
 * the bytes wait for the end of the loop's turn, and every request sent
 * in that turn leaves in one write.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>

#include "conf.h"
#include "conn.h"
#include "spwire.h"

#define CONN_READ_CHUNK 65536
#define CONN_EVENTS     64

enum { REQ_IDLE, REQ_WAITING, REQ_SENT, REQ_ENDED };
enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP };

struct req_list {
    struct conn_req *head, *tail;
};

struct conn {
    struct conn_loop *loop;
    struct conn *next;              /* the loop's conns */
    int ipc;                        /* IPC framing, else TCP */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t recvmax;

    int fd;
    enum conn_state state;
    unsigned gen;                   /* connections so far */
    struct buf in, out;
    bool blocked;                   /* the socket took less than offered */
    bool flush_queued;              /* on the loop's flush list */
    struct conn *flush_next;
    struct req_list waiting, sent;
    uint32_t next_id;
    int failed_rv;                  /* the last connect's failure, or 0 */
};

struct conn_loop {
    pthread_t thread;
    int epfd, wakefd;
    pthread_mutex_t lock;           /* all of the below, and every conn */
    struct conn *conns;
    struct req_list ended;
    struct conn *flush;             /* output held for the end of the turn */
    bool stop;
    bool woken;                     /* the wakefd was written */
    uint64_t soonest;               /* no deadline is earlier */
    uint64_t sleep_until;           /* while in epoll_wait; else 0 */
    struct epoll_event events[CONN_EVENTS];
    int nevents, ev_next;           /* this turn's, while handled */
};

/* The loop whose thread this is. */
static _Thread_local struct conn_loop *this_loop;

uint64_t
conn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
deadline_after(uint64_t now, unsigned ms)
{
    return ms == UINT_MAX ? 0 : now + (uint64_t)ms * 1000000u;
}

/* errno as nng's codes, which the client already explains. */
static int
nng_errno(int e)
{
    switch (e) {
    case ECONNREFUSED: return NNG_ECONNREFUSED;
    case ENOENT: return NNG_ENOENT;
    case ETIMEDOUT: return NNG_ETIMEDOUT;
    case ECONNRESET: case EPIPE: return NNG_ECONNRESET;
    case ENOMEM: return NNG_ENOMEM;
    case EADDRNOTAVAIL: case ENETUNREACH: case EHOSTUNREACH:
        return NNG_EADDRINVAL;
    default: return NNG_ESYSERR | e;
    }
}

/* ---- request lists -------------------------------------------------------- */

static void
list_append(struct req_list *l, struct conn_req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
}

static void
list_unlink(struct req_list *l, struct conn_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
}

static void
loop_wake(struct conn_loop *l)
{
    uint64_t one = 1;
    if (this_loop == l || l->woken)
        return;
    l->woken = true;
    if (write(l->wakefd, &one, sizeof(one)) < 0) {
        /* The counter is full: the loop is woken anyway. */
    }
}

/* A deadline now armed: wake the loop if it would sleep past it. */
static void
note_deadline(struct conn_loop *l, uint64_t deadline)
{
    if (deadline == 0 || deadline >= l->soonest)
        return;
    l->soonest = deadline;
    if (l->sleep_until != 0 && deadline < l->sleep_until)
        loop_wake(l);
}

/* r leaves whatever list it was on: its callback follows on the loop. */
static void
req_end(struct conn_loop *l, struct conn_req *r, int rv, bool sent)
{
    r->where = REQ_ENDED;
    r->rv = rv;
    r->sent = sent;
    list_append(&l->ended, r);
    loop_wake(l);
}

/* ---- one connection ------------------------------------------------------- */

/* Lost, refused or misbehaving: close it and end what was on it. */
static void
conn_down(struct conn *c, int rv)
{
    struct conn_loop *l = c->loop;
    struct conn_req *r;

    if (c->fd < 0)
        return;
    /* Events of this turn still to come are the old socket's. */
    for (int i = l->ev_next; i < l->nevents; i++)
        if (l->events[i].data.ptr == c)
            l->events[i].data.ptr = NULL;
    close(c->fd);
    c->fd = -1;
    c->gen++;
    if (c->state != CONN_UP)
        c->failed_rv = rv;
    c->state = CONN_DOWN;
    c->blocked = false;
    /* Not freed: a reply being delivered may point into c->in. */
    c->in.off = c->in.len = 0;
    c->out.off = c->out.len = 0;
    while ((r = c->sent.head) != NULL) {
        list_unlink(&c->sent, r);
        req_end(l, r, rv, true);
    }
    while ((r = c->waiting.head) != NULL) {
        list_unlink(&c->waiting, r);
        req_end(l, r, rv, false);
    }
}

/* Write what c->out holds until the socket is full. */
static void
conn_flush(struct conn *c)
{
    if (buf_send(&c->out, c->fd) != 0)
        conn_down(c, nng_errno(errno));
    else if (c->out.off < c->out.len)
        c->blocked = true;              /* EPOLLOUT resumes */
    else
        buf_trim(&c->out);
}

/* Output is waiting in c->out: write it now, or at the end of the
 * loop's turn if this is the loop, or when the socket has room. */
static void
conn_output(struct conn *c)
{
    struct conn_loop *l = c->loop;

    if (c->blocked)
        return;
    if (this_loop == l) {
        if (!c->flush_queued) {
            c->flush_queued = true;
            c->flush_next = l->flush;
            l->flush = c;
        }
        return;
    }
    conn_flush(c);
}

/* Frame r onto the connection, which is up; it counts as sent. */
static void
req_transmit(struct conn *c, struct conn_req *r, uint64_t now)
{
    uint8_t head[SP_FRAME_HEAD_MAX + 4];
    size_t hl;

    r->id = (c->next_id++ & 0x7fffffffu) | 0x80000000u;
    hl = sp_frame_head(head, c->ipc, 4 + (uint64_t)r->len);
    sp_put_be32(head + hl, r->id);
    hl += 4;
    r->where = REQ_SENT;
    r->deadline = deadline_after(now, r->answer_ms);
    list_append(&c->sent, r);
    note_deadline(c->loop, r->deadline);
    if (buf_append(&c->out, head, hl) != 0 ||
        buf_append(&c->out, r->msg, r->len) != 0) {
        conn_down(c, NNG_ENOMEM);
        return;
    }
    conn_output(c);
}

static void
conn_connect(struct conn *c)
{
    struct conn_loop *l = c->loop;
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.ptr = c,
    };
    int fd, one = 1;

    fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
                SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (!c->ipc)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if ((connect(fd, (struct sockaddr *)&c->addr, c->addrlen) != 0 &&
         errno != EINPROGRESS) ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        goto fail;
    }
    c->fd = fd;
    c->state = CONN_CONNECTING;
    return;
fail:
    /* An IPC listener with a full backlog says EAGAIN: refused, for us. */
    c->failed_rv = errno == EAGAIN ? NNG_ECONNREFUSED : nng_errno(errno);
}

/* The node answered our handshake: send everything that waited. */
static void
conn_up(struct conn *c)
{
    uint64_t now = conn_now_ns();
    struct conn_req *r;
    unsigned gen = c->gen;

    c->state = CONN_UP;
    c->failed_rv = 0;
    while ((r = c->waiting.head) != NULL && c->gen == gen) {
        list_unlink(&c->waiting, r);
        req_transmit(c, r, now);
    }
}

/*
 * Every whole message in c->in: the handshake, then replies, each handed
 * to its request's callback without the lock.  Stops when the connection
 * goes (maybe in a callback): what is left belonged to it.
 */
static void
conn_parse(struct conn *c)
{
    struct conn_loop *l = c->loop;
    unsigned gen = c->gen;

    while (c->gen == gen) {
        size_t have = c->in.len - c->in.off;
        const uint8_t *msg;
        uint64_t n;
        size_t framed;
        int got;

        if (c->state == CONN_HANDSHAKE) {
            if (have < SP_HANDSHAKE_LEN)
                break;
            if (!sp_handshake_ok(c->in.data + c->in.off, SP_PROTO_REP)) {
                conn_down(c, NNG_EPROTO);
                return;
            }
            c->in.off += SP_HANDSHAKE_LEN;
            conn_up(c);
            continue;
        }
        got = sp_frame_next(&c->in, c->ipc, c->recvmax, &msg, &n, &framed);
        if (got == 0)
            break;
        if (got < 0 || n < 4) {
            conn_down(c, got == -2 ? NNG_ENOMEM
                         : n > c->recvmax ? NNG_EMSGSIZE : NNG_EPROTO);
            return;
        }
        c->in.off += framed;
        uint32_t id = sp_get_be32(msg);
        struct conn_req *r = c->sent.head;
        while (r != NULL && r->id != id)
            r = r->next;
        if (r == NULL)
            continue;           /* it ended already (timed out) */
        list_unlink(&c->sent, r);
        r->where = REQ_IDLE;
        pthread_mutex_unlock(&l->lock);
        r->done(r, 0, true, msg + 4, (size_t)n - 4);
        pthread_mutex_lock(&l->lock);
    }
    if (c->gen == gen)
        buf_trim(&c->in);
}

static void
conn_read(struct conn *c)
{
    unsigned gen = c->gen;

    while (c->gen == gen) {
        if (buf_reserve(&c->in, CONN_READ_CHUNK) != 0) {
            conn_down(c, NNG_ENOMEM);
            return;
        }
        ssize_t r = recv(c->fd, c->in.data + c->in.len,
                         c->in.cap - c->in.len, MSG_DONTWAIT);
        if (r == 0) {
            conn_down(c, NNG_ECONNSHUT);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_down(c, nng_errno(errno));
            return;
        }
        c->in.len += (size_t)r;
        conn_parse(c);
    }
}

/* The loop thread, lock held: what epoll said of c's socket. */
static void
conn_event(struct conn *c, uint32_t events)
{
    if (c->fd < 0)
        return;
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == 0 && (events & (EPOLLERR | EPOLLHUP)))
            err = ECONNREFUSED;
        if (err != 0) {
            conn_down(c, nng_errno(err));
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        uint8_t hs[SP_HANDSHAKE_LEN];
        sp_handshake(hs, SP_PROTO_REQ);
        c->state = CONN_HANDSHAKE;
        if (buf_append(&c->out, hs, sizeof(hs)) != 0) {
            conn_down(c, NNG_ENOMEM);
            return;
        }
        conn_flush(c);
    } else if (events & EPOLLOUT) {
        c->blocked = false;
        conn_flush(c);
    }
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP |
                                 EPOLLERR)))
        conn_read(c);
}

/* ---- the loop ------------------------------------------------------------- */

/* End what is past its deadline; note when the next one is due. */
static void
expire(struct conn_loop *l, uint64_t now)
{
    uint64_t soonest = UINT64_MAX;

    for (struct conn *c = l->conns; c != NULL; c = c->next) {
        struct req_list *lists[2] = { &c->waiting, &c->sent };
        for (int i = 0; i < 2; i++) {
            struct conn_req *r = lists[i]->head, *next;
            for (; r != NULL; r = next) {
                next = r->next;
                if (r->deadline != 0 && r->deadline <= now) {
                    list_unlink(lists[i], r);
                    req_end(l, r, NNG_ETIMEDOUT, i == 1);
                } else if (r->deadline != 0 && r->deadline < soonest) {
                    soonest = r->deadline;
                }
            }
        }
    }
    l->soonest = soonest;
}

/* Callbacks for the ended requests and output held back, until none is
 * left: a callback may end or send more. */
static void
end_turn(struct conn_loop *l)
{
    for (;;) {
        struct conn_req *r = l->ended.head;
        if (r != NULL) {
            int rv = r->rv;
            bool sent = r->sent;
            list_unlink(&l->ended, r);
            r->where = REQ_IDLE;
            pthread_mutex_unlock(&l->lock);
            r->done(r, rv, sent, NULL, 0);
            pthread_mutex_lock(&l->lock);
            continue;
        }
        struct conn *c = l->flush;
        if (c == NULL)
            break;
        l->flush = c->flush_next;
        c->flush_queued = false;
        if (c->fd >= 0 && !c->blocked)
            conn_flush(c);
    }
}

static void *
loop_main(void *arg)
{
    struct conn_loop *l = arg;
    sigset_t all;

    /* Signals are the application's, not this thread's. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    this_loop = l;
    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        uint64_t now = conn_now_ns();
        int timeout = -1, n;

        if (now >= l->soonest)
            expire(l, now);
        end_turn(l);
        if (l->ended.head != NULL)
            continue;
        if (l->soonest != UINT64_MAX) {
            uint64_t wait = l->soonest > now ? l->soonest - now : 0;
            timeout = (int)((wait + 999999) / 1000000);
        }
        l->sleep_until = l->soonest;
        pthread_mutex_unlock(&l->lock);
        n = epoll_wait(l->epfd, l->events, CONN_EVENTS, timeout);
        pthread_mutex_lock(&l->lock);
        l->sleep_until = 0;
        l->nevents = n > 0 ? n : 0;
        for (l->ev_next = 0; l->ev_next < l->nevents;) {
            struct epoll_event *ev = &l->events[l->ev_next++];
            if (ev->data.ptr == l) {
                uint64_t count;
                if (read(l->wakefd, &count, sizeof(count)) < 0) {
                    /* nothing to drain */
                }
                l->woken = false;
            } else if (ev->data.ptr != NULL) {
                conn_event(ev->data.ptr, ev->events);
            }
        }
        l->nevents = 0;
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

int
conn_loop_start(struct conn_loop **out)
{
    struct conn_loop *l = calloc(1, sizeof(*l));
    struct epoll_event ev = { .events = EPOLLIN };

    *out = NULL;
    if (l == NULL)
        return NNG_ENOMEM;
    l->soonest = UINT64_MAX;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ev.data.ptr = l;
    if (l->epfd < 0 || l->wakefd < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) != 0)
        goto fail;
    pthread_mutex_init(&l->lock, NULL);
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
        pthread_mutex_destroy(&l->lock);
        goto fail;
    }
    *out = l;
    return 0;
fail:
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    free(l);
    return NNG_ESYSERR | errno;
}

void
conn_loop_stop(struct conn_loop *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    l->stop = true;
    l->woken = false;
    loop_wake(l);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    while (l->conns != NULL) {
        struct conn *c = l->conns;
        l->conns = c->next;
        if (c->fd >= 0)
            close(c->fd);
        buf_free(&c->in);
        buf_free(&c->out);
        free(c);
    }
    close(l->epfd);
    close(l->wakefd);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* ---- the client's side ---------------------------------------------------- */

/* tcp://host:port or ipc://path as a socket address; -1 if neither. */
static int
resolve(struct conn *c, const char *url)
{
    if (strncmp(url, "ipc://", 6) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&c->addr;
        if (strlen(url + 6) >= sizeof(sun->sun_path) || url[6] == '\0')
            return -1;
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, url + 6);
        c->addrlen = sizeof(*sun);
        c->ipc = 1;
        return 0;
    }
    char host[256], port[16];
    int portnum;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    if (strncmp(url, "tcp://", 6) != 0 ||
        conf_parse_address(url + 6, host, sizeof(host), &portnum) != 0)
        return -1;
    snprintf(port, sizeof(port), "%d", portnum);
    if (getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &ai) != 0)
        return -1;
    memcpy(&c->addr, ai->ai_addr, ai->ai_addrlen);
    c->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

struct conn *
conn_open(struct conn_loop *l, const char *url, size_t recvmax)
{
    struct conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->loop = l;
    c->fd = -1;
    c->recvmax = recvmax;
    if (resolve(c, url) != 0) {
        free(c);
        return NULL;
    }
    pthread_mutex_lock(&l->lock);
    c->next = l->conns;
    l->conns = c;
    conn_connect(c);            /* early: the first request waits less */
    pthread_mutex_unlock(&l->lock);
    return c;
}

void
conn_send(struct conn *c, struct conn_req *r, conn_done_fn done,
          const uint8_t *msg, size_t len, unsigned connect_ms,
          unsigned answer_ms)
{
    struct conn_loop *l = c->loop;
    uint64_t now = conn_now_ns();

    pthread_mutex_lock(&l->lock);
    r->conn = c;
    r->done = done;
    r->msg = msg;
    r->len = len;
    r->answer_ms = answer_ms;
    if (c->state == CONN_UP) {
        req_transmit(c, r, now);
    } else {
        if (c->state == CONN_DOWN)
            conn_connect(c);
        if (c->state == CONN_DOWN) {
            req_end(l, r, c->failed_rv, false);
        } else {
            r->where = REQ_WAITING;
            r->deadline = deadline_after(now, connect_ms);
            list_append(&c->waiting, r);
            note_deadline(l, r->deadline);
        }
    }
    pthread_mutex_unlock(&l->lock);
}

void
conn_abort(struct conn_req *r, int rv)
{
    struct conn *c = r->conn;

    if (c == NULL)
        return;
    pthread_mutex_lock(&c->loop->lock);
    if (r->where == REQ_WAITING) {
        list_unlink(&c->waiting, r);
        req_end(c->loop, r, rv, false);
    } else if (r->where == REQ_SENT) {
        list_unlink(&c->sent, r);
        req_end(c->loop, r, rv, true);
    }
    pthread_mutex_unlock(&c->loop->lock);
}

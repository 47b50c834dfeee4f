/*
 * client.c - librzkv: the Cluster API over nng's REQ protocol.
 *
 * One connection per node address.  tcp:// and ipc:// addresses use the
 * client's own connections (conn.c: one epoll thread, no handoffs between
 * threads for each message); others (tls+tcp://) use an nng REQ socket,
 * dialed in the background so it reconnects by itself.  Every request is
 * an "op": a small state machine moved along by callbacks (a reply or an
 * error from a conn; nng aio completions: send, receive, or probe a node
 * that has no connection) without ever blocking, so one thread can keep
 * any number of requests in flight.  The _async calls start
 * an op and return; the synchronous calls start the same op and wait for
 * it on a condition variable: there is one code path.  Ops are kept on a
 * free list with their aio and their nng contexts (one per node, opened on
 * first use), so a busy client does not allocate them again and again.
 *
 * A request goes to one node at a time:
 *   - not connected (no pipe, and a probe connect fails, or no pipe comes
 *     within connect_timeout_ms): the request never left; try the next;
 *   - the node answers UNAVAILABLE or STOPPING: nothing was applied; try
 *     the next;
 *   - sent, then no answer (timeout, connection reset): a read tries the
 *     next node; a write stops with RZKV_UNKNOWN.  nng's REQ resend is
 *     disabled for the same reason: a write resent after a later write
 *     would overwrite it.
 *   - an answer that is no rzkv reply: a read tries the next node (and
 *     ends RZKV_ERROR rather than UNAVAILABLE); a write stops, UNKNOWN.
 *   - any other answer is the result.
 *
 * Each client has one timer thread.  It ends a step that outlives its
 * deadline (nng_aio_abort with NNG_ETIMEDOUT) and completes ops whose
 * outcome was decided outside a callback.  The aios carry no nng timeout:
 * nng 1.5's expiry thread collects expired aios in a batch and reads each
 * one's cancel function later, so an operation that completes just as it
 * expires can leave a stale expiry that cancels the next operation started
 * on the same aio (a receive "timed out" at once).
 *
 * rzkv_close cancels the ops in flight.  Each op arms its next step (and
 * its deadline) under its own lock and checks for cancellation there, so
 * neither close nor the timer can hit a step other than the one they saw;
 * close then waits until every op has run its callback and gone back to
 * the free list.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include "arena.h"
#include "conn.h"
#include "rzkv.h"
#include "rzkv.pb-c.h"
#include "wire.h"

/* The cluster's default timeout_ms (cluster.yml); a request that leaves
 * the timeout to the cluster waits for this plus the grace below. */
#define CLUSTER_TIMEOUT_MS          2000
#define DEFAULT_CONNECT_TIMEOUT_MS  1000
/* A background dial to a live node completes well inside this; only when
 * it has not do we spend a probe connection to find out why. */
#define FIRST_PIPE_WAIT_MS          50
/* Redial a lost node at most this far apart: a node that comes back is
 * used again well inside the default connect timeout. */
#define RECONNECT_MIN_MS            100
#define RECONNECT_MAX_MS            500
/* Replies carry at most one value: node.max_value_size is at most 256 MiB
 * (16 MiB by default), plus the reply around it. */
#define RECV_MAX_BYTES              ((size_t)257 << 20)
#define URL_MAX                     (RZKV_ADDRESS_MAX + 16)
/* Finished ops kept for reuse; a burst beyond this many in flight frees
 * the extra ones as they finish. */
#define SPARE_OPS_MAX               1024
#define SPARE_MSG_MAX               (16 * 1024) /* bytes of request message,
                                     * and of reply arena, a spare op keeps */

struct node {
    char addr[RZKV_ADDRESS_MAX];    /* as the caller wrote it */
    char url[URL_MAX];
    struct conn *conn;              /* the client's own; NULL: nng's */
    nng_socket sock;
    bool sock_open;
    pthread_mutex_t lock;           /* pipe events, the probe's outcome */
    atomic_int pipes;
    nng_stream_dialer *probe;       /* for probe connects; NULL: not probed */
    int probe_rv;                   /* why not: 0 (TLS), or the nng error */
    /* One op probes at a time; the others wait for its outcome. */
    bool probing;
    atomic_uint probe_gen;          /* probes completed */
    int probe_outcome;              /* the last one's: 0 up, or nng error */
};

enum req_kind { REQ_READ, REQ_WRITE };

enum op_type { OP_GET, OP_SET, OP_DEL, OP_HEALTH, OP_INFO, OP_KEYS };

/* What the op's aio is doing. */
enum op_state {
    OP_DIRECT,          /* on a conn: sent, or waiting for it */
    OP_SENDING,         /* REQ send: waits for a pipe to take it */
    OP_RECEIVING,       /* REQ receive: the node's answer */
    OP_PROBE_DIAL,      /* a probe connection to a node with no pipe */
    OP_PROBE_SEND,      /* ...its SP header out */
    OP_PROBE_RECV,      /* ...and the node's back */
    OP_DEFERRED,        /* decided; the timer thread completes it */
};

enum attempt {
    ATTEMPT_ANSWERED,       /* a decoded reply */
    ATTEMPT_NOT_SENT,       /* never left this process */
    ATTEMPT_LOST,           /* sent; no answer */
    ATTEMPT_BAD_REPLY,      /* an answer we could not decode */
};

struct op;

/* Who hears of the outcome: the internal hook, and the caller's callback
 * or synchronous waiter behind it. */
struct completion {
    void (*done)(struct op *op);
    rzkv_callback cb;
    void *arg;
};

struct op {
    rzkv_client *c;
    struct op *prev, *next;         /* on the client's active or spare list */
    struct op *deferred_next;       /* on the timer's list */
    pthread_mutex_t lock;           /* arming a step vs. close and timer */
    atomic_bool cancelled;
    uint64_t deadline;              /* of the step in progress, ns; 0: none */
    struct conn_req creq;           /* on a node with a conn */
    nng_aio *aio;                   /* on a node with an nng socket */
    nng_ctx *ctxs;                  /* one per node, opened on first use */
    bool *ctx_open;
    enum op_state state;

    enum op_type type;
    nng_msg *msg;                   /* the request, kept for the next node */
    nng_msg *spare_msg;             /* the last request's, emptied: the
                                     * next one is packed into it */
    unsigned wait_ms;               /* for an answer, once sent */
    size_t start;                   /* the first node tried */
    size_t tried;                   /* nodes tried so far, this one included */
    size_t idx;                     /* this node */
    bool short_wait;                /* this send waits FIRST_PIPE_WAIT_MS */
    bool probed;                    /* this node was probed */
    bool probe_owner;               /* this op probes it */
    unsigned probe_gen;             /* the node's, when the op came to it */
    unsigned waited_ms;             /* for a pipe, while another op probes */
    bool bad_reply;

    nng_stream *stream;             /* the probe connection */
    uint8_t header[8];
    size_t header_done;

    char reasons[RZKV_MESSAGE_MAX]; /* why each node could not serve it */
    char why[RZKV_MESSAGE_MAX];     /* why this one could not */
    rzkv_error err;                 /* the outcome */
    Rzkv__Reply *reply;             /* the answer behind it, if any */
    struct arena arena;             /* reply's pieces (arena.h) */
    rzkv_stamp stamp;
    struct completion how;
};

struct rzkv_client {
    size_t count;
    struct node *nodes;
    struct conn_loop *loop;         /* the conns' thread, once one opens */
    bool nng_only;                  /* RZKV_TRANSPORT=nng: no conns */
    unsigned timeout_ms;            /* 0: the cluster's */
    unsigned connect_timeout_ms;
    rzkv_consistency consistency;
    atomic_size_t preferred;        /* the node that answered last */

    pthread_mutex_t lock;           /* the lists, the counts, closing */
    pthread_cond_t idle;            /* signalled when inflight drops to 0 */
    struct op *active;              /* in flight */
    struct op *spare;               /* finished, for reuse */
    size_t nspare;
    size_t inflight;
    bool closing;

    /* The timer thread; timer_lock is taken last, after any other. */
    pthread_t timer;
    bool timer_started;
    pthread_mutex_t timer_lock;
    pthread_cond_t timer_wake;
    bool timer_stop;
    struct op *deferred;            /* ops to complete */
    atomic_uint_fast64_t soonest;   /* no deadline is earlier than this */
};

/* Set while this thread runs an op's aio callback (to complete it there
 * rather than defer it) and while it runs a caller's callback (to refuse
 * calls that would wait for the library's own threads). */
static _Thread_local struct op *running_op;
static _Thread_local bool in_callback;

/* ---- errors --------------------------------------------------------------- */

static rzkv_status __attribute__((format(printf, 4, 5)))
set_error(rzkv_error *err, rzkv_status status, const char *address,
          const char *fmt, ...)
{
    if (err != NULL) {
        char copy[RZKV_ADDRESS_MAX];    /* address may be err->address */
        va_list ap;
        snprintf(copy, sizeof(copy), "%s", address != NULL ? address : "");
        err->status = status;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        memcpy(err->address, copy, sizeof(copy));
    }
    return status;
}

/* Append "; text" to a list of reasons, truncating quietly. */
static void __attribute__((format(printf, 3, 4)))
note_reason(char *list, size_t size, const char *fmt, ...)
{
    size_t used = strlen(list);
    va_list ap;

    if (used > 0 && used + 2 < size) {
        strcpy(list + used, "; ");
        used += 2;
    }
    if (used + 1 >= size)
        return;
    va_start(ap, fmt);
    vsnprintf(list + used, size - used, fmt, ap);
    va_end(ap);
}

const char *
rzkv_status_str(rzkv_status status)
{
    switch (status) {
    case RZKV_OK: return "OK";
    case RZKV_NOT_FOUND: return "NOT_FOUND";
    case RZKV_UNAVAILABLE: return "UNAVAILABLE";
    case RZKV_UNKNOWN: return "UNKNOWN";
    case RZKV_INVALID: return "INVALID";
    case RZKV_ERROR: return "ERROR";
    }
    return "ERROR";
}

const char *
rzkv_consistency_str(rzkv_consistency c)
{
    switch (c) {
    case RZKV_ONE: return "one";
    case RZKV_QUORUM: return "quorum";
    case RZKV_ALL: return "all";
    }
    return "?";
}

int
rzkv_consistency_parse(const char *s, rzkv_consistency *out)
{
    if (strcasecmp(s, "one") == 0)
        *out = RZKV_ONE;
    else if (strcasecmp(s, "quorum") == 0)
        *out = RZKV_QUORUM;
    else if (strcasecmp(s, "all") == 0)
        *out = RZKV_ALL;
    else
        return -1;
    return 0;
}

void
rzkv_free(void *p)
{
    free(p);
}

/* The Cluster API's statuses as the client's. */
static rzkv_status
map_status(Rzkv__Status s)
{
    switch (s) {
    case RZKV__STATUS__OK: return RZKV_OK;
    case RZKV__STATUS__NOT_FOUND: return RZKV_NOT_FOUND;
    case RZKV__STATUS__UNAVAILABLE: return RZKV_UNAVAILABLE;
    case RZKV__STATUS__STOPPING: return RZKV_UNAVAILABLE;
    case RZKV__STATUS__UNKNOWN: return RZKV_UNKNOWN;
    case RZKV__STATUS__INVALID: return RZKV_INVALID;
    case RZKV__STATUS__TOO_LARGE: return RZKV_INVALID;
    default: return RZKV_ERROR;
    }
}

/* ---- connections ---------------------------------------------------------- */

static void
pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    struct node *nd = arg;
    int n;

    (void)pipe;
    pthread_mutex_lock(&nd->lock);
    n = atomic_load(&nd->pipes);
    if (ev == NNG_PIPE_EV_ADD_POST)
        atomic_store(&nd->pipes, n + 1);
    else if (ev == NNG_PIPE_EV_REM_POST && n > 0)
        atomic_store(&nd->pipes, n - 1);
    pthread_mutex_unlock(&nd->lock);
}

static void
describe_connect_error(int rv, const struct node *nd, unsigned timeout_ms,
                       char *why, size_t len)
{
    switch (rv) {
    case NNG_ECONNREFUSED:
    case NNG_ENOENT:
        snprintf(why, len, "connection refused to %s", nd->addr);
        break;
    case NNG_ETIMEDOUT:
        snprintf(why, len, "no connection to %s within %u ms", nd->addr,
                 timeout_ms);
        break;
    case NNG_EADDRINVAL:
        snprintf(why, len, "cannot resolve or use the address %s", nd->addr);
        break;
    default:
        snprintf(why, len, "cannot connect to %s: %s", nd->addr,
                 nng_strerror(rv));
        break;
    }
}

/*
 * The dialer for probe connects (see probe_start): TLS addresses are not
 * probed (up as far as we know), nor any that nng cannot dial as a plain
 * stream.
 */
static void
node_probe_dialer(struct node *nd)
{
    int rv;

    nd->probe = NULL;
    nd->probe_rv = 0;
    if (strncmp(nd->url, "tls+tcp://", 10) == 0)
        return;
    if ((rv = nng_stream_dialer_alloc(&nd->probe, nd->url)) != 0) {
        nd->probe = NULL;
        nd->probe_rv = rv == NNG_ENOTSUP ? 0 : rv;
    }
}

static int
node_open(rzkv_client *c, struct node *nd, const char *addr,
          const rzkv_options *opts, rzkv_error *err)
{
    nng_dialer dialer;
    int rv;

    snprintf(nd->addr, sizeof(nd->addr), "%s", addr);
    if (strlen(addr) >= sizeof(nd->addr) ||
        wire_address_url(addr, nd->url, sizeof(nd->url)) != 0) {
        set_error(err, RZKV_INVALID, addr, "bad address \"%s\": expected "
                  "HOST:PORT, :PORT or an nng URL", addr);
        return -1;
    }
    /* A host that does not resolve now is left to nng, which tries again
     * at every dial. */
    if (!c->nng_only && (strncmp(nd->url, "tcp://", 6) == 0 ||
                         strncmp(nd->url, "ipc://", 6) == 0)) {
        if (c->loop == NULL && (rv = conn_loop_start(&c->loop)) != 0) {
            set_error(err, RZKV_ERROR, addr, "cannot start a thread: %s",
                      nng_strerror(rv));
            return -1;
        }
        if ((nd->conn = conn_open(c->loop, nd->url, RECV_MAX_BYTES)) != NULL)
            return 0;
    }
    if ((rv = nng_req0_open(&nd->sock)) != 0) {
        set_error(err, RZKV_ERROR, addr, "cannot open a socket: %s",
                  nng_strerror(rv));
        return -1;
    }
    nd->sock_open = true;
    nng_socket_set_ms(nd->sock, NNG_OPT_REQ_RESENDTIME,
                      NNG_DURATION_INFINITE);
    nng_socket_set_ms(nd->sock, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS);
    nng_socket_set_ms(nd->sock, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS);
    nng_socket_set_size(nd->sock, NNG_OPT_RECVMAXSZ, RECV_MAX_BYTES);
    nng_pipe_notify(nd->sock, NNG_PIPE_EV_ADD_POST, pipe_event, nd);
    nng_pipe_notify(nd->sock, NNG_PIPE_EV_REM_POST, pipe_event, nd);

    if ((rv = nng_dialer_create(&dialer, nd->sock, nd->url)) != 0) {
        set_error(err, rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP
                  ? RZKV_INVALID : RZKV_ERROR, addr,
                  "cannot use the address \"%s\": %s", addr,
                  nng_strerror(rv));
        return -1;
    }
    if (opts != NULL && opts->tls_ca_file != NULL &&
        strncmp(nd->url, "tls+tcp://", 10) == 0 &&
        (rv = nng_dialer_set_string(dialer, NNG_OPT_TLS_CA_FILE,
                                    opts->tls_ca_file)) != 0) {
        set_error(err, RZKV_INVALID, addr, "%s: %s", opts->tls_ca_file,
                  nng_strerror(rv));
        return -1;
    }
    if ((rv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK)) != 0) {
        set_error(err, RZKV_ERROR, addr, "cannot dial \"%s\": %s", addr,
                  nng_strerror(rv));
        return -1;
    }
    node_probe_dialer(nd);
    return 0;
}

static void *timer_main(void *arg);

rzkv_client *
rzkv_connect(const char *const *addrs, size_t naddrs,
             const rzkv_options *opts, rzkv_error *err)
{
    rzkv_client *c;

    if (addrs == NULL || naddrs == 0) {
        set_error(err, RZKV_INVALID, NULL, "no address given");
        return NULL;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL ||
        (c->nodes = calloc(naddrs, sizeof(*c->nodes))) == NULL) {
        free(c);
        set_error(err, RZKV_ERROR, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle, NULL);
    pthread_mutex_init(&c->timer_lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->timer_wake, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&c->soonest, UINT64_MAX);
    c->timeout_ms = 0;
    c->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    c->consistency = RZKV_QUORUM;
    if (opts != NULL) {
        if (opts->timeout_ms != 0)
            c->timeout_ms = opts->timeout_ms;
        if (opts->connect_timeout_ms != 0)
            c->connect_timeout_ms = opts->connect_timeout_ms;
        c->consistency = opts->consistency;
    }
    atomic_init(&c->preferred, 0);
    const char *transport = getenv("RZKV_TRANSPORT");
    c->nng_only = transport != NULL && strcmp(transport, "nng") == 0;
    if (pthread_create(&c->timer, NULL, timer_main, c) != 0) {
        set_error(err, RZKV_ERROR, NULL, "cannot start a thread");
        goto fail;
    }
    c->timer_started = true;

    for (size_t i = 0; i < naddrs; i++) {
        struct node *nd = &c->nodes[i];
        pthread_mutex_init(&nd->lock, NULL);
        atomic_init(&nd->pipes, 0);
        atomic_init(&nd->probe_gen, 0);
        c->count = i + 1;
        if (addrs[i] == NULL) {
            set_error(err, RZKV_INVALID, NULL, "no address given");
            goto fail;
        }
        if (node_open(c, nd, addrs[i], opts, err) != 0)
            goto fail;
    }
    if (c->consistency > RZKV_ALL) {
        set_error(err, RZKV_INVALID, NULL, "bad consistency %d",
                  (int)c->consistency);
        goto fail;
    }
    return c;

fail:
    rzkv_close(c);
    return NULL;
}

static void op_destroy(struct op *op, bool from_callback);

/* Cancel every op in flight and wait until each has finished. */
static void
cancel_all(rzkv_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->closing = true;
    for (struct op *op = c->active; op != NULL; op = op->next) {
        pthread_mutex_lock(&op->lock);
        atomic_store(&op->cancelled, true);
        if (op->state == OP_DIRECT)
            conn_abort(&op->creq, NNG_ECANCELED);
        else
            nng_aio_cancel(op->aio);
        pthread_mutex_unlock(&op->lock);
    }
    while (c->inflight > 0)
        pthread_cond_wait(&c->idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

/*
 * nng 1.5.2's nng_close() can wait forever for a connection that broke
 * with messages in flight (nanomsg/nng#1503, #1543): rzkvctl bench hung
 * in it about once in five runs whose cluster stopped under it.  So the
 * close runs on a thread of its own, and after CLOSE_WAIT_MS the caller
 * stops waiting for it: a socket (and its node, which nng's pipe
 * callbacks may still see) is leaked, but no program is stuck.
 */
#define CLOSE_WAIT_MS 2000

struct closer {
    nng_socket sock;
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    bool done, abandoned;
};

static void *
closer_main(void *arg)
{
    struct closer *cl = arg;
    nng_close(cl->sock);
    pthread_mutex_lock(&cl->lock);
    cl->done = true;
    bool abandoned = cl->abandoned;
    pthread_cond_signal(&cl->done_cv);
    pthread_mutex_unlock(&cl->lock);
    if (abandoned)
        free(cl);
    return NULL;
}

/* true if the socket closed within CLOSE_WAIT_MS. */
static bool
close_bounded(nng_socket sock)
{
    struct closer *cl = calloc(1, sizeof(*cl));
    pthread_condattr_t attr;
    pthread_t th;
    struct timespec until;

    if (cl == NULL) {
        nng_close(sock);
        return true;
    }
    cl->sock = sock;
    pthread_mutex_init(&cl->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->done_cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&th, NULL, closer_main, cl) != 0) {
        nng_close(sock);
        cl->done = true;
    } else {
        pthread_detach(th);
    }
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CLOSE_WAIT_MS / 1000;
    until.tv_nsec += (long)(CLOSE_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cl->lock);
    while (!cl->done &&
           pthread_cond_timedwait(&cl->done_cv, &cl->lock, &until) == 0)
        ;
    bool done = cl->done;
    cl->abandoned = !done;
    pthread_mutex_unlock(&cl->lock);
    if (done) {
        pthread_cond_destroy(&cl->done_cv);
        pthread_mutex_destroy(&cl->lock);
        free(cl);
    }
    return done;
}

void
rzkv_close(rzkv_client *c)
{
    if (c == NULL)
        return;
    cancel_all(c);
    if (c->timer_started) {
        pthread_mutex_lock(&c->timer_lock);
        c->timer_stop = true;
        pthread_cond_signal(&c->timer_wake);
        pthread_mutex_unlock(&c->timer_lock);
        pthread_join(c->timer, NULL);
    }
    conn_loop_stop(c->loop);            /* nothing is in flight */
    bool leaked = false;
    for (size_t i = 0; i < c->count; i++) {
        struct node *nd = &c->nodes[i];
        /* nng_close waits for the socket's pipes and callbacks. */
        if (nd->sock_open && !close_bounded(nd->sock)) {
            leaked = true;
            continue;
        }
        if (nd->probe != NULL)
            nng_stream_dialer_free(nd->probe);
        pthread_mutex_destroy(&nd->lock);
    }
    while (c->spare != NULL) {
        struct op *op = c->spare;
        c->spare = op->next;
        op_destroy(op, false);
    }
    pthread_cond_destroy(&c->timer_wake);
    pthread_mutex_destroy(&c->timer_lock);
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    if (!leaked)
        free(c->nodes);
    free(c);
}

rzkv_status
rzkv_wait(rzkv_client *c)
{
    if (c == NULL || in_callback)
        return RZKV_INVALID;
    pthread_mutex_lock(&c->lock);
    while (c->inflight > 0)
        pthread_cond_wait(&c->idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
    return RZKV_OK;
}

/* ---- copies of what the answers carry ------------------------------------ */

static void
copy_stamp(rzkv_stamp *dst, const Rzkv__Stamp *src)
{
    if (dst == NULL)
        return;
    memset(dst, 0, sizeof(*dst));
    if (src == NULL)
        return;
    dst->epoch = src->epoch;
    dst->counter = src->counter;
    dst->nonce = src->nonce;
    size_t n = src->writer.len < sizeof(dst->writer) - 1
        ? src->writer.len : sizeof(dst->writer) - 1;
    if (n > 0)
        memcpy(dst->writer, src->writer.data, n);
}

static void *
copy_bytes(const void *src, size_t len)
{
    char *p = malloc(len + 1);
    if (p != NULL) {
        if (len > 0)
            memcpy(p, src, len);
        p[len] = '\0';
    }
    return p;
}

/* A cluster request: the envelope around it, sent, and the reply checked
 * to carry a ClusterReply when it says OK. */

static char *
copy_string(const char *s)
{
    return strdup(s != NULL ? s : "");
}

/* rzkv_cluster_info and what its public struct cannot grow to hold
 * without breaking the library's ABI. */
struct cluster_info {
    rzkv_cluster_info pub;      /* first: what callers get */
    char **states;              /* per node: "joining", "leaving", or NULL */
};

void
rzkv_info_free(rzkv_cluster_info *info)
{
    if (info == NULL)
        return;
    struct cluster_info *ci = (struct cluster_info *)info;
    for (size_t i = 0; i < info->node_count; i++) {
        free(info->nodes[i].id);
        free(info->nodes[i].address);
        free(info->nodes[i].error);
        if (ci->states != NULL)
            free(ci->states[i]);
    }
    free(ci->states);
    free(info->nodes);
    free(info->node_id);
    free(ci);
}

const char *
rzkv_info_node_state(const rzkv_cluster_info *info, size_t i)
{
    if (info == NULL || i >= info->node_count)
        return NULL;
    const struct cluster_info *ci = (const struct cluster_info *)info;
    return ci->states != NULL && ci->states[i] != NULL ? ci->states[i]
                                                       : "member";
}

static rzkv_cluster_info *
convert_info(const Rzkv__ClusterInfoReply *src)
{
    struct cluster_info *ci = calloc(1, sizeof(*ci));
    if (ci == NULL)
        return NULL;
    rzkv_cluster_info *info = &ci->pub;
    info->replica_count = src->replica_count;
    info->read_quorum = src->read_quorum;
    info->write_quorum = src->write_quorum;
    info->seed = src->seed;
    if ((info->node_id = copy_string(src->node_id)) == NULL)
        goto fail;
    if (src->n_nodes > 0 &&
        ((info->nodes = calloc(src->n_nodes, sizeof(*info->nodes))) == NULL ||
         (ci->states = calloc(src->n_nodes, sizeof(*ci->states))) == NULL))
        goto fail;
    for (size_t i = 0; i < src->n_nodes; i++) {
        const Rzkv__PeerInfo *p = src->nodes[i];
        rzkv_node_info *n = &info->nodes[i];
        info->node_count = i + 1;
        n->reachable = p->reachable;
        if ((n->id = copy_string(p->id)) == NULL ||
            (n->address = copy_string(p->address)) == NULL ||
            (n->error = copy_string(p->error)) == NULL)
            goto fail;
        if (p->state != NULL && p->state[0] != '\0' &&
            (ci->states[i] = copy_string(p->state)) == NULL)
            goto fail;
    }
    return info;
fail:
    rzkv_info_free(info);
    return NULL;
}

void
rzkv_key_page_free(rzkv_key_page *page)
{
    if (page == NULL)
        return;
    for (size_t i = 0; i < page->count; i++)
        free(page->keys[i].key);
    free(page->keys);
    free(page->next_key);
    free(page->states);
    free(page);
}

/* The page of a ListKeysReply; with_deleted keeps the tombstones, and
 * says which they are in page->states. */
static rzkv_key_page *
convert_keys(const Rzkv__ListKeysReply *src, bool with_deleted)
{
    size_t n = src->n_entries;
    rzkv_key_page *page = calloc(1, sizeof(*page));
    if (page == NULL)
        return NULL;
    if (n > 0 && (page->keys = calloc(n, sizeof(*page->keys))) == NULL)
        goto fail;
    if (with_deleted &&
        (page->states = calloc(n ? n : 1, sizeof(*page->states))) == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const Rzkv__Entry *e = src->entries[i];
        if (e->tombstone && !with_deleted)
            continue;
        rzkv_key *k = &page->keys[page->count];
        if ((k->key = copy_bytes(e->key.data, e->key.len)) == NULL)
            goto fail;
        k->len = e->key.len;
        copy_stamp(&k->stamp, e->stamp);
        if (e->tombstone) {
            page->states[page->count].deleted = 1;
            page->states[page->count].deleted_ms_ago = e->tombstone_age_ms;
        }
        page->count++;
    }
    if (src->next_key.len > 0) {
        page->next_key = copy_bytes(src->next_key.data, src->next_key.len);
        if (page->next_key == NULL)
            goto fail;
        page->next_key_len = src->next_key.len;
    }
    return page;
fail:
    rzkv_key_page_free(page);
    return NULL;
}

/* ---- ops: allocation and the free list ------------------------------------ */

static void op_callback(void *arg);

static struct op *
op_new(rzkv_client *c)
{
    struct op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->ctxs = calloc(c->count, sizeof(*op->ctxs));
    op->ctx_open = calloc(c->count, sizeof(*op->ctx_open));
    if (op->ctxs == NULL || op->ctx_open == NULL ||
        nng_aio_alloc(&op->aio, op_callback, op) != 0) {
        free(op->ctxs);
        free(op->ctx_open);
        free(op);
        return NULL;
    }
    /* No nng timeout: the timer thread ends overdue steps. */
    nng_aio_set_timeout(op->aio, NNG_DURATION_INFINITE);
    op->c = c;
    arena_init(&op->arena);
    op->arena.keep = SPARE_MSG_MAX;
    pthread_mutex_init(&op->lock, NULL);
    atomic_init(&op->cancelled, false);
    return op;
}

/*
 * On a library thread (maybe in the op's own aio callback) the aio can
 * only be reaped, freed once its callback has returned, and the contexts
 * must be closed; after rzkv_close has closed the sockets they are gone.
 */
static void
op_destroy(struct op *op, bool from_callback)
{
    if (from_callback) {
        for (size_t i = 0; i < op->c->count; i++)
            if (op->ctx_open[i])
                nng_ctx_close(op->ctxs[i]);
        nng_aio_reap(op->aio);
    } else {
        nng_aio_free(op->aio);
    }
    pthread_mutex_destroy(&op->lock);
    arena_free(&op->arena);
    if (op->spare_msg != NULL)
        nng_msg_free(op->spare_msg);
    free(op->ctxs);
    free(op->ctx_open);
    free(op);
}

static void
list_remove(struct op **head, struct op *op)
{
    if (op->prev != NULL)
        op->prev->next = op->next;
    else
        *head = op->next;
    if (op->next != NULL)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void
list_push(struct op **head, struct op *op)
{
    op->prev = NULL;
    op->next = *head;
    if (*head != NULL)
        (*head)->prev = op;
    *head = op;
}

/* An op for a new request, counted in flight; NULL (err set) when the
 * client is closing or memory runs out. */
static struct op *
op_take(rzkv_client *c, rzkv_status *refused, rzkv_error *err)
{
    struct op *op = NULL, *fresh = NULL;
    bool closing;

    pthread_mutex_lock(&c->lock);
    while (!(closing = c->closing)) {
        if (c->spare != NULL) {
            op = c->spare;
            list_remove(&c->spare, op);
            c->nspare--;
            break;
        }
        if (fresh != NULL) {
            op = fresh;
            fresh = NULL;
            break;
        }
        pthread_mutex_unlock(&c->lock);
        fresh = op_new(c);              /* outside the lock: it allocates */
        pthread_mutex_lock(&c->lock);
        if (fresh == NULL)
            break;
    }
    if (op != NULL) {
        /* Before close can see it on the active list. */
        atomic_store(&op->cancelled, false);
        list_push(&c->active, op);
        c->inflight++;
    }
    if (fresh != NULL) {                /* another op came back meanwhile */
        list_push(&c->spare, fresh);
        c->nspare++;
    }
    pthread_mutex_unlock(&c->lock);
    if (op == NULL)
        *refused = set_error(err, closing ? RZKV_INVALID : RZKV_ERROR, NULL,
                             "%s", closing ? "the client is closing"
                                           : "out of memory");
    return op;
}

/* Back to the free list (or freed): the last thing done with an op, on a
 * library thread. */
static void
op_release(struct op *op)
{
    rzkv_client *c = op->c;
    bool keep;

    /* A thread that armed the last step may still hold the lock. */
    pthread_mutex_lock(&op->lock);
    pthread_mutex_unlock(&op->lock);
    pthread_mutex_lock(&c->lock);
    list_remove(&c->active, op);
    keep = c->nspare < SPARE_OPS_MAX;
    if (keep) {
        list_push(&c->spare, op);
        c->nspare++;
    } else {
        pthread_mutex_unlock(&c->lock);
        op_destroy(op, true);
        pthread_mutex_lock(&c->lock);
    }
    /* Last: rzkv_close may free c once nothing is in flight. */
    if (--c->inflight == 0)
        pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->lock);
}

/* ---- ops: one request, node after node ----------------------------------- */

static enum req_kind
op_kind(const struct op *op)
{
    return op->type == OP_SET || op->type == OP_DEL ? REQ_WRITE : REQ_READ;
}

static struct node *
op_node(const struct op *op)
{
    return &op->c->nodes[op->idx];
}

static void settle(struct op *op);

static void
complete(struct op *op)
{
    settle(op);
    op->how.done(op);
    op->reply = NULL;
    arena_reset(&op->arena);
    if (op->msg != NULL) {
        wire_msg_recycle(&op->spare_msg, op->msg, SPARE_MSG_MAX);
        op->msg = NULL;
    }
    op_release(op);
}

/*
 * The outcome is in op->err: complete the op now if this thread runs its
 * callback, or else on the timer thread, so that a caller's callback never
 * runs inside the call that submitted the request.
 */
static void
finish(struct op *op)
{
    rzkv_client *c = op->c;

    if (running_op == op) {
        complete(op);
        return;
    }
    op->state = OP_DEFERRED;
    pthread_mutex_lock(&c->timer_lock);
    op->deferred_next = c->deferred;
    c->deferred = op;
    pthread_cond_signal(&c->timer_wake);
    pthread_mutex_unlock(&c->timer_lock);
}

/* Lower c->soonest to t; true if it was later. */
static bool
lower_soonest(rzkv_client *c, uint64_t t)
{
    uint_fast64_t cur = atomic_load(&c->soonest);

    while (t < cur)
        if (atomic_compare_exchange_weak(&c->soonest, &cur, t))
            return true;
    return false;
}

/* The deadline of the step about to start (op->lock held). */
static void
set_deadline(struct op *op, unsigned ms)
{
    rzkv_client *c = op->c;

    if (ms == UINT_MAX) {
        op->deadline = 0;
        return;
    }
    op->deadline = conn_now_ns() + (uint64_t)ms * 1000000u;
    if (lower_soonest(c, op->deadline)) {
        pthread_mutex_lock(&c->timer_lock);
        pthread_cond_signal(&c->timer_wake);
        pthread_mutex_unlock(&c->timer_lock);
    }
}

static void
finish_cancelled(struct op *op, bool sent)
{
    const struct node *nd = op_node(op);

    if (sent && op_kind(op) == REQ_WRITE)
        set_error(&op->err, RZKV_UNKNOWN, nd->addr, "the client was closed "
                  "while waiting for %s; the write may or may not have been "
                  "applied", nd->addr);
    else
        set_error(&op->err, RZKV_ERROR, sent ? nd->addr : NULL,
                  "cancelled: the client was closed");
    finish(op);
}

/* Take back a request nng did not send (a copy, or the kept one). */
static void
take_back(struct op *op)
{
    nng_msg *m = nng_aio_get_msg(op->aio);

    nng_aio_set_msg(op->aio, NULL);
    if (m == NULL)
        return;
    if (op->msg == NULL)
        op->msg = m;
    else
        nng_msg_free(m);
}

static void try_node(struct op *op);
static void direct_done(struct conn_req *r, int rv, bool sent,
                        const uint8_t *body, size_t len);

static void
next_node(struct op *op)
{
    rzkv_client *c = op->c;

    if (op->tried == c->count) {
        /* A node that answers gibberish is a fault to report, not an
         * outage. */
        set_error(&op->err, op->bad_reply ? RZKV_ERROR : RZKV_UNAVAILABLE,
                  NULL, "%s", op->reasons);
        finish(op);
        return;
    }
    op->idx = (op->start + op->tried) % c->count;
    op->tried++;
    op->probed = false;
    op->probe_owner = false;
    op->waited_ms = 0;
    op->probe_gen = atomic_load(&c->nodes[op->idx].probe_gen);
    try_node(op);
}

/*
 * Hand the request to the node's socket.  A REQ send completes when a pipe
 * takes the request; if none does in time, it never left.  Without a pipe
 * we first wait briefly for the background dial, then probe (probe_start).
 */
static void
try_node(struct op *op)
{
    rzkv_client *c = op->c;
    struct node *nd = op_node(op);
    unsigned wait = c->connect_timeout_ms;
    nng_msg *m;
    int rv;

    if (nd->conn != NULL) {
        /* The conn copies the request as it sends it: op->msg stays, and
         * the conn keeps the deadlines, not the timer thread. */
        pthread_mutex_lock(&op->lock);
        if (atomic_load(&op->cancelled)) {
            pthread_mutex_unlock(&op->lock);
            finish_cancelled(op, false);
            return;
        }
        op->state = OP_DIRECT;
        op->deadline = 0;
        conn_send(nd->conn, &op->creq, direct_done, nng_msg_body(op->msg),
                  nng_msg_len(op->msg), wait, op->wait_ms);
        pthread_mutex_unlock(&op->lock);
        return;
    }
    if (!op->ctx_open[op->idx]) {
        if ((rv = nng_ctx_open(&op->ctxs[op->idx], nd->sock)) != 0) {
            set_error(&op->err, RZKV_ERROR, nd->addr, "%s",
                      nng_strerror(rv));
            finish(op);
            return;
        }
        op->ctx_open[op->idx] = true;
        nng_ctx_set_ms(op->ctxs[op->idx], NNG_OPT_REQ_RESENDTIME,
                       NNG_DURATION_INFINITE);
    }
    /* The last node gets the request itself; the others a copy. */
    if (op->tried == c->count) {
        m = op->msg;
        op->msg = NULL;
    } else if (nng_msg_dup(&m, op->msg) != 0) {
        set_error(&op->err, RZKV_ERROR, NULL, "out of memory");
        finish(op);
        return;
    }
    op->short_wait = !op->probed && atomic_load(&nd->pipes) == 0;
    if (op->short_wait && wait > FIRST_PIPE_WAIT_MS)
        wait = FIRST_PIPE_WAIT_MS;
    op->state = OP_SENDING;
    nng_aio_set_msg(op->aio, m);
    pthread_mutex_lock(&op->lock);
    if (atomic_load(&op->cancelled)) {
        pthread_mutex_unlock(&op->lock);
        take_back(op);
        finish_cancelled(op, false);
        return;
    }
    set_deadline(op, wait);
    nng_ctx_send(op->ctxs[op->idx], op->aio);
    pthread_mutex_unlock(&op->lock);
}

static void
outcome(struct op *op, enum attempt result)
{
    struct node *nd = op_node(op);
    Rzkv__Reply *r = op->reply;

    switch (result) {
    case ATTEMPT_NOT_SENT:
        note_reason(op->reasons, sizeof(op->reasons), "%s", op->why);
        next_node(op);
        return;
    case ATTEMPT_BAD_REPLY:
        op->bad_reply = true;
        /* FALLTHROUGH */
    case ATTEMPT_LOST:
        if (op_kind(op) == REQ_WRITE) {
            set_error(&op->err, RZKV_UNKNOWN, nd->addr, "%s; the write may "
                      "or may not have been applied", op->why);
            finish(op);
            return;
        }
        note_reason(op->reasons, sizeof(op->reasons), "%s", op->why);
        next_node(op);
        return;
    case ATTEMPT_ANSWERED:
        break;
    }
    if (r->status == RZKV__STATUS__UNAVAILABLE ||
        r->status == RZKV__STATUS__STOPPING) {
        bool said = r->message != NULL && r->message[0] != '\0';
        note_reason(op->reasons, sizeof(op->reasons), "%s: %s", nd->addr,
                    said ? r->message : wire_status_str(r->status));
        op->reply = NULL;
        arena_reset(&op->arena);
        next_node(op);
        return;
    }
    atomic_store(&op->c->preferred, op->idx);
    set_error(&op->err, map_status(r->status), nd->addr, "%s",
              r->message != NULL && r->message[0] != '\0'
              ? r->message : wire_status_str(r->status));
    finish(op);
}

static void probe_start(struct op *op);
static void probe_outcome(struct op *op, int rv);

/*
 * No pipe came within the short wait.  Probe the node, unless another op
 * is probing it already: then use the outcome of a probe that completed
 * since this op came to the node, or wait for a pipe a little longer.
 */
static void
no_pipe(struct op *op)
{
    struct node *nd = op_node(op);
    unsigned limit = op->c->connect_timeout_ms;
    int rv;

    pthread_mutex_lock(&nd->lock);
    if (atomic_load(&nd->probe_gen) != op->probe_gen) {
        rv = nd->probe_outcome;
        pthread_mutex_unlock(&nd->lock);
        probe_outcome(op, rv);
    } else if (nd->probing) {
        pthread_mutex_unlock(&nd->lock);
        op->waited_ms += limit < FIRST_PIPE_WAIT_MS ? limit
                                                    : FIRST_PIPE_WAIT_MS;
        if (op->waited_ms >= limit)
            probe_outcome(op, NNG_ETIMEDOUT);
        else
            try_node(op);
    } else {
        nd->probing = true;
        pthread_mutex_unlock(&nd->lock);
        op->probe_owner = true;
        probe_start(op);
    }
}

/* The request never left for this node (rv says why): the client is
 * closing, or the next node may take it. */
static void
not_sent(struct op *op, int rv)
{
    if (atomic_load(&op->cancelled)) {
        finish_cancelled(op, false);
        return;
    }
    describe_connect_error(rv, op_node(op), op->c->connect_timeout_ms,
                           op->why, sizeof(op->why));
    outcome(op, ATTEMPT_NOT_SENT);
}

static void
sent(struct op *op, int rv)
{
    if (rv == 0) {
        op->state = OP_RECEIVING;
        nng_aio_set_msg(op->aio, NULL);     /* the socket's now */
        pthread_mutex_lock(&op->lock);
        if (atomic_load(&op->cancelled)) {
            pthread_mutex_unlock(&op->lock);
            finish_cancelled(op, true);
            return;
        }
        set_deadline(op, op->wait_ms);
        nng_ctx_recv(op->ctxs[op->idx], op->aio);
        pthread_mutex_unlock(&op->lock);
        return;
    }
    take_back(op);
    if (rv == NNG_ETIMEDOUT && op->short_wait &&
        !atomic_load(&op->cancelled)) {
        no_pipe(op);
        return;
    }
    not_sent(op, rv);
}

/* The node's answer, whichever way it came. */
static void
answered(struct op *op, const uint8_t *body, size_t len)
{
    op->reply = rzkv__reply__unpack(&op->arena.pb, len, body);
    if (op->reply == NULL) {
        snprintf(op->why, sizeof(op->why), "%s sent an answer that is "
                 "not an rzkv reply", op_node(op)->addr);
        outcome(op, ATTEMPT_BAD_REPLY);
    } else {
        outcome(op, ATTEMPT_ANSWERED);
    }
}

static void
received(struct op *op, int rv)
{
    const struct node *nd = op_node(op);

    if (rv == NNG_ETIMEDOUT) {
        snprintf(op->why, sizeof(op->why), "timed out after %u ms waiting "
                 "for %s", op->wait_ms, nd->addr);
        outcome(op, ATTEMPT_LOST);
    } else if (rv != 0 && atomic_load(&op->cancelled)) {
        finish_cancelled(op, true);
    } else if (rv != 0) {
        snprintf(op->why, sizeof(op->why), "%s: %s while waiting for the "
                 "answer", nd->addr, nng_strerror(rv));
        outcome(op, ATTEMPT_LOST);
    } else {
        nng_msg *answer = nng_aio_get_msg(op->aio);
        nng_aio_set_msg(op->aio, NULL);
        answered(op, nng_msg_body(answer), nng_msg_len(answer));
        nng_msg_free(answer);
    }
}

/* A conn's callback, on its loop thread: every step on a conn ends here. */
static void
direct_done(struct conn_req *r, int rv, bool was_sent, const uint8_t *body,
            size_t len)
{
    struct op *op = (struct op *)((char *)r - offsetof(struct op, creq));
    struct op *outer = running_op;

    running_op = op;
    if (rv == 0) {
        answered(op, body, len);
    } else if (was_sent) {
        received(op, rv);
    } else {
        not_sent(op, rv);
    }
    running_op = outer;     /* op may be gone: only the pointer is used */
}

/* ---- ops: probing a node that has no connection --------------------------- */

/*
 * Connect to the node's address once, on the side, to learn quickly why
 * the socket has no pipe: nng's background dialer keeps its errors.  The
 * probe completes the SP handshake (8-byte headers, as a REQ peer) before
 * it hangs up, because nng 1.5's IPC listener stops accepting after a peer
 * leaves in the middle of it (nng issue #1518).  A node that accepts but is
 * slow to answer the handshake counts as up: the send then waits for it.
 */
static void
probe_outcome(struct op *op, int rv)
{
    if (rv == 0 && !atomic_load(&op->cancelled)) {
        op->probed = true;      /* the send now waits the whole timeout */
        try_node(op);
        return;
    }
    not_sent(op, rv);
}

/* The probe is over: tell the ops waiting for it (unless it was cut
 * short by rzkv_close: then it tells nothing). */
static void
probe_done(struct op *op, int rv)
{
    struct node *nd = op_node(op);

    if (op->stream != NULL) {
        nng_stream_free(op->stream);
        op->stream = NULL;
    }
    if (op->probe_owner) {
        op->probe_owner = false;
        pthread_mutex_lock(&nd->lock);
        nd->probing = false;
        if (!atomic_load(&op->cancelled)) {
            nd->probe_outcome = rv;
            atomic_fetch_add(&nd->probe_gen, 1);
        }
        pthread_mutex_unlock(&nd->lock);
    }
    probe_outcome(op, rv);
}

static void
probe_start(struct op *op)
{
    struct node *nd = op_node(op);

    if (nd->probe == NULL) {
        probe_done(op, nd->probe_rv);
        return;
    }
    op->state = OP_PROBE_DIAL;
    pthread_mutex_lock(&op->lock);
    if (atomic_load(&op->cancelled)) {
        pthread_mutex_unlock(&op->lock);
        probe_done(op, NNG_ECANCELED);
        return;
    }
    set_deadline(op, op->c->connect_timeout_ms);
    nng_stream_dialer_dial(nd->probe, op->aio);
    pthread_mutex_unlock(&op->lock);
}

/* Move the next piece of the header, out or in. */
static void
probe_io(struct op *op)
{
    nng_iov iov = { op->header + op->header_done,
                    sizeof(op->header) - op->header_done };

    nng_aio_set_iov(op->aio, 1, &iov);
    pthread_mutex_lock(&op->lock);
    if (atomic_load(&op->cancelled)) {
        pthread_mutex_unlock(&op->lock);
        probe_done(op, NNG_ECANCELED);
        return;
    }
    set_deadline(op, op->c->connect_timeout_ms);
    if (op->state == OP_PROBE_SEND)
        nng_stream_send(op->stream, op->aio);
    else
        nng_stream_recv(op->stream, op->aio);
    pthread_mutex_unlock(&op->lock);
}

static void
probe_dialed(struct op *op, int rv)
{
    static const uint8_t req_header[8] = { 0, 'S', 'P', 0, 0, 0x30, 0, 0 };

    if (rv != 0) {
        probe_done(op, rv);
        return;
    }
    op->stream = nng_aio_get_output(op->aio, 0);
    memcpy(op->header, req_header, sizeof(op->header));
    op->header_done = 0;
    op->state = OP_PROBE_SEND;
    probe_io(op);
}

static void
probe_moved(struct op *op, int rv)
{
    if (rv == 0 && nng_aio_count(op->aio) == 0)
        rv = NNG_ECONNRESET;
    if (rv != 0) {
        probe_done(op, rv == NNG_ETIMEDOUT ? 0 : rv);
        return;
    }
    op->header_done += nng_aio_count(op->aio);
    if (op->header_done < sizeof(op->header)) {
        probe_io(op);
    } else if (op->state == OP_PROBE_SEND) {
        op->state = OP_PROBE_RECV;
        op->header_done = 0;
        probe_io(op);
    } else {
        probe_done(op, 0);
    }
}

/* Every step of every op ends here, on a library thread. */
static void
op_callback(void *arg)
{
    struct op *op = arg;
    struct op *outer = running_op;
    int rv = nng_aio_result(op->aio);

    running_op = op;
    switch (op->state) {
    case OP_SENDING:
        sent(op, rv);
        break;
    case OP_RECEIVING:
        received(op, rv);
        break;
    case OP_PROBE_DIAL:
        probe_dialed(op, rv);
        break;
    case OP_PROBE_SEND:
    case OP_PROBE_RECV:
        probe_moved(op, rv);
        break;
    case OP_DIRECT:         /* a conn's (direct_done), never an aio's */
    case OP_DEFERRED:       /* the timer thread's */
        break;
    }
    running_op = outer;     /* op may be gone: only the pointer is used */
}

/* ---- the timer thread ------------------------------------------------------ */

/* End every step past its deadline; note the soonest of the others. */
static void
expire_steps(rzkv_client *c, uint64_t now)
{
    uint64_t soonest = UINT64_MAX;

    atomic_store(&c->soonest, UINT64_MAX);  /* steps armed from now on
                                             * lower it themselves */
    pthread_mutex_lock(&c->lock);
    for (struct op *op = c->active; op != NULL; op = op->next) {
        pthread_mutex_lock(&op->lock);
        if (op->deadline != 0 && op->deadline <= now) {
            op->deadline = 0;
            nng_aio_abort(op->aio, NNG_ETIMEDOUT);
        } else if (op->deadline != 0 && op->deadline < soonest) {
            soonest = op->deadline;
        }
        pthread_mutex_unlock(&op->lock);
    }
    pthread_mutex_unlock(&c->lock);
    lower_soonest(c, soonest);
}

static void *
timer_main(void *arg)
{
    rzkv_client *c = arg;

    pthread_mutex_lock(&c->timer_lock);
    while (!c->timer_stop) {
        struct op *op = c->deferred;
        uint64_t soonest, now;

        if (op != NULL) {
            c->deferred = op->deferred_next;
            pthread_mutex_unlock(&c->timer_lock);
            running_op = op;
            complete(op);
            running_op = NULL;
            pthread_mutex_lock(&c->timer_lock);
            continue;
        }
        soonest = atomic_load(&c->soonest);
        now = conn_now_ns();
        if (soonest <= now) {
            pthread_mutex_unlock(&c->timer_lock);
            expire_steps(c, now);
            pthread_mutex_lock(&c->timer_lock);
        } else if (soonest == UINT64_MAX) {
            pthread_cond_wait(&c->timer_wake, &c->timer_lock);
        } else {
            struct timespec until = {
                .tv_sec = (time_t)(soonest / 1000000000u),
                .tv_nsec = (long)(soonest % 1000000000u),
            };
            pthread_cond_timedwait(&c->timer_wake, &c->timer_lock, &until);
        }
    }
    pthread_mutex_unlock(&c->timer_lock);
    return NULL;
}

/*
 * Start a request: pack it, take an op and send it to the first node.
 * RZKV_OK: how->done will run exactly once; otherwise err says why not.
 */
static rzkv_status
submit(rzkv_client *c, enum op_type type, const Rzkv__Envelope *env,
       unsigned wait_ms, const struct completion *how, rzkv_error *err)
{
    rzkv_status refused;
    nng_msg *msg;
    struct op *op;

    /* The library's threads must not wait for each other. */
    if (how->cb == NULL && in_callback)
        return set_error(err, RZKV_INVALID, NULL, "a synchronous call from "
                         "a callback would block the library's threads");
    if ((op = op_take(c, &refused, err)) == NULL)
        return refused;
    msg = op->spare_msg;
    op->spare_msg = NULL;
    if (msg == NULL ? (msg = wire_pack(&env->base)) == NULL
                    : wire_pack_into(msg, &env->base) != 0) {
        if (msg != NULL)
            nng_msg_free(msg);
        op_release(op);
        return set_error(err, RZKV_ERROR, NULL, "out of memory");
    }
    op->type = type;
    op->msg = msg;
    op->wait_ms = wait_ms;
    op->start = atomic_load(&c->preferred) % c->count;
    op->tried = 0;
    op->bad_reply = false;
    op->reasons[0] = '\0';
    op->reply = NULL;
    op->how = *how;
    next_node(op);
    return RZKV_OK;
}

/* ---- outcomes: what each caller gets --------------------------------------- */

/* An OK answer must carry what the request asked for. */
static void
settle(struct op *op)
{
    const Rzkv__Reply *r = op->reply;

    if (op->err.status != RZKV_OK)
        return;
    switch (op->type) {
    case OP_GET:
    case OP_INFO:
        if (r->body_case != RZKV__REPLY__BODY_CLUSTER)
            set_error(&op->err, RZKV_ERROR, op->err.address,
                      "the answer says OK but carries no cluster reply");
        else if (op->type == OP_INFO && r->cluster->info == NULL)
            set_error(&op->err, RZKV_ERROR, op->err.address,
                      "the answer carries no cluster info");
        break;
    case OP_KEYS:
        if (r->body_case != RZKV__REPLY__BODY_LIST_KEYS)
            set_error(&op->err, RZKV_ERROR, op->err.address,
                      "the answer carries no key list");
        break;
    default:
        break;
    }
}

static const Rzkv__ClusterReply *
cluster_body(const struct op *op)
{
    return op->reply != NULL &&
           op->reply->body_case == RZKV__REPLY__BODY_CLUSTER
           ? op->reply->cluster : NULL;
}

/* The _async calls: the caller's callback, pointing into the answer. */
static void
deliver(struct op *op)
{
    const Rzkv__ClusterReply *body = cluster_body(op);
    rzkv_result res = {
        .status = op->err.status,
        .message = op->err.message,
        .address = op->err.address,
    };
    bool outer = in_callback;

    if (res.status == RZKV_OK && op->type != OP_HEALTH) {
        copy_stamp(&op->stamp, body != NULL ? body->stamp : NULL);
        res.stamp = &op->stamp;
        if (op->type == OP_GET) {
            res.value = body->value.len > 0 ? body->value.data
                                            : (const void *)"";
            res.value_len = body->value.len;
        }
    }
    in_callback = true;
    op->how.cb(op->how.arg, &res);
    in_callback = outer;
}

/* A synchronous call waiting for its op, and where its results go. */
struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    rzkv_status status;
    rzkv_error *err;
    void **value;
    size_t *value_len;
    rzkv_stamp *stamp;
    rzkv_cluster_info **info;
    rzkv_key_page **page;
    bool with_deleted;          /* rzkv_keys_all */
};

/* Copy what the caller asked for out of an OK answer. */
static void
take_results(struct op *op, struct waiter *w)
{
    const Rzkv__ClusterReply *body = cluster_body(op);

    switch (op->type) {
    case OP_GET:
        if ((*w->value = copy_bytes(body->value.data, body->value.len))
            == NULL)
            set_error(&op->err, RZKV_ERROR, NULL, "out of memory");
        else
            *w->value_len = body->value.len;
        copy_stamp(w->stamp, body->stamp);
        break;
    case OP_SET:
    case OP_DEL:
        copy_stamp(w->stamp, body != NULL ? body->stamp : NULL);
        break;
    case OP_INFO:
        if ((*w->info = convert_info(body->info)) == NULL)
            set_error(&op->err, RZKV_ERROR, NULL, "out of memory");
        break;
    case OP_KEYS:
        if ((*w->page = convert_keys(op->reply->list_keys, w->with_deleted))
            == NULL)
            set_error(&op->err, RZKV_ERROR, NULL, "out of memory");
        break;
    case OP_HEALTH:
        break;
    }
}

static void
wake_waiter(struct op *op)
{
    struct waiter *w = op->how.arg;

    if (op->err.status == RZKV_OK)
        take_results(op, w);
    if (w->err != NULL)
        *w->err = op->err;
    pthread_mutex_lock(&w->lock);
    w->status = op->err.status;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static struct completion
waiter_init(struct waiter *w, rzkv_error *err)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->err = err;
    return (struct completion){ wake_waiter, NULL, w };
}

/* Wait for the op a synchronous call started; st: what starting it said. */
static rzkv_status
waiter_wait(struct waiter *w, rzkv_status st)
{
    if (st == RZKV_OK) {
        pthread_mutex_lock(&w->lock);
        while (!w->done)
            pthread_cond_wait(&w->cond, &w->lock);
        st = w->status;
        pthread_mutex_unlock(&w->lock);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    return st;
}

/* ---- the calls ------------------------------------------------------------ */

static bool
check_bytes(const void *p, size_t len, const char *what, bool may_be_empty,
            rzkv_error *err)
{
    if (p == NULL && len > 0) {
        set_error(err, RZKV_INVALID, NULL, "%s is NULL", what);
        return false;
    }
    if (len == 0 && !may_be_empty) {
        set_error(err, RZKV_INVALID, NULL, "empty %s", what);
        return false;
    }
    return true;
}

/*
 * How long to wait for a node's answer: its budget for reaching a quorum,
 * plus a grace so that its own UNAVAILABLE or UNKNOWN reaches us before we
 * give up on it (a timeout of ours makes a write UNKNOWN, whereas the
 * node's UNAVAILABLE says it was not applied).
 */
static unsigned
reply_wait(unsigned timeout_ms)
{
    unsigned budget = timeout_ms != 0 ? timeout_ms : CLUSTER_TIMEOUT_MS;
    unsigned grace = budget / 4 > 250 ? budget / 4 : 250;
    return budget > UINT_MAX - grace ? UINT_MAX : budget + grace;
}

/* Fill in consistency and timeout, and say how long to wait for it. */
static bool
prepare(rzkv_client *c, const rzkv_req *req, Rzkv__ClusterRequest *cr,
        unsigned *wait_ms, rzkv_error *err)
{
    rzkv_consistency consistency = c->consistency;
    unsigned timeout_ms = c->timeout_ms;

    if (req != NULL) {
        if (req->timeout_ms != 0)
            timeout_ms = req->timeout_ms;
        consistency = req->consistency;
    }
    switch (consistency) {
    case RZKV_QUORUM: cr->consistency = RZKV__CONSISTENCY__QUORUM; break;
    case RZKV_ONE: cr->consistency = RZKV__CONSISTENCY__ONE; break;
    case RZKV_ALL: cr->consistency = RZKV__CONSISTENCY__ALL; break;
    default:
        set_error(err, RZKV_INVALID, NULL, "bad consistency %d",
                  (int)consistency);
        return false;
    }
    cr->timeout_ms = timeout_ms;
    *wait_ms = reply_wait(timeout_ms);
    return true;
}

static rzkv_status
submit_cluster(rzkv_client *c, enum op_type type, Rzkv__ClusterRequest *cr,
               unsigned wait_ms, const struct completion *how,
               rzkv_error *err)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;

    env.msg_case = RZKV__ENVELOPE__MSG_CLUSTER;
    env.cluster = cr;
    return submit(c, type, &env, wait_ms, how, err);
}

/* Each request is built once, for its synchronous and _async call alike. */
static rzkv_status
start_get(rzkv_client *c, const void *key, size_t key_len,
          const rzkv_req *req, const struct completion *how,
          rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterGet get = RZKV__CLUSTER_GET__INIT;
    unsigned wait_ms;

    if (!check_bytes(key, key_len, "key", false, err) ||
        !prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    get.key.data = (uint8_t *)key;
    get.key.len = key_len;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_GET;
    cr.get = &get;
    return submit_cluster(c, OP_GET, &cr, wait_ms, how, err);
}

static rzkv_status
start_set(rzkv_client *c, const void *key, size_t key_len,
          const void *value, size_t value_len, const rzkv_req *req,
          const struct completion *how, rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterSet set = RZKV__CLUSTER_SET__INIT;
    unsigned wait_ms;

    if (!check_bytes(key, key_len, "key", false, err) ||
        !check_bytes(value, value_len, "value", true, err) ||
        !prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    set.key.data = (uint8_t *)key;
    set.key.len = key_len;
    set.value.data = (uint8_t *)value;
    set.value.len = value_len;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_SET;
    cr.set = &set;
    return submit_cluster(c, OP_SET, &cr, wait_ms, how, err);
}

static rzkv_status
start_del(rzkv_client *c, const void *key, size_t key_len,
          const rzkv_req *req, const struct completion *how,
          rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterDelete del = RZKV__CLUSTER_DELETE__INIT;
    unsigned wait_ms;

    if (!check_bytes(key, key_len, "key", false, err) ||
        !prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    del.key.data = (uint8_t *)key;
    del.key.len = key_len;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_DEL;
    cr.del = &del;
    return submit_cluster(c, OP_DEL, &cr, wait_ms, how, err);
}

static rzkv_status
start_health(rzkv_client *c, const rzkv_req *req,
             const struct completion *how, rzkv_error *err)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__HealthRequest hr = RZKV__HEALTH_REQUEST__INIT;
    Rzkv__ClusterRequest unused = RZKV__CLUSTER_REQUEST__INIT;
    unsigned wait_ms;

    if (!prepare(c, req, &unused, &wait_ms, err))
        return RZKV_INVALID;
    env.msg_case = RZKV__ENVELOPE__MSG_HEALTH;
    env.health = &hr;
    return submit(c, OP_HEALTH, &env, wait_ms, how, err);
}

rzkv_status
rzkv_get(rzkv_client *c, const void *key, size_t key_len,
         const rzkv_req *req, void **value, size_t *value_len,
         rzkv_stamp *stamp, rzkv_error *err)
{
    struct waiter w;

    if (value != NULL)
        *value = NULL;
    if (value_len != NULL)
        *value_len = 0;
    if (c == NULL || value == NULL || value_len == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL argument");
    struct completion how = waiter_init(&w, err);
    w.value = value;
    w.value_len = value_len;
    w.stamp = stamp;
    return waiter_wait(&w, start_get(c, key, key_len, req, &how, err));
}

rzkv_status
rzkv_set(rzkv_client *c, const void *key, size_t key_len,
         const void *value, size_t value_len, const rzkv_req *req,
         rzkv_stamp *stamp, rzkv_error *err)
{
    struct waiter w;

    if (c == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL client");
    struct completion how = waiter_init(&w, err);
    w.stamp = stamp;
    return waiter_wait(&w, start_set(c, key, key_len, value, value_len, req,
                                     &how, err));
}

rzkv_status
rzkv_del(rzkv_client *c, const void *key, size_t key_len,
         const rzkv_req *req, rzkv_stamp *stamp, rzkv_error *err)
{
    struct waiter w;

    if (c == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL client");
    struct completion how = waiter_init(&w, err);
    w.stamp = stamp;
    return waiter_wait(&w, start_del(c, key, key_len, req, &how, err));
}

rzkv_status
rzkv_health(rzkv_client *c, const rzkv_req *req, rzkv_error *err)
{
    struct waiter w;

    if (c == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL client");
    struct completion how = waiter_init(&w, err);
    return waiter_wait(&w, start_health(c, req, &how, err));
}

rzkv_status
rzkv_info(rzkv_client *c, const rzkv_req *req, rzkv_cluster_info **info,
          rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterInfo ci = RZKV__CLUSTER_INFO__INIT;
    struct waiter w;
    unsigned wait_ms;

    if (info != NULL)
        *info = NULL;
    if (c == NULL || info == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL argument");
    if (!prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_INFO;
    cr.info = &ci;
    struct completion how = waiter_init(&w, err);
    w.info = info;
    return waiter_wait(&w, submit_cluster(c, OP_INFO, &cr, wait_ms, &how,
                                          err));
}

static rzkv_status
request_keys(rzkv_client *c, const void *start, size_t start_len,
             unsigned limit, bool with_deleted, const rzkv_req *req,
             rzkv_key_page **page, rzkv_error *err)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__ListKeys lk = RZKV__LIST_KEYS__INIT;
    Rzkv__ClusterRequest unused = RZKV__CLUSTER_REQUEST__INIT;
    struct waiter w;
    unsigned wait_ms;

    if (page != NULL)
        *page = NULL;
    if (c == NULL || page == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL argument");
    if (!check_bytes(start, start_len, "start key", true, err) ||
        !prepare(c, req, &unused, &wait_ms, err))
        return RZKV_INVALID;
    lk.start_key.data = (uint8_t *)start;
    lk.start_key.len = start_len;
    lk.limit = limit;
    lk.include_tombstones = with_deleted;
    env.msg_case = RZKV__ENVELOPE__MSG_LIST_KEYS;
    env.list_keys = &lk;
    struct completion how = waiter_init(&w, err);
    w.page = page;
    w.with_deleted = with_deleted;
    return waiter_wait(&w, submit(c, OP_KEYS, &env, wait_ms, &how, err));
}

rzkv_status
rzkv_keys(rzkv_client *c, const void *start, size_t start_len,
          unsigned limit, const rzkv_req *req, rzkv_key_page **page,
          rzkv_error *err)
{
    return request_keys(c, start, start_len, limit, false, req, page, err);
}

rzkv_status
rzkv_keys_all(rzkv_client *c, const void *start, size_t start_len,
              unsigned limit, const rzkv_req *req, rzkv_key_page **page,
              rzkv_error *err)
{
    return request_keys(c, start, start_len, limit, true, req, page, err);
}

/* ---- the _async calls ----------------------------------------------------- */

static bool
check_async(const rzkv_client *c, rzkv_callback cb, rzkv_error *err)
{
    if (c == NULL || cb == NULL) {
        set_error(err, RZKV_INVALID, NULL, "NULL argument");
        return false;
    }
    return true;
}

rzkv_status
rzkv_get_async(rzkv_client *c, const void *key, size_t key_len,
               const rzkv_req *req, rzkv_callback cb, void *arg,
               rzkv_error *err)
{
    struct completion how = { deliver, cb, arg };

    if (!check_async(c, cb, err))
        return RZKV_INVALID;
    return start_get(c, key, key_len, req, &how, err);
}

rzkv_status
rzkv_set_async(rzkv_client *c, const void *key, size_t key_len,
               const void *value, size_t value_len, const rzkv_req *req,
               rzkv_callback cb, void *arg, rzkv_error *err)
{
    struct completion how = { deliver, cb, arg };

    if (!check_async(c, cb, err))
        return RZKV_INVALID;
    return start_set(c, key, key_len, value, value_len, req, &how, err);
}

rzkv_status
rzkv_del_async(rzkv_client *c, const void *key, size_t key_len,
               const rzkv_req *req, rzkv_callback cb, void *arg,
               rzkv_error *err)
{
    struct completion how = { deliver, cb, arg };

    if (!check_async(c, cb, err))
        return RZKV_INVALID;
    return start_del(c, key, key_len, req, &how, err);
}

rzkv_status
rzkv_health_async(rzkv_client *c, const rzkv_req *req, rzkv_callback cb,
                  void *arg, rzkv_error *err)
{
    struct completion how = { deliver, cb, arg };

    if (!check_async(c, cb, err))
        return RZKV_INVALID;
    return start_health(c, req, &how, err);
}

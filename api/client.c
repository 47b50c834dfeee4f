/*
 * client.c - librzkv: the Cluster API over nng REQ sockets.
 *
 * One REQ socket per node address, dialed in the background so it
 * reconnects by itself.  Every call opens its own nng context, so threads
 * can share a client; the only state shared between calls is each node's
 * pipe count (kept by nng pipe callbacks) and the index of the node that
 * answered last, which the next call tries first.
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
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

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

struct node {
    char addr[RZKV_ADDRESS_MAX];    /* as the caller wrote it */
    char url[URL_MAX];
    nng_socket sock;
    bool sock_open;
    pthread_mutex_t lock;
    pthread_cond_t changed;         /* signalled when pipes changes */
    int pipes;
};

struct rzkv_client {
    size_t count;
    struct node *nodes;
    unsigned timeout_ms;            /* 0: the cluster's */
    unsigned connect_timeout_ms;
    rzkv_consistency consistency;
    atomic_size_t preferred;        /* the node that answered last */
};

enum req_kind { REQ_READ, REQ_WRITE };

enum attempt {
    ATTEMPT_ANSWERED,       /* a decoded reply */
    ATTEMPT_NOT_SENT,       /* never left this process */
    ATTEMPT_LOST,           /* sent; no answer */
    ATTEMPT_BAD_REPLY,      /* an answer we could not decode */
    ATTEMPT_FAILED,         /* a local failure (memory) */
};

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

    (void)pipe;
    pthread_mutex_lock(&nd->lock);
    if (ev == NNG_PIPE_EV_ADD_POST)
        nd->pipes++;
    else if (ev == NNG_PIPE_EV_REM_POST && nd->pipes > 0)
        nd->pipes--;
    pthread_cond_broadcast(&nd->changed);
    pthread_mutex_unlock(&nd->lock);
}

static bool
node_wait_pipe(struct node *nd, unsigned ms)
{
    struct timespec until;
    bool up;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&nd->lock);
    while (nd->pipes == 0)
        if (pthread_cond_timedwait(&nd->changed, &nd->lock, &until) ==
            ETIMEDOUT)
            break;
    up = nd->pipes > 0;
    pthread_mutex_unlock(&nd->lock);
    return up;
}

/* Move len bytes through the stream, in as many pieces as it takes. */
static int
stream_io(nng_stream *st, nng_aio *aio, void *buf, size_t len, bool send)
{
    size_t done = 0;

    while (done < len) {
        nng_iov iov = { (char *)buf + done, len - done };
        int rv;
        nng_aio_set_iov(aio, 1, &iov);
        if (send)
            nng_stream_send(st, aio);
        else
            nng_stream_recv(st, aio);
        nng_aio_wait(aio);
        if ((rv = nng_aio_result(aio)) != 0)
            return rv;
        if (nng_aio_count(aio) == 0)
            return NNG_ECONNRESET;
        done += nng_aio_count(aio);
    }
    return 0;
}

/*
 * Connect to the node's address once, on the side, to learn quickly why
 * the socket has no pipe: nng's background dialer keeps its errors.  The
 * probe completes the SP handshake (8-byte headers, as a REQ peer) before
 * it hangs up, because nng 1.5's IPC listener stops accepting after a peer
 * leaves in the middle of it (nng issue #1518).  A node that accepts but is
 * slow to answer the handshake counts as up: the send then waits for it.
 * TLS addresses are not probed (0: up as far as we know).
 */
static int
probe_connect(const char *url, unsigned timeout_ms)
{
    static const uint8_t req_header[8] = { 0, 'S', 'P', 0, 0, 0x30, 0, 0 };
    uint8_t header[8];
    nng_stream_dialer *dialer;
    nng_stream *st;
    nng_aio *aio;
    int rv;

    if (strncmp(url, "tls+tcp://", 10) == 0)
        return 0;
    if ((rv = nng_stream_dialer_alloc(&dialer, url)) != 0)
        return rv == NNG_ENOTSUP ? 0 : rv;
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_stream_dialer_free(dialer);
        return rv;
    }
    nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
    nng_stream_dialer_dial(dialer, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) == 0) {
        st = nng_aio_get_output(aio, 0);
        memcpy(header, req_header, sizeof(header));
        if ((rv = stream_io(st, aio, header, sizeof(header), true)) == 0)
            rv = stream_io(st, aio, header, sizeof(header), false);
        if (rv == NNG_ETIMEDOUT)
            rv = 0;
        nng_stream_free(st);
    }
    nng_aio_free(aio);
    nng_stream_dialer_free(dialer);
    return rv;
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
 * true if the node's socket has (or is about to have) a connection.  A dead
 * address is known within a probe connect, not after a request timeout.
 */
static bool
node_connected(const struct rzkv_client *c, struct node *nd,
               char *why, size_t len)
{
    unsigned first = c->connect_timeout_ms < FIRST_PIPE_WAIT_MS
        ? c->connect_timeout_ms : FIRST_PIPE_WAIT_MS;
    int rv;

    if (node_wait_pipe(nd, first))
        return true;
    rv = probe_connect(nd->url, c->connect_timeout_ms);
    if (rv == 0)
        return true;    /* the send waits for the pipe, bounded */
    describe_connect_error(rv, nd, c->connect_timeout_ms, why, len);
    return false;
}

static int
node_open(struct node *nd, const char *addr, const rzkv_options *opts,
          rzkv_error *err)
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
    return 0;
}

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

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    for (size_t i = 0; i < naddrs; i++) {
        struct node *nd = &c->nodes[i];
        pthread_mutex_init(&nd->lock, NULL);
        pthread_cond_init(&nd->changed, &attr);
        c->count = i + 1;
        if (addrs[i] == NULL) {
            set_error(err, RZKV_INVALID, NULL, "no address given");
            goto fail;
        }
        if (node_open(nd, addrs[i], opts, err) != 0)
            goto fail;
    }
    pthread_condattr_destroy(&attr);
    if (c->consistency > RZKV_ALL) {
        set_error(err, RZKV_INVALID, NULL, "bad consistency %d",
                  (int)c->consistency);
        rzkv_close(c);
        return NULL;
    }
    return c;

fail:
    pthread_condattr_destroy(&attr);
    rzkv_close(c);
    return NULL;
}

void
rzkv_close(rzkv_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->count; i++) {
        struct node *nd = &c->nodes[i];
        if (nd->sock_open)
            nng_close(nd->sock);    /* waits for its pipes and callbacks */
        pthread_cond_destroy(&nd->changed);
        pthread_mutex_destroy(&nd->lock);
    }
    free(c->nodes);
    free(c);
}

/* ---- one request to one node ---------------------------------------------- */

static enum attempt
attempt(const struct rzkv_client *c, struct node *nd, nng_msg *msg,
        unsigned wait_ms, Rzkv__Reply **reply, char *why, size_t len)
{
    nng_ctx ctx;
    nng_aio *aio;
    enum attempt result;
    int rv;

    if (!node_connected(c, nd, why, len)) {
        nng_msg_free(msg);
        return ATTEMPT_NOT_SENT;
    }
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_msg_free(msg);
        snprintf(why, len, "%s", nng_strerror(rv));
        return ATTEMPT_FAILED;
    }
    if ((rv = nng_ctx_open(&ctx, nd->sock)) != 0) {
        nng_aio_free(aio);
        nng_msg_free(msg);
        snprintf(why, len, "%s", nng_strerror(rv));
        return ATTEMPT_FAILED;
    }
    nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);

    /* A REQ send completes when the request is handed to a pipe; if none
     * comes, it never left and another node may have it. */
    nng_aio_set_msg(aio, msg);
    nng_aio_set_timeout(aio, (nng_duration)c->connect_timeout_ms);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        nng_msg_free(nng_aio_get_msg(aio));
        describe_connect_error(rv, nd, c->connect_timeout_ms, why, len);
        result = ATTEMPT_NOT_SENT;
        goto out;
    }

    nng_aio_set_timeout(aio, (nng_duration)wait_ms);
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    rv = nng_aio_result(aio);
    if (rv == NNG_ETIMEDOUT) {
        snprintf(why, len, "timed out after %u ms waiting for %s",
                 wait_ms, nd->addr);
        result = ATTEMPT_LOST;
    } else if (rv != 0) {
        snprintf(why, len, "%s: %s while waiting for the answer", nd->addr,
                 nng_strerror(rv));
        result = ATTEMPT_LOST;
    } else {
        nng_msg *answer = nng_aio_get_msg(aio);
        *reply = wire_unpack_reply(answer);
        nng_msg_free(answer);
        if (*reply == NULL) {
            snprintf(why, len, "%s sent an answer that is not an rzkv "
                     "reply", nd->addr);
            result = ATTEMPT_BAD_REPLY;
        } else {
            result = ATTEMPT_ANSWERED;
        }
    }
out:
    nng_ctx_close(ctx);
    nng_aio_free(aio);
    return result;
}

/*
 * Send an envelope to the nodes in turn until one gives an answer that
 * settles it.  *reply is set (and must be freed) whenever a node answered
 * with the returned status.
 */
static rzkv_status
call(rzkv_client *c, enum req_kind kind, const Rzkv__Envelope *env,
     unsigned wait_ms, Rzkv__Reply **reply, rzkv_error *err)
{
    char reasons[RZKV_MESSAGE_MAX] = "";
    size_t start = atomic_load(&c->preferred);
    bool bad_reply = false;
    nng_msg *msg;

    *reply = NULL;
    if ((msg = wire_pack(&env->base)) == NULL)
        return set_error(err, RZKV_ERROR, NULL, "out of memory");

    for (size_t i = 0; i < c->count; i++) {
        size_t idx = (start + i) % c->count;
        struct node *nd = &c->nodes[idx];
        char why[RZKV_MESSAGE_MAX] = "";
        Rzkv__Reply *r = NULL;
        nng_msg *copy;

        if (nng_msg_dup(&copy, msg) != 0) {
            nng_msg_free(msg);
            return set_error(err, RZKV_ERROR, NULL, "out of memory");
        }
        switch (attempt(c, nd, copy, wait_ms, &r, why, sizeof(why))) {
        case ATTEMPT_NOT_SENT:
            note_reason(reasons, sizeof(reasons), "%s", why);
            continue;
        case ATTEMPT_BAD_REPLY:
            bad_reply = true;
            /* FALLTHROUGH */
        case ATTEMPT_LOST:
            if (kind == REQ_WRITE) {
                nng_msg_free(msg);
                return set_error(err, RZKV_UNKNOWN, nd->addr,
                                 "%s; the write may or may not have been "
                                 "applied", why);
            }
            note_reason(reasons, sizeof(reasons), "%s", why);
            continue;
        case ATTEMPT_FAILED:
            nng_msg_free(msg);
            return set_error(err, RZKV_ERROR, nd->addr, "%s", why);
        case ATTEMPT_ANSWERED:
            break;
        }
        if (r->status == RZKV__STATUS__UNAVAILABLE ||
            r->status == RZKV__STATUS__STOPPING) {
            bool said = r->message != NULL && r->message[0] != '\0';
            note_reason(reasons, sizeof(reasons), "%s: %s", nd->addr,
                        said ? r->message : wire_status_str(r->status));
            rzkv__reply__free_unpacked(r, NULL);
            continue;
        }
        nng_msg_free(msg);
        atomic_store(&c->preferred, idx);
        *reply = r;
        return set_error(err, map_status(r->status), nd->addr, "%s",
                         r->message != NULL && r->message[0] != '\0'
                         ? r->message : wire_status_str(r->status));
    }
    nng_msg_free(msg);
    /* A node that answers gibberish is a fault to report, not an outage. */
    return set_error(err, bad_reply ? RZKV_ERROR : RZKV_UNAVAILABLE, NULL,
                     "%s", reasons);
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
static rzkv_status
cluster_call(rzkv_client *c, enum req_kind kind, Rzkv__ClusterRequest *cr,
             unsigned wait_ms, Rzkv__Reply **reply, rzkv_error *err)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    rzkv_status st;

    env.msg_case = RZKV__ENVELOPE__MSG_CLUSTER;
    env.cluster = cr;
    st = call(c, kind, &env, wait_ms, reply, err);
    if (st == RZKV_OK && kind == REQ_READ &&
        (*reply)->body_case != RZKV__REPLY__BODY_CLUSTER)
        st = set_error(err, RZKV_ERROR, err != NULL ? err->address : NULL,
                       "the answer says OK but carries no cluster reply");
    return st;
}

rzkv_status
rzkv_get(rzkv_client *c, const void *key, size_t key_len,
         const rzkv_req *req, void **value, size_t *value_len,
         rzkv_stamp *stamp, rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterGet get = RZKV__CLUSTER_GET__INIT;
    Rzkv__Reply *reply;
    unsigned wait_ms;
    rzkv_status st;

    if (value != NULL)
        *value = NULL;
    if (value_len != NULL)
        *value_len = 0;
    if (c == NULL || value == NULL || value_len == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL argument");
    if (!check_bytes(key, key_len, "key", false, err) ||
        !prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    get.key.data = (uint8_t *)key;
    get.key.len = key_len;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_GET;
    cr.get = &get;

    st = cluster_call(c, REQ_READ, &cr, wait_ms, &reply, err);
    if (st == RZKV_OK) {
        const ProtobufCBinaryData *v = &reply->cluster->value;
        if ((*value = copy_bytes(v->data, v->len)) == NULL)
            st = set_error(err, RZKV_ERROR, NULL, "out of memory");
        else
            *value_len = v->len;
        copy_stamp(stamp, reply->cluster->stamp);
    }
    if (reply != NULL)
        rzkv__reply__free_unpacked(reply, NULL);
    return st;
}

static rzkv_status
write_call(rzkv_client *c, Rzkv__ClusterRequest *cr, unsigned wait_ms,
           rzkv_stamp *stamp, rzkv_error *err)
{
    Rzkv__Reply *reply;
    rzkv_status st = cluster_call(c, REQ_WRITE, cr, wait_ms, &reply, err);

    if (st == RZKV_OK)
        copy_stamp(stamp, reply->body_case == RZKV__REPLY__BODY_CLUSTER
                   ? reply->cluster->stamp : NULL);
    if (reply != NULL)
        rzkv__reply__free_unpacked(reply, NULL);
    return st;
}

rzkv_status
rzkv_set(rzkv_client *c, const void *key, size_t key_len,
         const void *value, size_t value_len, const rzkv_req *req,
         rzkv_stamp *stamp, rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterSet set = RZKV__CLUSTER_SET__INIT;
    unsigned wait_ms;

    if (c == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL client");
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
    return write_call(c, &cr, wait_ms, stamp, err);
}

rzkv_status
rzkv_del(rzkv_client *c, const void *key, size_t key_len,
         const rzkv_req *req, rzkv_stamp *stamp, rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterDelete del = RZKV__CLUSTER_DELETE__INIT;
    unsigned wait_ms;

    if (c == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL client");
    if (!check_bytes(key, key_len, "key", false, err) ||
        !prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    del.key.data = (uint8_t *)key;
    del.key.len = key_len;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_DEL;
    cr.del = &del;
    return write_call(c, &cr, wait_ms, stamp, err);
}

/* ---- info, keys, health --------------------------------------------------- */

static char *
copy_string(const char *s)
{
    return strdup(s != NULL ? s : "");
}

void
rzkv_info_free(rzkv_cluster_info *info)
{
    if (info == NULL)
        return;
    for (size_t i = 0; i < info->node_count; i++) {
        free(info->nodes[i].id);
        free(info->nodes[i].address);
        free(info->nodes[i].error);
    }
    free(info->nodes);
    free(info->node_id);
    free(info);
}

static rzkv_cluster_info *
convert_info(const Rzkv__ClusterInfoReply *src)
{
    rzkv_cluster_info *info = calloc(1, sizeof(*info));
    if (info == NULL)
        return NULL;
    info->replica_count = src->replica_count;
    info->read_quorum = src->read_quorum;
    info->write_quorum = src->write_quorum;
    info->seed = src->seed;
    if ((info->node_id = copy_string(src->node_id)) == NULL)
        goto fail;
    if (src->n_nodes > 0 &&
        (info->nodes = calloc(src->n_nodes, sizeof(*info->nodes))) == NULL)
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
    }
    return info;
fail:
    rzkv_info_free(info);
    return NULL;
}

rzkv_status
rzkv_info(rzkv_client *c, const rzkv_req *req, rzkv_cluster_info **info,
          rzkv_error *err)
{
    Rzkv__ClusterRequest cr = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterInfo ci = RZKV__CLUSTER_INFO__INIT;
    Rzkv__Reply *reply;
    unsigned wait_ms;
    rzkv_status st;

    if (info != NULL)
        *info = NULL;
    if (c == NULL || info == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL argument");
    if (!prepare(c, req, &cr, &wait_ms, err))
        return RZKV_INVALID;
    cr.op_case = RZKV__CLUSTER_REQUEST__OP_INFO;
    cr.info = &ci;
    st = cluster_call(c, REQ_READ, &cr, wait_ms, &reply, err);
    if (st == RZKV_OK) {
        if (reply->cluster->info == NULL)
            st = set_error(err, RZKV_ERROR, err != NULL ? err->address : NULL,
                           "the answer carries no cluster info");
        else if ((*info = convert_info(reply->cluster->info)) == NULL)
            st = set_error(err, RZKV_ERROR, NULL, "out of memory");
    }
    if (reply != NULL)
        rzkv__reply__free_unpacked(reply, NULL);
    return st;
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
    free(page);
}

static rzkv_key_page *
convert_keys(const Rzkv__ListKeysReply *src)
{
    rzkv_key_page *page = calloc(1, sizeof(*page));
    if (page == NULL)
        return NULL;
    if (src->n_entries > 0 &&
        (page->keys = calloc(src->n_entries, sizeof(*page->keys))) == NULL)
        goto fail;
    for (size_t i = 0; i < src->n_entries; i++) {
        const Rzkv__Entry *e = src->entries[i];
        if (e->tombstone)
            continue;
        rzkv_key *k = &page->keys[page->count];
        if ((k->key = copy_bytes(e->key.data, e->key.len)) == NULL)
            goto fail;
        k->len = e->key.len;
        copy_stamp(&k->stamp, e->stamp);
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

rzkv_status
rzkv_keys(rzkv_client *c, const void *start, size_t start_len,
          unsigned limit, const rzkv_req *req, rzkv_key_page **page,
          rzkv_error *err)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__ListKeys lk = RZKV__LIST_KEYS__INIT;
    Rzkv__ClusterRequest unused = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__Reply *reply;
    unsigned wait_ms;
    rzkv_status st;

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
    lk.include_tombstones = false;
    env.msg_case = RZKV__ENVELOPE__MSG_LIST_KEYS;
    env.list_keys = &lk;

    st = call(c, REQ_READ, &env, wait_ms, &reply, err);
    if (st == RZKV_OK) {
        if (reply->body_case != RZKV__REPLY__BODY_LIST_KEYS)
            st = set_error(err, RZKV_ERROR, err != NULL ? err->address : NULL,
                           "the answer carries no key list");
        else if ((*page = convert_keys(reply->list_keys)) == NULL)
            st = set_error(err, RZKV_ERROR, NULL, "out of memory");
    }
    if (reply != NULL)
        rzkv__reply__free_unpacked(reply, NULL);
    return st;
}

rzkv_status
rzkv_health(rzkv_client *c, const rzkv_req *req, rzkv_error *err)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__HealthRequest hr = RZKV__HEALTH_REQUEST__INIT;
    Rzkv__ClusterRequest unused = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__Reply *reply;
    unsigned wait_ms;
    rzkv_status st;

    if (c == NULL)
        return set_error(err, RZKV_INVALID, NULL, "NULL client");
    if (!prepare(c, req, &unused, &wait_ms, err))
        return RZKV_INVALID;
    env.msg_case = RZKV__ENVELOPE__MSG_HEALTH;
    env.health = &hr;
    st = call(c, REQ_READ, &env, wait_ms, &reply, err);
    if (reply != NULL)
        rzkv__reply__free_unpacked(reply, NULL);
    return st;
}

/*
 * sup_front.c - the node's one TCP address, held by the supervisor.
 *
 * NAME
 *	sup_front - forward tcp://node.local_address to the coordinators'
 *	IPC sockets
 * DESCRIPTION
 *	Clients and peer nodes know a node by one address.  It must outlive
 *	any worker crash, so the supervisor holds it: a raw REP socket
 *	listens on node.local_address, a raw REQ socket dials every
 *	coordinator's RUN_DIR/coord-N.ipc (RZKV_COORD_IPC_FMT; coordinators
 *	listen there), and FRONT_FORWARDERS asynchronous forwarders per
 *	direction move requests one way and replies the other.  Raw sockets
 *	keep the routing header, so each reply finds its way back to the
 *	client connection that asked; the REQ side spreads requests over the
 *	coordinators that are connected.  When a coordinator restarts, its
 *	dialer reconnects within RECONNECT_MAX_MS; a request lost with it is
 *	resent by the client's REQ socket.
 *
 *	A node with one storage worker (node.storage_workers: 1, the default)
 *	also gets a second raw REQ socket dialing RUN_DIR/storage-0.ipc, and
 *	a peer's NodeBatch goes straight there: the coordinator would only
 *	pass it on to that worker, and skipping it saves two nng hops each
 *	way on every remote replica operation.  The storage worker answers
 *	what the coordinator answered (one result per operation, oversize
 *	replies trimmed: worker/storage.c).  A NodeBatch is recognised by its
 *	first byte without decoding it (is_node_batch).  While the storage
 *	worker is not connected, or does not take a message within
 *	STORE_SEND_MS, the batch goes to a coordinator as before, which
 *	answers UNAVAILABLE for what it can't reach.  Nodes with several
 *	storage workers keep the coordinator path: it splits a batch by key.
 *
 *	This is what nng_device() does, written out with aios: nng 1.5.2's
 *	nng_device() holds references that make nng_close() deadlock against
 *	it (nanomsg/nng#1503), forwarders keep several messages in flight each
 *	way, and their callbacks run on nng's threads, so no thread of ours is
 *	needed.  At exit the sockets are not closed (sup_front_close).
 *
 *	nng starts threads at its first call and is not fork-safe.  The
 *	supervisor keeps spawning workers after this, which is safe because a
 *	spawned child calls nothing but async-signal-safe functions before
 *	exec (sup_spawn.c).  The front door opens only when every worker is
 *	ready for the first time, so a client is never accepted by a node
 *	that can't answer; sup_front_probe() checks beforehand, while rzkvd
 *	can still tell the user, that the port is free.  On stop the listener
 *	closes first, so no new work arrives while the workers drain.
 *
 *	nng's threads are started with every signal blocked: libevent
 *	delivers the signals to the main thread's loop.
 * SEE ALSO
 *	worker/coord.c (the other end), DESIGN.md section 3
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "batch.h"
#include "log.h"
#include "sup.h"
#include "wire.h"

#define RECONNECT_MIN_MS    10
#define RECONNECT_MAX_MS    200
#define FRONT_MSG_SLACK     (1u << 20)  /* envelope beyond the value */
#define FRONT_FORWARDERS    8           /* messages in flight each way */
#define STORE_SEND_MS       100         /* then a batch takes the long way */

struct sup_front;

/* One message at a time from one socket to the other. */
struct forwarder {
    struct sup_front *front;
    nng_aio *aio;
    nng_socket from, to;
    int sending;                /* the aio is a send, not a receive */
    int to_store;               /* this send goes to the storage worker */
};

struct sup_front {
    nng_socket rep;             /* tcp, clients and peers */
    nng_socket req;             /* ipc, coordinators */
    nng_socket store;           /* ipc, storage worker 0 (if direct) */
    int direct;                 /* peer batches go straight to storage */
    _Atomic int store_pipes;    /* connections to the storage worker */
    nng_listener listener;
    int listening;
    /* rep -> req/store, req -> rep, store -> rep */
    struct forwarder fwd[3 * FRONT_FORWARDERS];
};

/*
 * An Envelope whose first field is `NodeBatch node = 2`: protobuf writes
 * a field's key as (field number << 3 | wire type), and a message field
 * is wire type 2 (length-delimited), so the message starts with the byte
 * 2 << 3 | 2 = 0x12 (generated code: rzkv.pb-c.c, Envelope's field
 * descriptor "node", number 2, PROTOBUF_C_TYPE_MESSAGE).  An Envelope
 * holds one field of its oneof, and every encoder writes it first (the
 * peers' coordinators build it with batch_put_header).  Anything else,
 * or an undecodable message, goes to a coordinator, which judges it.
 */
static int
is_node_batch(nng_msg *m)
{
    return nng_msg_len(m) > 0 && *(const uint8_t *)nng_msg_body(m) ==
           ((BATCH_ENVELOPE_NODE << 3) | PB_LEN);
}

static void
store_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    struct sup_front *f = arg;
    (void)p;
    if (ev == NNG_PIPE_EV_ADD_POST)
        f->store_pipes++;
    else if (ev == NNG_PIPE_EV_REM_POST)
        f->store_pipes--;
}

/* Split an nng tcp URL into host and port; -1 if it is not tcp. */
static int
tcp_host_port(const char *url, char *host, size_t hostlen, char *port,
              size_t portlen)
{
    static const char *const schemes[] = { "tcp://", "tcp4://", "tcp6://" };
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strncmp(url, schemes[i], strlen(schemes[i])) == 0)
            rest = url + strlen(schemes[i]);
    int p;
    if (rest == NULL || conf_parse_address(rest, host, hostlen, &p) != 0)
        return -1;
    snprintf(port, portlen, "%d", p);
    return 0;
}

/*
 * Is node.local_address free?  A plain bind (with SO_REUSEADDR, as nng
 * binds) tells now, before rzkvd detaches, what nng_listen would tell
 * only once the workers are up.
 */
int
sup_front_probe(const struct node_conf *node, char *err, size_t errlen)
{
    char url[512], host[256], port[16];
    struct addrinfo hints = { .ai_flags = AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM }, *ai;

    if (wire_address_url(node->local_address, url, sizeof(url)) != 0) {
        snprintf(err, errlen, "node.local_address \"%s\" is not an address",
                 node->local_address);
        return -1;
    }
    if (tcp_host_port(url, host, sizeof(host), port, sizeof(port)) != 0)
        return 0;       /* not TCP: nng_listen will tell */
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s",
                 node->local_address, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
    int one = 1, failed = 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
            listen(fd, 1) != 0) {
            snprintf(err, errlen, "cannot listen on %s: %s",
                     node->local_address, strerror(errno));
            failed = 1;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return failed ? -1 : 0;
}

/* Runs on an nng thread: receive, send, receive again, until closed. */
static void
forward_cb(void *arg)
{
    struct forwarder *fw = arg;

    struct sup_front *f = fw->front;
    int rv = nng_aio_result(fw->aio);

    if (fw->sending && fw->to_store && rv != 0 && rv != NNG_ECLOSED) {
        /* The storage worker did not take it in time: the long way. */
        fw->to_store = 0;
        nng_aio_set_timeout(fw->aio, NNG_DURATION_INFINITE);
        nng_aio_set_msg(fw->aio, nng_aio_get_msg(fw->aio));
        nng_send_aio(fw->to, fw->aio);
        return;
    }
    if (fw->sending && rv != 0)
        nng_msg_free(nng_aio_get_msg(fw->aio));
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return;
    if (rv != 0 && rv != NNG_ETIMEDOUT)
        log_debug("front door: %s: %s", fw->sending ? "send" : "receive",
                  nng_strerror(rv));
    if (!fw->sending && rv == 0) {
        nng_msg *m = nng_aio_get_msg(fw->aio);
        nng_aio_set_msg(fw->aio, m);
        fw->sending = 1;
        if (f->direct && fw->from.id == f->rep.id && f->store_pipes > 0 &&
            is_node_batch(m)) {
            fw->to_store = 1;
            nng_aio_set_timeout(fw->aio, STORE_SEND_MS);
            nng_send_aio(f->store, fw->aio);
        } else {
            nng_send_aio(fw->to, fw->aio);
        }
        return;
    }
    fw->sending = 0;
    fw->to_store = 0;
    nng_aio_set_timeout(fw->aio, NNG_DURATION_INFINITE);
    nng_recv_aio(fw->from, fw->aio);
}

static int
forwarders_start(struct sup_front *f)
{
    int n = (f->direct ? 3 : 2) * FRONT_FORWARDERS;
    for (int i = 0; i < n; i++) {
        struct forwarder *fw = &f->fwd[i];
        int set = i / FRONT_FORWARDERS;
        fw->front = f;
        fw->from = set == 0 ? f->rep : set == 1 ? f->req : f->store;
        fw->to = set == 0 ? f->req : f->rep;
        int rv = nng_aio_alloc(&fw->aio, forward_cb, fw);
        if (rv != 0)
            return rv;
    }
    for (int i = 0; i < n; i++)
        nng_recv_aio(f->fwd[i].from, f->fwd[i].aio);
    return 0;
}

/* The raw REQ socket to storage worker 0, for peers' batches. */
static int
store_socket(struct sup *s, struct sup_front *f, size_t maxsz, char *err,
             size_t errlen)
{
    char url[4200];
    int rv;

    if ((rv = nng_req0_open_raw(&f->store)) != 0 ||
        (rv = nng_socket_set_size(f->store, NNG_OPT_RECVMAXSZ, maxsz)) != 0 ||
        (rv = nng_socket_set_ms(f->store, NNG_OPT_RECONNMINT,
                                RECONNECT_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(f->store, NNG_OPT_RECONNMAXT,
                                RECONNECT_MAX_MS)) != 0 ||
        (rv = nng_pipe_notify(f->store, NNG_PIPE_EV_ADD_POST, store_pipe_cb,
                              f)) != 0 ||
        (rv = nng_pipe_notify(f->store, NNG_PIPE_EV_REM_POST, store_pipe_cb,
                              f)) != 0) {
        snprintf(err, errlen, "front door: storage socket: %s",
                 nng_strerror(rv));
        return -1;
    }
    snprintf(url, sizeof(url), RZKV_STORAGE_IPC_FMT, s->node->run_dir, 0);
    if ((rv = nng_dial(f->store, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        snprintf(err, errlen, "front door: cannot dial %s: %s", url,
                 nng_strerror(rv));
        return -1;
    }
    return 0;
}

static int
front_sockets(struct sup *s, struct sup_front *f, char *err, size_t errlen)
{
    size_t maxsz = (size_t)s->node->max_value_size + FRONT_MSG_SLACK;
    char url[4200];
    int rv;

    if ((rv = nng_rep0_open_raw(&f->rep)) != 0 ||
        (rv = nng_req0_open_raw(&f->req)) != 0) {
        snprintf(err, errlen, "front door: %s", nng_strerror(rv));
        return -1;
    }
    /* Requests carry a value in; replies carry one out. */
    if ((rv = nng_socket_set_size(f->rep, NNG_OPT_RECVMAXSZ, maxsz)) != 0 ||
        (rv = nng_socket_set_size(f->req, NNG_OPT_RECVMAXSZ, maxsz)) != 0 ||
        (rv = nng_socket_set_ms(f->req, NNG_OPT_RECONNMINT,
                                RECONNECT_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(f->req, NNG_OPT_RECONNMAXT,
                                RECONNECT_MAX_MS)) != 0) {
        snprintf(err, errlen, "front door options: %s", nng_strerror(rv));
        return -1;
    }
    if (f->direct && (rv = store_socket(s, f, maxsz, err, errlen)) != 0)
        return -1;
    for (int i = 0; i < s->node->coordinator_workers; i++) {
        snprintf(url, sizeof(url), RZKV_COORD_IPC_FMT, s->node->run_dir, i);
        /* NONBLOCK: keep retrying until the coordinator listens. */
        if ((rv = nng_dial(f->req, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
            snprintf(err, errlen, "front door: cannot dial %s: %s", url,
                     nng_strerror(rv));
            return -1;
        }
    }
    if (wire_address_url(s->node->local_address, url, sizeof(url)) != 0) {
        snprintf(err, errlen, "node.local_address \"%s\" is not an address",
                 s->node->local_address);
        return -1;
    }
    if ((rv = nng_listen(f->rep, url, &f->listener, 0)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s",
                 s->node->local_address, nng_strerror(rv));
        return -1;
    }
    f->listening = 1;
    return 0;
}

int
sup_front_open(struct sup *s, char *err, size_t errlen)
{
    sigset_t all, old;
    int rc = -1, rv;

    struct sup_front *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        snprintf(err, errlen, "front door: out of memory");
        return -1;
    }
    s->front = f;
    f->direct = s->node->storage_workers == 1;
    /* nng's threads inherit this mask: signals stay with the main thread,
     * where libevent waits for them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (front_sockets(s, f, err, errlen) == 0) {
        if ((rv = forwarders_start(f)) != 0)
            snprintf(err, errlen, "front door: %s", nng_strerror(rv));
        else
            rc = 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        log_info("front door listening on %s, forwarding to %d "
                 "coordinator(s)%s", s->node->local_address,
                 s->node->coordinator_workers,
                 f->direct ? ", peers' batches to the storage worker" : "");
    return rc;
}

void
sup_front_close_listener(struct sup *s)
{
    struct sup_front *f = s->front;
    if (f == NULL || !f->listening)
        return;
    nng_listener_close(f->listener);
    f->listening = 0;
    log_info("front door closed: no new connections");
}

/*
 * At exit.  The listener was closed when the stop began; the sockets and
 * their forwarders are left to the end of the process, on purpose: nng
 * 1.5.2's nng_close() can deadlock against pipes with messages in flight
 * (rzkvd hung at exit about once in six stops under load, with the main
 * thread in nng_close(); see also nanomsg/nng#1503 and #1543), and there
 * is nothing left to flush: the clients' connections are closed.
 */
void
sup_front_close(struct sup *s)
{
    sup_front_close_listener(s);
    s->front = NULL;            /* still used by nng's threads until exit */
}

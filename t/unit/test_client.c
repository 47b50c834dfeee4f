/*
 * test_client.c - librzkv against fake nodes: nng REP sockets on ipc://
 * in a scratch directory, each answered by a thread with canned replies.
 *
 * This tests the client's side only: how it encodes requests, maps every
 * status, times out (UNKNOWN for a write, never resent; the next node for
 * a read), fails over from refused addresses and UNAVAILABLE or STOPPING
 * answers, keeps binary keys and values intact, and which address forms it
 * accepts; and the same for the _async calls, plus callbacks that submit
 * more requests, many requests in flight from one thread, and rzkv_close
 * cancelling requests in flight.  It says nothing about the cluster itself.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "rzkv.h"
#include "rzkv.pb-c.h"
#include "wire.h"

/* ---- a fake node ---------------------------------------------------------- */

enum fake_mode {
    FAKE_ANSWER,        /* send the canned reply */
    FAKE_ECHO,          /* OK, with the requested key as the value */
    FAKE_SWALLOW,       /* never answer */
    FAKE_GARBAGE,       /* answer bytes that are no Reply */
    FAKE_HANG_UP,       /* close the connection after the request */
};

struct fake {
    char url[256];
    nng_socket sock;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_mutex_t gate;           /* held: requests wait before answers */
    enum fake_mode mode;
    Rzkv__Reply reply;              /* what FAKE_ANSWER sends */
    int requests;
    Rzkv__Envelope *last;           /* the last request, decoded */
};

static char scratch[] = "/tmp/rzkv-test-client.XXXXXX";
static int fake_seq;

static void
fake_answer(struct fake *f, nng_msg *msg, const Rzkv__Envelope *env,
            enum fake_mode mode)
{
    if (mode == FAKE_GARBAGE) {
        nng_msg_clear(msg);
        nng_msg_append(msg, "\xff\xff\xff", 3);
    } else if (mode == FAKE_ECHO) {
        Rzkv__Reply r = RZKV__REPLY__INIT;
        Rzkv__ClusterReply cr = RZKV__CLUSTER_REPLY__INIT;
        r.body_case = RZKV__REPLY__BODY_CLUSTER;
        r.cluster = &cr;
        if (env != NULL && env->msg_case == RZKV__ENVELOPE__MSG_CLUSTER &&
            env->cluster->op_case == RZKV__CLUSTER_REQUEST__OP_GET)
            cr.value = env->cluster->get->key;
        wire_pack_into(msg, &r.base);
    } else {
        pthread_mutex_lock(&f->lock);
        wire_pack_into(msg, &f->reply.base);
        pthread_mutex_unlock(&f->lock);
    }
}

static void *
fake_run(void *arg)
{
    struct fake *f = arg;
    nng_msg *msg;

    while (nng_recvmsg(f->sock, &msg, 0) == 0) {
        Rzkv__Envelope *env = wire_unpack_envelope(msg);
        pthread_mutex_lock(&f->gate);
        pthread_mutex_unlock(&f->gate);
        pthread_mutex_lock(&f->lock);
        enum fake_mode mode = f->mode;
        f->requests++;
        if (f->last != NULL)
            rzkv__envelope__free_unpacked(f->last, NULL);
        f->last = env;
        pthread_mutex_unlock(&f->lock);

        if (mode == FAKE_SWALLOW) {
            nng_msg_free(msg);
        } else if (mode == FAKE_HANG_UP) {
            nng_pipe p = nng_msg_get_pipe(msg);
            nng_msg_free(msg);
            nng_pipe_close(p);
        } else {
            fake_answer(f, msg, env, mode);
            if (nng_sendmsg(f->sock, msg, 0) != 0)
                nng_msg_free(msg);
        }
    }
    return NULL;
}

static void
fake_listen(struct fake *f)
{
    assert_int_equal(nng_rep0_open(&f->sock), 0);
    /* Requests as big as a node takes (nng's default is 1 MiB). */
    assert_int_equal(nng_socket_set_size(f->sock, NNG_OPT_RECVMAXSZ,
                                         (size_t)32 << 20), 0);
    assert_int_equal(nng_listen(f->sock, f->url, NULL, 0), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

static int closed_tcp_port(void);

/* A fake node on url, or (NULL) on a new IPC path. */
static struct fake *
fake_start_at(enum fake_mode mode, const char *url)
{
    struct fake *f = calloc(1, sizeof(*f));
    Rzkv__Reply init = RZKV__REPLY__INIT;

    assert_non_null(f);
    if (url != NULL)
        snprintf(f->url, sizeof(f->url), "%s", url);
    else
        snprintf(f->url, sizeof(f->url), "ipc://%s/node%d", scratch,
                 ++fake_seq);
    pthread_mutex_init(&f->lock, NULL);
    pthread_mutex_init(&f->gate, NULL);
    f->mode = mode;
    f->reply = init;
    fake_listen(f);
    return f;
}

static struct fake *
fake_start(enum fake_mode mode)
{
    return fake_start_at(mode, NULL);
}

/* The same over TCP, on a port of 127.0.0.1 free a moment ago. */
static struct fake *
fake_start_tcp(enum fake_mode mode)
{
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", closed_tcp_port());
    return fake_start_at(mode, url);
}

/* Stop serving (the address then refuses connections). */
static void
fake_halt(struct fake *f)
{
    nng_close(f->sock);
    pthread_join(f->thread, NULL);
}

static void
fake_stop(struct fake *f)
{
    fake_halt(f);
    if (f->last != NULL)
        rzkv__envelope__free_unpacked(f->last, NULL);
    pthread_mutex_destroy(&f->lock);
    pthread_mutex_destroy(&f->gate);
    if (strncmp(f->url, "ipc://", 6) == 0)
        unlink(f->url + strlen("ipc://"));
    free(f);
}

static int
fake_requests(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->requests;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* The last request the fake decoded, taken under its lock (it is
 * replaced when the next request arrives: read it between requests). */
static const Rzkv__Envelope *
fake_last(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    const Rzkv__Envelope *env = f->last;
    pthread_mutex_unlock(&f->lock);
    return env;
}

static void
fake_set_reply(struct fake *f, Rzkv__Status status, const char *message)
{
    pthread_mutex_lock(&f->lock);
    f->reply.status = status;
    f->reply.message = (char *)message;
    pthread_mutex_unlock(&f->lock);
}

/*
 * The body of the fake's answers: cluster, list_keys or neither (both
 * NULL).  Set under its lock, like everything the fake's thread reads,
 * so that what the test wrote into the body before is ordered before the
 * fake reads it (helgrind cannot see the order a socket gives): call it
 * again after changing the body.
 */
static void
fake_set_body(struct fake *f, Rzkv__ClusterReply *cluster,
              Rzkv__ListKeysReply *list_keys)
{
    pthread_mutex_lock(&f->lock);
    f->reply.body_case = cluster != NULL ? RZKV__REPLY__BODY_CLUSTER
                       : list_keys != NULL ? RZKV__REPLY__BODY_LIST_KEYS
                       : RZKV__REPLY__BODY__NOT_SET;
    if (cluster != NULL)
        f->reply.cluster = cluster;
    else if (list_keys != NULL)
        f->reply.list_keys = list_keys;
    pthread_mutex_unlock(&f->lock);
}

static rzkv_client *
connect_wait(const char *const *addrs, size_t n, unsigned timeout_ms,
             unsigned connect_timeout_ms)
{
    rzkv_options opts = { 0 };
    rzkv_error err;
    rzkv_client *c;

    opts.timeout_ms = timeout_ms;
    opts.connect_timeout_ms = connect_timeout_ms;
    c = rzkv_connect(addrs, n, &opts, &err);
    if (c == NULL)
        fail_msg("rzkv_connect: %s", err.message);
    return c;
}

static rzkv_client *
connect_to(const char *const *addrs, size_t n, unsigned timeout_ms)
{
    return connect_wait(addrs, n, timeout_ms, 500);
}

static long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* A TCP socket bound to an ephemeral port of 127.0.0.1; *port says which. */
static int
bound_tcp_socket(int *port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* A TCP port on 127.0.0.1 that nothing listens on (just released). */
static int
closed_tcp_port(void)
{
    int port;
    close(bound_tcp_socket(&port));
    return port;
}

/* ---- encoding and decoding ------------------------------------------------ */

static void
test_get_round_trip(void **state)
{
    (void)state;
    static const char key[] = { 'k', '\0', 'e', 'y' };
    static uint8_t value[] = { 'v', '\0', '\xff', '\0' };
    struct fake *f = fake_start(FAKE_ANSWER);
    Rzkv__ClusterReply body = RZKV__CLUSTER_REPLY__INIT;
    Rzkv__Stamp stamp = RZKV__STAMP__INIT;

    stamp.epoch = 7;
    stamp.counter = 42;
    stamp.writer.data = (uint8_t *)"n1/c0";
    stamp.writer.len = 5;
    stamp.nonce = 99;
    body.value.data = value;
    body.value.len = sizeof(value);
    body.stamp = &stamp;
    fake_set_body(f, &body, NULL);

    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_req req = { RZKV_ALL, 1234 };
    rzkv_stamp got_stamp;
    rzkv_error err;
    void *got;
    size_t len;

    assert_int_equal(rzkv_get(c, key, sizeof(key), &req, &got, &len,
                              &got_stamp, &err), RZKV_OK);
    assert_int_equal(len, sizeof(value));
    assert_memory_equal(got, value, sizeof(value));
    assert_int_equal(((char *)got)[len], '\0');
    assert_int_equal(got_stamp.epoch, 7);
    assert_int_equal(got_stamp.counter, 42);
    assert_string_equal(got_stamp.writer, "n1/c0");
    assert_int_equal(got_stamp.nonce, 99);
    assert_string_equal(err.address, f->url);
    rzkv_free(got);

    /* what went over the wire */
    const Rzkv__Envelope *env = fake_last(f);
    assert_non_null(env);
    assert_int_equal(env->msg_case, RZKV__ENVELOPE__MSG_CLUSTER);
    assert_int_equal(env->cluster->op_case, RZKV__CLUSTER_REQUEST__OP_GET);
    assert_int_equal(env->cluster->consistency, RZKV__CONSISTENCY__ALL);
    assert_int_equal(env->cluster->timeout_ms, 1234);
    assert_int_equal(env->cluster->get->key.len, sizeof(key));
    assert_memory_equal(env->cluster->get->key.data, key, sizeof(key));

    rzkv_close(c);
    fake_stop(f);
}

static void
test_set_and_del_encoding(void **state)
{
    (void)state;
    static const char key[] = { '\0', 'k' };
    static const char value[] = { '\0', '\0', 'x', '\n', '\xfe' };
    struct fake *f = fake_start(FAKE_ANSWER);
    Rzkv__ClusterReply body = RZKV__CLUSTER_REPLY__INIT;
    Rzkv__Stamp stamp = RZKV__STAMP__INIT;

    stamp.epoch = 3;
    stamp.counter = 4;
    body.stamp = &stamp;
    fake_set_body(f, &body, NULL);

    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 700);
    rzkv_stamp got;
    rzkv_error err;

    /* NULL req: the client's defaults (quorum, its timeout) */
    assert_int_equal(rzkv_set(c, key, sizeof(key), value, sizeof(value),
                              NULL, &got, &err), RZKV_OK);
    assert_int_equal(got.epoch, 3);
    assert_int_equal(got.counter, 4);
    Rzkv__ClusterRequest *cr = fake_last(f)->cluster;
    assert_int_equal(cr->op_case, RZKV__CLUSTER_REQUEST__OP_SET);
    assert_int_equal(cr->consistency, RZKV__CONSISTENCY__QUORUM);
    assert_int_equal(cr->timeout_ms, 700);
    assert_int_equal(cr->set->key.len, sizeof(key));
    assert_memory_equal(cr->set->key.data, key, sizeof(key));
    assert_int_equal(cr->set->value.len, sizeof(value));
    assert_memory_equal(cr->set->value.data, value, sizeof(value));

    /* an empty value is a value */
    assert_int_equal(rzkv_set(c, "e", 1, NULL, 0, NULL, NULL, &err), RZKV_OK);
    assert_int_equal(fake_last(f)->cluster->set->value.len, 0);

    rzkv_req one = { RZKV_ONE, 0 };
    assert_int_equal(rzkv_del(c, key, sizeof(key), &one, NULL, &err),
                     RZKV_OK);
    cr = fake_last(f)->cluster;
    assert_int_equal(cr->op_case, RZKV__CLUSTER_REQUEST__OP_DEL);
    assert_int_equal(cr->consistency, RZKV__CONSISTENCY__ONE);
    assert_int_equal(cr->timeout_ms, 700);
    assert_memory_equal(cr->del->key.data, key, sizeof(key));
    assert_int_equal(fake_requests(f), 3);

    rzkv_close(c);
    fake_stop(f);
}

/* Values of megabytes each way over TCP: messages that take many reads
 * and writes, and that one socket buffer does not hold. */
static void
test_big_values_over_tcp(void **state)
{
    (void)state;
    const size_t big = (size_t)3 << 20;
    uint8_t *out = malloc(big), *in = malloc(big);
    struct fake *f = fake_start_tcp(FAKE_ANSWER);
    Rzkv__ClusterReply body = RZKV__CLUSTER_REPLY__INIT;

    assert_non_null(out);
    assert_non_null(in);
    for (size_t i = 0; i < big; i++) {
        out[i] = (uint8_t)(i * 7 + (i >> 16));
        in[i] = (uint8_t)(i * 13 + 1);
    }
    body.value.data = in;
    body.value.len = big;
    fake_set_body(f, &body, NULL);

    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_error err;
    void *got;
    size_t len;

    for (int round = 0; round < 3; round++) {
        assert_int_equal(rzkv_set(c, "big", 3, out, big, NULL, NULL, &err),
                         RZKV_OK);
        Rzkv__ClusterRequest *cr = fake_last(f)->cluster;
        assert_int_equal(cr->set->value.len, big);
        assert_memory_equal(cr->set->value.data, out, big);
        if (rzkv_get(c, "big", 3, NULL, &got, &len, NULL, &err) != RZKV_OK)
            fail_msg("get: %s", err.message);
        assert_int_equal(len, big);
        assert_memory_equal(got, in, big);
        assert_string_equal(err.address, f->url);
        rzkv_free(got);
    }
    assert_int_equal(fake_requests(f), 6);
    rzkv_close(c);
    fake_stop(f);
    free(out);
    free(in);
}

static void
test_bad_arguments_never_sent(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ANSWER);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_req bad = { (rzkv_consistency)9, 0 };
    rzkv_error err;
    void *v;
    size_t len;

    assert_int_equal(rzkv_get(c, "", 0, NULL, &v, &len, NULL, &err),
                     RZKV_INVALID);
    assert_non_null(strstr(err.message, "empty key"));
    assert_int_equal(rzkv_set(c, "", 0, "v", 1, NULL, NULL, &err),
                     RZKV_INVALID);
    assert_int_equal(rzkv_set(c, "k", 1, NULL, 3, NULL, NULL, &err),
                     RZKV_INVALID);
    assert_int_equal(rzkv_del(c, NULL, 0, NULL, NULL, &err), RZKV_INVALID);
    assert_int_equal(rzkv_get(c, "k", 1, &bad, &v, &len, NULL, &err),
                     RZKV_INVALID);
    assert_int_equal(rzkv_get(NULL, "k", 1, NULL, &v, &len, NULL, NULL),
                     RZKV_INVALID);
    assert_int_equal(fake_requests(f), 0);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- statuses ------------------------------------------------------------- */

static void
test_every_status(void **state)
{
    (void)state;
    static const struct { Rzkv__Status wire; rzkv_status want; } map[] = {
        { RZKV__STATUS__NOT_FOUND, RZKV_NOT_FOUND },
        { RZKV__STATUS__UNAVAILABLE, RZKV_UNAVAILABLE },
        { RZKV__STATUS__UNKNOWN, RZKV_UNKNOWN },
        { RZKV__STATUS__INVALID, RZKV_INVALID },
        { RZKV__STATUS__INTERNAL, RZKV_ERROR },
        { RZKV__STATUS__UNSUPPORTED, RZKV_ERROR },
        { RZKV__STATUS__TOO_LARGE, RZKV_INVALID },
        { RZKV__STATUS__STOPPING, RZKV_UNAVAILABLE },
        { (Rzkv__Status)77, RZKV_ERROR },
    };
    struct fake *f = fake_start(FAKE_ANSWER);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_error err;
    void *v;
    size_t len;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        fake_set_reply(f, map[i].wire, "the node's own words");
        assert_int_equal(rzkv_get(c, "k", 1, NULL, &v, &len, NULL, &err),
                         map[i].want);
        assert_int_equal(err.status, map[i].want);
        assert_null(v);
        assert_non_null(strstr(err.message, "the node's own words"));
        assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err),
                         map[i].want);
        assert_non_null(strstr(err.message, "the node's own words"));
    }
    /* no message from the node: the status's name */
    fake_set_reply(f, RZKV__STATUS__NOT_FOUND, NULL);
    assert_int_equal(rzkv_get(c, "k", 1, NULL, &v, &len, NULL, &err),
                     RZKV_NOT_FOUND);
    assert_string_equal(err.message, "NOT_FOUND");
    /* OK without a body is no answer to a read */
    fake_set_reply(f, RZKV__STATUS__OK, NULL);
    assert_int_equal(rzkv_get(c, "k", 1, NULL, &v, &len, NULL, &err),
                     RZKV_ERROR);

    assert_string_equal(rzkv_status_str(RZKV_UNKNOWN), "UNKNOWN");
    assert_string_equal(rzkv_status_str(RZKV_NOT_FOUND), "NOT_FOUND");
    rzkv_close(c);
    fake_stop(f);
}

static void
test_garbage_reply(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_GARBAGE);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_error err;
    void *v;
    size_t len;

    /* a read found no node that answered sensibly: a fault, not an outage */
    assert_int_equal(rzkv_get(c, "k", 1, NULL, &v, &len, NULL, &err),
                     RZKV_ERROR);
    assert_non_null(strstr(err.message, "not an rzkv reply"));
    /* a write was received by a node: its outcome is unknown */
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err),
                     RZKV_UNKNOWN);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- timeouts: UNKNOWN for writes, never resent; reads move on ------------ */

static void
test_timeout_write_unknown(void **state)
{
    (void)state;
    struct fake *mute = fake_start(FAKE_SWALLOW);
    struct fake *live = fake_start(FAKE_ECHO);
    const char *addrs[] = { mute->url, live->url };
    rzkv_client *c = connect_to(addrs, 2, 100);
    rzkv_error err;

    long t0 = now_ms();
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err),
                     RZKV_UNKNOWN);
    long took = now_ms() - t0;
    assert_non_null(strstr(err.message, "timed out after 350 ms"));
    assert_string_equal(err.address, mute->url);
    assert_true(took >= 300 && took < 2000);

    /* nng would resend a REQ after its resend time: it must not */
    usleep(1200 * 1000);
    assert_int_equal(fake_requests(mute), 1);
    assert_int_equal(fake_requests(live), 0);

    assert_int_equal(rzkv_del(c, "k", 1, NULL, NULL, &err), RZKV_UNKNOWN);
    assert_int_equal(fake_requests(live), 0);
    rzkv_close(c);
    fake_stop(mute);
    fake_stop(live);
}

static void
test_timeout_read_moves_on(void **state)
{
    (void)state;
    struct fake *mute = fake_start(FAKE_SWALLOW);
    struct fake *live = fake_start(FAKE_ECHO);
    const char *addrs[] = { mute->url, live->url };
    rzkv_client *c = connect_to(addrs, 2, 100);
    rzkv_error err;
    void *v;
    size_t len;

    assert_int_equal(rzkv_get(c, "abc", 3, NULL, &v, &len, NULL, &err),
                     RZKV_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "abc", 3);
    assert_string_equal(err.address, live->url);
    assert_int_equal(fake_requests(mute), 1);
    rzkv_free(v);
    rzkv_close(c);

    /* alone, a node that never answers makes a read fail, not hang */
    const char *one[] = { mute->url };
    c = connect_to(one, 1, 100);
    assert_int_equal(rzkv_get(c, "abc", 3, NULL, &v, &len, NULL, &err),
                     RZKV_UNAVAILABLE);
    assert_non_null(strstr(err.message, "timed out after 350 ms"));
    rzkv_close(c);
    fake_stop(mute);
    fake_stop(live);
}

static void
test_hang_up_after_request(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_HANG_UP);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_wait(addrs, 1, 2000, 2000);
    rzkv_error err;
    void *v;
    size_t len;

    long t0 = now_ms();
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err),
                     RZKV_UNKNOWN);
    assert_true(now_ms() - t0 < 2000);      /* the reset, not the timeout */
    usleep(600 * 1000);                     /* the client reconnects... */
    assert_int_equal(fake_requests(f), 1);  /* ...and resends nothing */
    assert_int_equal(rzkv_get(c, "k", 1, NULL, &v, &len, NULL, &err),
                     RZKV_UNAVAILABLE);
    assert_int_equal(fake_requests(f), 2);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- failover ------------------------------------------------------------- */

static void
test_failover_from_refused(void **state)
{
    (void)state;
    struct fake *live = fake_start(FAKE_ECHO);
    char dead_ipc[300], dead_tcp[64];
    rzkv_error err;
    void *v;
    size_t len;

    snprintf(dead_ipc, sizeof(dead_ipc), "ipc://%s/nobody", scratch);
    snprintf(dead_tcp, sizeof(dead_tcp), "127.0.0.1:%d", closed_tcp_port());
    const char *addrs[] = { dead_ipc, dead_tcp, live->url };
    rzkv_client *c = connect_to(addrs, 3, 0);

    long t0 = now_ms();
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err), RZKV_OK);
    assert_string_equal(err.address, live->url);
    /* refused addresses are known at once, not after a timeout */
    assert_true(now_ms() - t0 < 500);
    /* and the next call starts with the node that answered */
    t0 = now_ms();
    assert_int_equal(rzkv_get(c, "k", 1, NULL, &v, &len, NULL, &err),
                     RZKV_OK);
    assert_true(now_ms() - t0 < 100);
    rzkv_free(v);
    assert_int_equal(fake_requests(live), 2);
    rzkv_close(c);

    /* nobody at all */
    const char *dead[] = { dead_ipc, dead_tcp };
    c = connect_to(dead, 2, 0);
    t0 = now_ms();
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err),
                     RZKV_UNAVAILABLE);
    assert_true(now_ms() - t0 < 500);
    assert_non_null(strstr(err.message, "connection refused to "));
    assert_non_null(strstr(err.message, dead_ipc));
    assert_non_null(strstr(err.message, dead_tcp));
    rzkv_close(c);
    fake_stop(live);
}

static void
test_failover_from_unavailable_and_stopping(void **state)
{
    (void)state;
    struct fake *busy = fake_start(FAKE_ANSWER);
    struct fake *stopping = fake_start(FAKE_ANSWER);
    struct fake *live = fake_start(FAKE_ECHO);
    const char *addrs[] = { busy->url, stopping->url, live->url };
    rzkv_client *c = connect_to(addrs, 3, 0);
    rzkv_error err;

    fake_set_reply(busy, RZKV__STATUS__UNAVAILABLE, "2 of 3 replicas down");
    fake_set_reply(stopping, RZKV__STATUS__STOPPING, "shutting down");
    /* UNAVAILABLE means nothing was applied: a write may go elsewhere */
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err), RZKV_OK);
    assert_string_equal(err.address, live->url);
    assert_int_equal(fake_requests(busy), 1);
    assert_int_equal(fake_requests(stopping), 1);
    assert_int_equal(fake_requests(live), 1);
    rzkv_close(c);

    /* all of them unavailable: say what each said */
    const char *two[] = { busy->url, stopping->url };
    c = connect_to(two, 2, 0);
    assert_int_equal(rzkv_del(c, "k", 1, NULL, NULL, &err), RZKV_UNAVAILABLE);
    assert_non_null(strstr(err.message, "2 of 3 replicas down"));
    assert_non_null(strstr(err.message, "shutting down"));
    rzkv_close(c);
    fake_stop(busy);
    fake_stop(stopping);
    fake_stop(live);
}

static void
test_reconnects(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ECHO);
    const char *addrs[] = { f->url };
    /* the connect timeout covers the client's redial interval */
    rzkv_client *c = connect_wait(addrs, 1, 0, 2000);
    rzkv_error err;
    void *v;
    size_t len;

    assert_int_equal(rzkv_get(c, "a", 1, NULL, &v, &len, NULL, &err),
                     RZKV_OK);
    rzkv_free(v);
    fake_halt(f);
    assert_int_equal(rzkv_get(c, "a", 1, NULL, &v, &len, NULL, &err),
                     RZKV_UNAVAILABLE);
    fake_listen(f);                         /* the node comes back */
    if (rzkv_get(c, "b", 1, NULL, &v, &len, NULL, &err) != RZKV_OK)
        fail_msg("after the node came back: %s", err.message);
    assert_memory_equal(v, "b", 1);
    rzkv_free(v);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- info, keys, health --------------------------------------------------- */

static void
test_info_keys_health(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ANSWER);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_error err;

    Rzkv__PeerInfo p1 = RZKV__PEER_INFO__INIT, p2 = RZKV__PEER_INFO__INIT;
    Rzkv__PeerInfo *peers[] = { &p1, &p2 };
    Rzkv__ClusterInfoReply ci = RZKV__CLUSTER_INFO_REPLY__INIT;
    Rzkv__ClusterReply body = RZKV__CLUSTER_REPLY__INIT;
    p1.id = "n1"; p1.address = "127.0.0.1:8001"; p1.reachable = true;
    p2.id = "n2"; p2.address = "127.0.0.1:8002"; p2.error = "refused";
    p2.state = "joining";
    ci.node_id = "n1";
    ci.replica_count = 3;
    ci.read_quorum = 2;
    ci.write_quorum = 2;
    ci.seed = 5;
    ci.n_nodes = 2;
    ci.nodes = peers;
    body.info = &ci;
    fake_set_body(f, &body, NULL);

    rzkv_cluster_info *info;
    assert_int_equal(rzkv_info(c, NULL, &info, &err), RZKV_OK);
    assert_int_equal(fake_last(f)->cluster->op_case,
                     RZKV__CLUSTER_REQUEST__OP_INFO);
    assert_string_equal(info->node_id, "n1");
    assert_int_equal(info->replica_count, 3);
    assert_int_equal(info->read_quorum, 2);
    assert_int_equal(info->write_quorum, 2);
    assert_int_equal(info->seed, 5);
    assert_int_equal(info->node_count, 2);
    assert_true(info->nodes[0].reachable);
    assert_string_equal(info->nodes[1].address, "127.0.0.1:8002");
    assert_false(info->nodes[1].reachable);
    assert_string_equal(info->nodes[1].error, "refused");
    assert_string_equal(info->nodes[0].error, "");
    /* A member sends no state; a node joining or leaving says so. */
    assert_string_equal(rzkv_info_node_state(info, 0), "member");
    assert_string_equal(rzkv_info_node_state(info, 1), "joining");
    assert_null(rzkv_info_node_state(info, 2));
    assert_null(rzkv_info_node_state(NULL, 0));
    rzkv_info_free(info);

    Rzkv__Entry e1 = RZKV__ENTRY__INIT, e2 = RZKV__ENTRY__INIT,
                e3 = RZKV__ENTRY__INIT;
    Rzkv__Entry *entries[] = { &e1, &e2, &e3 };
    Rzkv__Stamp s1 = RZKV__STAMP__INIT;
    Rzkv__ListKeysReply lk = RZKV__LIST_KEYS_REPLY__INIT;
    s1.epoch = 1;
    s1.counter = 8;
    e1.key.data = (uint8_t *)"a\0b"; e1.key.len = 3; e1.stamp = &s1;
    e2.key.data = (uint8_t *)"gone"; e2.key.len = 4; e2.tombstone = true;
    e3.key.data = (uint8_t *)"c"; e3.key.len = 1;
    lk.n_entries = 3;
    lk.entries = entries;
    lk.next_key.data = (uint8_t *)"d";
    lk.next_key.len = 1;
    fake_set_body(f, NULL, &lk);

    rzkv_key_page *page;
    assert_int_equal(rzkv_keys(c, "a", 1, 5, NULL, &page, &err), RZKV_OK);
    assert_int_equal(fake_last(f)->msg_case, RZKV__ENVELOPE__MSG_LIST_KEYS);
    assert_int_equal(fake_last(f)->list_keys->limit, 5);
    assert_memory_equal(fake_last(f)->list_keys->start_key.data, "a", 1);
    assert_false(fake_last(f)->list_keys->include_tombstones);
    assert_int_equal(page->count, 2);       /* the tombstone is left out */
    assert_int_equal(page->keys[0].len, 3);
    assert_memory_equal(page->keys[0].key, "a\0b", 3);
    assert_int_equal(page->keys[0].stamp.counter, 8);
    assert_memory_equal(page->keys[1].key, "c", 1);
    assert_int_equal(page->next_key_len, 1);
    assert_memory_equal(page->next_key, "d", 1);

    assert_null(page->states);
    rzkv_key_page_free(page);

    /* rzkv_keys_all: the tombstone too, and which keys are deleted */
    e2.tombstone_age_ms = 4200;
    fake_set_body(f, NULL, &lk);
    assert_int_equal(rzkv_keys_all(c, NULL, 0, 0, NULL, &page, &err),
                     RZKV_OK);
    assert_true(fake_last(f)->list_keys->include_tombstones);
    assert_int_equal(page->count, 3);
    assert_non_null(page->states);
    assert_memory_equal(page->keys[1].key, "gone", 4);
    assert_false(page->states[0].deleted);
    assert_true(page->states[1].deleted);
    assert_int_equal(page->states[1].deleted_ms_ago, 4200);
    assert_false(page->states[2].deleted);
    rzkv_key_page_free(page);

    lk.next_key.len = 0;
    fake_set_body(f, NULL, &lk);
    assert_int_equal(rzkv_keys(c, NULL, 0, 0, NULL, &page, &err), RZKV_OK);
    assert_null(page->next_key);
    rzkv_key_page_free(page);

    /* a reply of the wrong kind */
    fake_set_body(f, NULL, NULL);
    assert_int_equal(rzkv_keys(c, NULL, 0, 0, NULL, &page, &err), RZKV_ERROR);
    assert_null(page);

    assert_int_equal(rzkv_health(c, NULL, &err), RZKV_OK);
    assert_int_equal(fake_last(f)->msg_case, RZKV__ENVELOPE__MSG_HEALTH);
    fake_set_reply(f, RZKV__STATUS__INTERNAL, "disk full");
    assert_int_equal(rzkv_health(c, NULL, &err), RZKV_ERROR);
    assert_string_equal(err.message, "disk full");
    rzkv_close(c);
    fake_stop(f);
}

/* ---- threads share one client --------------------------------------------- */

struct worker_arg {
    rzkv_client *c;
    int id;
    int mismatches;
};

static void *
worker(void *p)
{
    struct worker_arg *w = p;
    for (int i = 0; i < 100; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "t%d-%d", w->id, i);
        void *v;
        size_t len;
        rzkv_error err;
        if (rzkv_get(w->c, key, (size_t)n, NULL, &v, &len, NULL, &err)
            != RZKV_OK) {
            w->mismatches++;
            continue;
        }
        if (len != (size_t)n || memcmp(v, key, len) != 0)
            w->mismatches++;
        rzkv_free(v);
    }
    return NULL;
}

static void
test_threads_share_a_client(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ECHO);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    pthread_t th[8];
    struct worker_arg args[8];

    for (int i = 0; i < 8; i++) {
        args[i] = (struct worker_arg){ c, i, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].mismatches, 0);
    }
    assert_int_equal(fake_requests(f), 800);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- addresses ------------------------------------------------------------ */

static void
test_address_forms(void **state)
{
    (void)state;
    static const char *const good[] = {
        "127.0.0.1:8001", ":8001", "localhost:8001", "[::1]:8001",
        "tcp://127.0.0.1:8001", "tls+tcp://127.0.0.1:8001",
        "ipc:///tmp/rzkv-nowhere.sock",
    };
    static const char *const bad[] = {
        "", "8001", "nocolon", "127.0.0.1:", "127.0.0.1:port",
        "127.0.0.1:70000", ":0", "tcp://", "http://127.0.0.1:80",
    };
    rzkv_error err;
    rzkv_client *c;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *one[] = { good[i] };
        c = rzkv_connect(one, 1, NULL, &err);
        if (c == NULL)
            fail_msg("\"%s\" refused: %s", good[i], err.message);
        rzkv_close(c);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *two[] = { ":8001", bad[i] };
        c = rzkv_connect(two, 2, NULL, &err);
        if (c != NULL)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(err.status, RZKV_INVALID);
        assert_non_null(strstr(err.message, "bad address"));
    }
    assert_null(rzkv_connect(NULL, 0, NULL, &err));
    assert_int_equal(err.status, RZKV_INVALID);
    const char *none[] = { NULL };
    assert_null(rzkv_connect(none, 1, NULL, &err));

    rzkv_consistency lvl;
    assert_int_equal(rzkv_consistency_parse("ALL", &lvl), 0);
    assert_int_equal(lvl, RZKV_ALL);
    assert_int_equal(rzkv_consistency_parse("two", &lvl), -1);
}

/* ---- asynchronous calls ------------------------------------------------- */

/* What the callbacks of one test saw. */
struct seen {
    pthread_mutex_t lock;
    int calls;
    int by_caller;                  /* callbacks on the submitting thread */
    pthread_t caller;
    rzkv_status status;             /* the last callback's */
    char message[RZKV_MESSAGE_MAX];
    char address[RZKV_ADDRESS_MAX];
    bool has_value, has_stamp;
    char value[64];
    size_t value_len;
    rzkv_stamp stamp;
    int counts[RZKV_ERROR + 1];     /* by status */
    char failure[RZKV_MESSAGE_MAX]; /* the first that was not OK */
};

static void
seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->caller = pthread_self();
}

static void
on_result(void *arg, const rzkv_result *res)
{
    struct seen *s = arg;

    pthread_mutex_lock(&s->lock);
    s->calls++;
    if (pthread_equal(pthread_self(), s->caller))
        s->by_caller++;
    s->status = res->status;
    s->counts[res->status]++;
    snprintf(s->message, sizeof(s->message), "%s", res->message);
    snprintf(s->address, sizeof(s->address), "%s", res->address);
    s->has_value = res->value != NULL;
    s->value_len = res->value_len;
    if (res->value != NULL && res->value_len <= sizeof(s->value))
        memcpy(s->value, res->value, res->value_len);
    s->has_stamp = res->stamp != NULL;
    if (res->stamp != NULL)
        s->stamp = *res->stamp;
    if (res->status != RZKV_OK && s->failure[0] == '\0')
        snprintf(s->failure, sizeof(s->failure), "%s: %s",
                 rzkv_status_str(res->status), res->message);
    pthread_mutex_unlock(&s->lock);
}

static int
seen_calls(struct seen *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->calls;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void
test_async_round_trips(void **state)
{
    (void)state;
    static uint8_t value[] = { 'v', '\0', 'w' };
    struct fake *f = fake_start(FAKE_ANSWER);
    Rzkv__ClusterReply body = RZKV__CLUSTER_REPLY__INIT;
    Rzkv__Stamp stamp = RZKV__STAMP__INIT;
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 600);
    rzkv_req one = { RZKV_ONE, 0 };
    struct seen s;
    rzkv_error err;

    stamp.epoch = 5;
    stamp.counter = 6;
    stamp.writer.data = (uint8_t *)"n2/c1";
    stamp.writer.len = 5;
    body.value.data = value;
    body.value.len = sizeof(value);
    body.stamp = &stamp;
    fake_set_body(f, &body, NULL);

    seen_init(&s);
    assert_int_equal(rzkv_get_async(c, "k\0y", 3, &one, on_result, &s,
                                    &err), RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.by_caller, 0);       /* on a library thread */
    assert_int_equal(s.status, RZKV_OK);
    assert_string_equal(s.address, f->url);
    assert_true(s.has_value);
    assert_int_equal(s.value_len, sizeof(value));
    assert_memory_equal(s.value, value, sizeof(value));
    assert_true(s.has_stamp);
    assert_int_equal(s.stamp.epoch, 5);
    assert_int_equal(s.stamp.counter, 6);
    assert_string_equal(s.stamp.writer, "n2/c1");
    Rzkv__ClusterRequest *cr = fake_last(f)->cluster;
    assert_int_equal(cr->op_case, RZKV__CLUSTER_REQUEST__OP_GET);
    assert_int_equal(cr->consistency, RZKV__CONSISTENCY__ONE);
    assert_int_equal(cr->timeout_ms, 600);
    assert_int_equal(cr->get->key.len, 3);
    assert_memory_equal(cr->get->key.data, "k\0y", 3);

    stamp.counter = 7;
    fake_set_body(f, &body, NULL);
    assert_int_equal(rzkv_set_async(c, "k", 1, "\0v", 2, NULL, on_result, &s,
                                    &err), RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.status, RZKV_OK);
    assert_false(s.has_value);
    assert_true(s.has_stamp);
    assert_int_equal(s.stamp.counter, 7);
    cr = fake_last(f)->cluster;
    assert_int_equal(cr->op_case, RZKV__CLUSTER_REQUEST__OP_SET);
    assert_int_equal(cr->consistency, RZKV__CONSISTENCY__QUORUM);
    assert_memory_equal(cr->set->value.data, "\0v", 2);

    assert_int_equal(rzkv_del_async(c, "k", 1, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_OK);
    assert_int_equal(fake_last(f)->cluster->op_case,
                     RZKV__CLUSTER_REQUEST__OP_DEL);

    assert_int_equal(rzkv_health_async(c, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_OK);
    assert_false(s.has_stamp);
    assert_int_equal(fake_last(f)->msg_case, RZKV__ENVELOPE__MSG_HEALTH);

    /* the other statuses, with the node's own words */
    fake_set_reply(f, RZKV__STATUS__NOT_FOUND, "no such key");
    assert_int_equal(rzkv_get_async(c, "k", 1, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_NOT_FOUND);
    assert_string_equal(s.message, "no such key");
    assert_false(s.has_value);
    assert_false(s.has_stamp);
    fake_set_reply(f, RZKV__STATUS__UNKNOWN, "1 of 2 acks");
    assert_int_equal(rzkv_set_async(c, "k", 1, "v", 1, NULL, on_result, &s,
                                    &err), RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_UNKNOWN);
    assert_string_equal(s.message, "1 of 2 acks");
    fake_set_reply(f, RZKV__STATUS__UNAVAILABLE, "2 of 3 replicas down");
    assert_int_equal(rzkv_health_async(c, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_UNAVAILABLE);
    assert_non_null(strstr(s.message, "2 of 3 replicas down"));
    /* OK without a body is no answer to a read */
    fake_set_reply(f, RZKV__STATUS__OK, NULL);
    fake_set_body(f, NULL, NULL);
    assert_int_equal(rzkv_get_async(c, "k", 1, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_ERROR);
    assert_false(s.has_value);

    assert_int_equal(s.calls, 8);
    assert_int_equal(s.by_caller, 0);
    assert_int_equal(fake_requests(f), 8);
    rzkv_close(c);
    fake_stop(f);
}

static void
test_async_bad_arguments(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ECHO);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_to(addrs, 1, 0);
    rzkv_req bad = { (rzkv_consistency)9, 0 };
    struct seen s;
    rzkv_error err;

    seen_init(&s);
    assert_int_equal(rzkv_get_async(c, "k", 1, NULL, NULL, &s, &err),
                     RZKV_INVALID);
    assert_int_equal(rzkv_get_async(NULL, "k", 1, NULL, on_result, &s, &err),
                     RZKV_INVALID);
    assert_int_equal(rzkv_get_async(c, "", 0, NULL, on_result, &s, &err),
                     RZKV_INVALID);
    assert_non_null(strstr(err.message, "empty key"));
    assert_int_equal(rzkv_set_async(c, "k", 1, NULL, 2, NULL, on_result, &s,
                                    &err), RZKV_INVALID);
    assert_int_equal(rzkv_del_async(c, NULL, 0, NULL, on_result, &s, NULL),
                     RZKV_INVALID);
    assert_int_equal(rzkv_health_async(c, &bad, on_result, &s, &err),
                     RZKV_INVALID);
    assert_non_null(strstr(err.message, "bad consistency"));
    assert_int_equal(rzkv_wait(NULL), RZKV_INVALID);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.calls, 0);           /* refused: no callback */
    assert_int_equal(fake_requests(f), 0);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- a callback that submits the next request ------------------------------ */

#define CHAIN_LENGTH 1000

struct chain {
    rzkv_client *c;
    pthread_t caller;
    pthread_mutex_t lock;           /* one request in flight, but callbacks
                                     * run on different threads */
    int done;
    int ok, mismatches, by_caller;
    rzkv_status refused_sync, refused_wait, refused_next;
    char key[32];
    size_t key_len;
};

static void chain_next(void *arg, const rzkv_result *res);

static rzkv_status
chain_submit(struct chain *ch)
{
    ch->key_len = (size_t)snprintf(ch->key, sizeof(ch->key), "chain-%d",
                                   ch->done);
    return rzkv_get_async(ch->c, ch->key, ch->key_len, NULL, chain_next, ch,
                          NULL);
}

static void
chain_next(void *arg, const rzkv_result *res)
{
    struct chain *ch = arg;

    pthread_mutex_lock(&ch->lock);
    if (pthread_equal(pthread_self(), ch->caller))
        ch->by_caller++;
    if (res->status == RZKV_OK) {
        ch->ok++;
        if (res->value_len != ch->key_len ||
            memcmp(res->value, ch->key, ch->key_len) != 0)
            ch->mismatches++;
    }
    if (ch->done == 0) {
        /* Calls that would wait for the library's own threads. */
        rzkv_error err;
        ch->refused_sync = rzkv_health(ch->c, NULL, &err);
        ch->refused_wait = rzkv_wait(ch->c);
    }
    if (++ch->done < CHAIN_LENGTH)
        ch->refused_next = chain_submit(ch);
    pthread_mutex_unlock(&ch->lock);
}

static void
test_async_chain(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ECHO);
    const char *addrs[] = { f->url };
    struct chain ch = { 0 };

    ch.c = connect_to(addrs, 1, 0);
    ch.caller = pthread_self();
    pthread_mutex_init(&ch.lock, NULL);
    pthread_mutex_lock(&ch.lock);
    assert_int_equal(chain_submit(&ch), RZKV_OK);
    pthread_mutex_unlock(&ch.lock);
    assert_int_equal(rzkv_wait(ch.c), RZKV_OK);
    assert_int_equal(ch.done, CHAIN_LENGTH);
    assert_int_equal(ch.ok, CHAIN_LENGTH);
    assert_int_equal(ch.mismatches, 0);
    assert_int_equal(ch.by_caller, 0);
    assert_int_equal(ch.refused_next, RZKV_OK);
    assert_int_equal(ch.refused_sync, RZKV_INVALID);
    assert_int_equal(ch.refused_wait, RZKV_INVALID);
    assert_int_equal(fake_requests(f), CHAIN_LENGTH);
    pthread_mutex_destroy(&ch.lock);
    rzkv_close(ch.c);
    fake_stop(f);
}

/* ---- many in flight from one thread ---------------------------------------- */

/*
 * A node with GATHER_MAX REP contexts that answers nothing until it holds
 * `want` requests at once (or 5 s have passed), then echoes them all,
 * last first.  All are answered only if the client had them all in flight.
 */
#define GATHER_MAX 64

struct gather {
    char url[256];
    nng_socket sock;
    pthread_t thread;
    int want;
    int held;                       /* requests held at once */
};

static void *
gather_run(void *arg)
{
    struct gather *g = arg;
    nng_ctx ctx[GATHER_MAX];
    nng_aio *aio[GATHER_MAX];

    for (int i = 0; i < g->want; i++) {
        nng_ctx_open(&ctx[i], g->sock);
        nng_aio_alloc(&aio[i], NULL, NULL);
        nng_aio_set_timeout(aio[i], 5000);
        nng_ctx_recv(ctx[i], aio[i]);
    }
    for (int i = 0; i < g->want; i++) {
        nng_aio_wait(aio[i]);
        if (nng_aio_result(aio[i]) == 0)
            g->held++;
    }
    for (int i = g->want - 1; i >= 0; i--) {
        if (nng_aio_result(aio[i]) == 0) {
            nng_msg *msg = nng_aio_get_msg(aio[i]);
            Rzkv__Envelope *env = wire_unpack_envelope(msg);
            fake_answer(NULL, msg, env, FAKE_ECHO);
            if (env != NULL)
                rzkv__envelope__free_unpacked(env, NULL);
            nng_aio_set_msg(aio[i], msg);
            nng_ctx_send(ctx[i], aio[i]);
            nng_aio_wait(aio[i]);
            if (nng_aio_result(aio[i]) != 0)
                nng_msg_free(msg);
        }
        nng_aio_free(aio[i]);
        nng_ctx_close(ctx[i]);
    }
    return NULL;
}

/* Each callback checks that its own key came back. */
struct key_check {
    struct seen *s;
    char key[16];
    size_t len;
    int *bad;
};

static void
check_key(void *arg, const rzkv_result *res)
{
    struct key_check *k = arg;

    on_result(k->s, res);
    pthread_mutex_lock(&k->s->lock);
    if (res->status == RZKV_OK &&
        (res->value_len != k->len || memcmp(res->value, k->key, k->len) != 0))
        (*k->bad)++;
    pthread_mutex_unlock(&k->s->lock);
}

static void
test_async_many_in_flight(void **state)
{
    (void)state;
    struct gather g = { .want = GATHER_MAX };
    struct key_check checks[GATHER_MAX];
    struct seen s;
    rzkv_error err;
    int mismatches = 0;

    snprintf(g.url, sizeof(g.url), "ipc://%s/gather", scratch);
    assert_int_equal(nng_rep0_open(&g.sock), 0);
    assert_int_equal(nng_listen(g.sock, g.url, NULL, 0), 0);
    assert_int_equal(pthread_create(&g.thread, NULL, gather_run, &g), 0);

    const char *addrs[] = { g.url };
    rzkv_client *c = connect_wait(addrs, 1, 8000, 2000);
    seen_init(&s);

    for (int i = 0; i < GATHER_MAX; i++) {
        checks[i].s = &s;
        checks[i].bad = &mismatches;
        checks[i].len = (size_t)snprintf(checks[i].key, sizeof(checks[i].key),
                                         "key-%d", i);
    }
    for (int i = 0; i < GATHER_MAX; i++)
        assert_int_equal(rzkv_get_async(c, checks[i].key, checks[i].len,
                                        NULL, check_key, &checks[i], &err),
                         RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    pthread_join(g.thread, NULL);
    assert_int_equal(g.held, GATHER_MAX);
    assert_int_equal(s.calls, GATHER_MAX);
    assert_int_equal(s.counts[RZKV_OK], GATHER_MAX);
    assert_int_equal(mismatches, 0);
    assert_int_equal(s.by_caller, 0);
    rzkv_close(c);
    nng_close(g.sock);
}

/* More in flight than the client keeps ops for: the extra ones are freed
 * as they finish (valgrind sees them all go).  The node answers nothing
 * until all are submitted; the timeouts leave room for valgrind. */
#define BURST 1100

static void
test_async_burst(void **state)
{
    (void)state;
    struct fake *f = fake_start(FAKE_ECHO);
    const char *addrs[] = { f->url };
    rzkv_client *c = connect_wait(addrs, 1, 60000, 30000);
    struct seen s;
    rzkv_error err;

    seen_init(&s);
    pthread_mutex_lock(&f->gate);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(rzkv_health_async(c, NULL, on_result, &s, &err),
                         RZKV_OK);
    pthread_mutex_unlock(&f->gate);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    if (s.counts[RZKV_OK] != BURST)
        print_message("burst: %d OK; the first other: %s\n",
                      s.counts[RZKV_OK], s.failure);
    assert_int_equal(s.counts[RZKV_OK], BURST);
    assert_int_equal(fake_requests(f), BURST);
    rzkv_close(c);
    fake_stop(f);
}

/* ---- async timeouts and failover ----------------------------------------- */

static void
test_async_timeouts(void **state)
{
    (void)state;
    struct fake *mute = fake_start(FAKE_SWALLOW);
    struct fake *live = fake_start(FAKE_ECHO);
    const char *addrs[] = { mute->url, live->url };
    rzkv_client *c = connect_to(addrs, 2, 100);
    struct seen s;
    rzkv_error err;

    seen_init(&s);
    long t0 = now_ms();
    assert_int_equal(rzkv_set_async(c, "k", 1, "v", 1, NULL, on_result, &s,
                                    &err), RZKV_OK);
    assert_true(now_ms() - t0 < 100);       /* it does not wait */
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    long took = now_ms() - t0;
    assert_int_equal(s.status, RZKV_UNKNOWN);
    assert_non_null(strstr(s.message, "timed out after 350 ms"));
    assert_non_null(strstr(s.message, "may or may not have been applied"));
    assert_string_equal(s.address, mute->url);
    assert_true(took >= 300 && took < 2000);

    assert_int_equal(rzkv_del_async(c, "k", 1, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_UNKNOWN);

    /* a read moves on to the next node */
    assert_int_equal(rzkv_get_async(c, "abc", 3, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_OK);
    assert_int_equal(s.value_len, 3);
    assert_memory_equal(s.value, "abc", 3);
    assert_string_equal(s.address, live->url);

    /* nothing was resent, and the writes never reached the live node */
    usleep(1200 * 1000);
    assert_int_equal(fake_requests(mute), 3);
    assert_int_equal(fake_requests(live), 1);
    assert_int_equal(s.calls, 3);
    rzkv_close(c);
    fake_stop(mute);
    fake_stop(live);
}

static void
test_async_failover(void **state)
{
    (void)state;
    struct fake *busy = fake_start(FAKE_ANSWER);
    struct fake *live = fake_start(FAKE_ECHO);
    char dead_ipc[300], dead_tcp[64];
    struct seen s;
    rzkv_error err;

    fake_set_reply(busy, RZKV__STATUS__STOPPING, "shutting down");
    snprintf(dead_ipc, sizeof(dead_ipc), "ipc://%s/nobody", scratch);
    snprintf(dead_tcp, sizeof(dead_tcp), "127.0.0.1:%d", closed_tcp_port());
    const char *addrs[] = { dead_ipc, dead_tcp, busy->url, live->url };
    rzkv_client *c = connect_to(addrs, 4, 0);
    seen_init(&s);

    long t0 = now_ms();
    assert_int_equal(rzkv_set_async(c, "k", 1, "v", 1, NULL, on_result, &s,
                                    &err), RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_OK);
    assert_string_equal(s.address, live->url);
    assert_true(now_ms() - t0 < 500);       /* refusals known at once */
    assert_int_equal(fake_requests(busy), 1);
    assert_int_equal(fake_requests(live), 1);
    rzkv_close(c);

    /* nobody to serve it: every reason, and UNAVAILABLE */
    const char *dead[] = { dead_ipc, dead_tcp, busy->url };
    c = connect_to(dead, 3, 0);
    assert_int_equal(rzkv_get_async(c, "k", 1, NULL, on_result, &s, &err),
                     RZKV_OK);
    assert_int_equal(rzkv_wait(c), RZKV_OK);
    assert_int_equal(s.status, RZKV_UNAVAILABLE);
    assert_non_null(strstr(s.message, "connection refused to "));
    assert_non_null(strstr(s.message, dead_ipc));
    assert_non_null(strstr(s.message, dead_tcp));
    assert_non_null(strstr(s.message, "shutting down"));
    assert_string_equal(s.address, "");
    rzkv_close(c);
    fake_stop(busy);
    fake_stop(live);
}

/* ---- closing with requests in flight --------------------------------------- */

struct closing {
    struct seen s;
    rzkv_client *c;
    int resubmitted;                /* submissions accepted during close */
};

static void
on_closing(void *arg, const rzkv_result *res)
{
    struct closing *cl = arg;

    on_result(&cl->s, res);
    /* close is running: nothing new may start */
    if (rzkv_health_async(cl->c, NULL, on_closing, cl, NULL) == RZKV_OK) {
        pthread_mutex_lock(&cl->s.lock);
        cl->resubmitted++;
        pthread_mutex_unlock(&cl->s.lock);
    }
}

static void
test_close_cancels_sent(void **state)
{
    (void)state;
    struct fake *mute = fake_start(FAKE_SWALLOW);
    const char *addrs[] = { mute->url };
    struct closing cl;

    seen_init(&cl.s);
    cl.resubmitted = 0;
    cl.c = connect_wait(addrs, 1, 5000, 2000);
    for (int i = 0; i < 32; i++) {
        assert_int_equal(rzkv_set_async(cl.c, "k", 1, "v", 1, NULL,
                                        on_closing, &cl, NULL), RZKV_OK);
        assert_int_equal(rzkv_get_async(cl.c, "k", 1, NULL, on_closing, &cl,
                                        NULL), RZKV_OK);
    }
    /* until the node holds them all: every one was sent */
    for (long t0 = now_ms(); fake_requests(mute) < 64 && now_ms() - t0 < 5000;)
        usleep(10 * 1000);
    assert_int_equal(fake_requests(mute), 64);
    assert_int_equal(seen_calls(&cl.s), 0);

    long t0 = now_ms();
    rzkv_close(cl.c);
    assert_true(now_ms() - t0 < 1000);      /* not the 5 s timeout */
    assert_int_equal(cl.s.calls, 64);
    assert_int_equal(cl.s.counts[RZKV_UNKNOWN], 32);   /* the writes */
    assert_int_equal(cl.s.counts[RZKV_ERROR], 32);     /* the reads */
    assert_int_equal(cl.resubmitted, 0);
    usleep(300 * 1000);
    assert_int_equal(seen_calls(&cl.s), 64);    /* none after close */
    fake_stop(mute);
}

/* A TCP listener on 127.0.0.1 that never accepts: connections complete in
 * its backlog and never see the SP handshake.  Its address into addr. */
static int
silent_listener(char *addr, size_t len)
{
    int port, fd = bound_tcp_socket(&port);

    assert_int_equal(listen(fd, 64), 0);
    snprintf(addr, len, "127.0.0.1:%d", port);
    return fd;
}

/*
 * A node that takes the connection but never answers the handshake: a
 * request waits for it the connect timeout, then counts as never sent
 * (UNAVAILABLE, writes included) and moves to the next node.
 */
static void
test_silent_node_times_out(void **state)
{
    (void)state;
    char addr[64];
    int fd = silent_listener(addr, sizeof(addr));
    struct fake *live = fake_start(FAKE_ECHO);
    rzkv_error err;
    void *v;
    size_t len;

    const char *one[] = { addr };
    rzkv_client *c = connect_wait(one, 1, 0, 300);
    long t0 = now_ms();
    assert_int_equal(rzkv_set(c, "k", 1, "v", 1, NULL, NULL, &err),
                     RZKV_UNAVAILABLE);
    long took = now_ms() - t0;
    assert_true(took >= 250 && took < 2000);
    assert_non_null(strstr(err.message, "within 300 ms"));
    rzkv_close(c);

    const char *two[] = { addr, live->url };
    c = connect_wait(two, 2, 0, 300);
    if (rzkv_get(c, "g", 1, NULL, &v, &len, NULL, &err) != RZKV_OK)
        fail_msg("get past the silent node: %s", err.message);
    assert_memory_equal(v, "g", 1);
    assert_string_equal(err.address, live->url);
    rzkv_free(v);
    rzkv_close(c);
    fake_stop(live);
    close(fd);
}

/*
 * Requests still waiting for a connection when the client closes: a TCP
 * listener that never accepts holds them in the SP handshake (the probe
 * then waits for its answer), so none was sent, writes included.
 */
static void
test_close_cancels_unsent(void **state)
{
    (void)state;
    char addr[64];
    int fd = silent_listener(addr, sizeof(addr));
    struct closing cl;

    const char *addrs[] = { addr };
    seen_init(&cl.s);
    cl.resubmitted = 0;
    cl.c = connect_wait(addrs, 1, 5000, 3000);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rzkv_set_async(cl.c, "k", 1, "v", 1, NULL,
                                        on_closing, &cl, NULL), RZKV_OK);
        assert_int_equal(rzkv_get_async(cl.c, "k", 1, NULL, on_closing, &cl,
                                        NULL), RZKV_OK);
    }
    usleep(200 * 1000);                     /* past the first pipe wait */
    long t0 = now_ms();
    rzkv_close(cl.c);
    assert_true(now_ms() - t0 < 1000);      /* not the 3 s connect timeout */
    assert_int_equal(cl.s.calls, 16);
    assert_int_equal(cl.s.counts[RZKV_ERROR], 16);     /* never sent */
    assert_non_null(strstr(cl.s.message, "cancelled"));
    assert_int_equal(cl.resubmitted, 0);
    close(fd);
}

/* ---- main ----------------------------------------------------------------- */

static int
setup(void **state)
{
    (void)state;
    return mkdtemp(scratch) == NULL ? -1 : 0;
}

/* Remove the scratch directory, with whatever a failed test left in it. */
static int
teardown(void **state)
{
    (void)state;
    DIR *dir = opendir(scratch);
    struct dirent *de;
    char path[300];

    if (dir == NULL)
        return -1;
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", scratch, de->d_name);
        unlink(path);
    }
    closedir(dir);
    return rmdir(scratch);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_round_trip),
        cmocka_unit_test(test_set_and_del_encoding),
        cmocka_unit_test(test_big_values_over_tcp),
        cmocka_unit_test(test_bad_arguments_never_sent),
        cmocka_unit_test(test_every_status),
        cmocka_unit_test(test_garbage_reply),
        cmocka_unit_test(test_timeout_write_unknown),
        cmocka_unit_test(test_timeout_read_moves_on),
        cmocka_unit_test(test_hang_up_after_request),
        cmocka_unit_test(test_failover_from_refused),
        cmocka_unit_test(test_failover_from_unavailable_and_stopping),
        cmocka_unit_test(test_reconnects),
        cmocka_unit_test(test_silent_node_times_out),
        cmocka_unit_test(test_info_keys_health),
        cmocka_unit_test(test_threads_share_a_client),
        cmocka_unit_test(test_address_forms),
        cmocka_unit_test(test_async_round_trips),
        cmocka_unit_test(test_async_bad_arguments),
        cmocka_unit_test(test_async_chain),
        cmocka_unit_test(test_async_many_in_flight),
        cmocka_unit_test(test_async_burst),
        cmocka_unit_test(test_async_timeouts),
        cmocka_unit_test(test_async_failover),
        cmocka_unit_test(test_close_cancels_sent),
        cmocka_unit_test(test_close_cancels_unsent),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    nng_fini();     /* nng's threads end too: valgrind then sees no leak */
    return failed;
}

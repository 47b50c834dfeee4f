/*
 * coord_load.c - drive the Cluster API of one or more nodes hard and
 * check every answer.  A test helper (not installed): the coordinator's
 * integration tests use it for load while they break things, and it
 * measures what a coordinator sustains.
 *
 *   coord_load [-c CONC] [-d SECS] [-n OPS] [-s BYTES] [-k KEYS]
 *              [-m set|get|mix|seq|verify|health] [-C one|quorum|all]
 *              [-t TIMEOUT_MS] [-f FILE] [-p PREFIX] ADDR[,ADDR...]
 *
 *   -c  requests in flight (nng REQ contexts), spread over the addresses
 *   -d  seconds to run (default 5); -n stops after OPS answers instead
 *   -s  value bytes (default 1024)      -k  key space (default 10000)
 *   -m  set, get, mix (half each) on random keys; seq: every context
 *       writes its own keys PREFIX-CTX-N once each, N = 0, 1, ..., and
 *       -f FILE gets every acknowledged key; verify: read every key of
 *       FILE and check its value; health: HealthRequests only
 *   -C  consistency (default quorum)   -t  per-request timeout (0)
 *
 *   coord_load -i ADDR...   print every worker's NodeInfo of each node
 *   coord_load -b ADDR      send malformed requests, print "KIND STATUS"
 *                           for each (STATUS "none" if no answer)
 *
 * Values are a function of the key (the key repeated), so any reader can
 * check them.  Prints one line of totals; exits 1 if any answer was
 * wrong (a get of a written key with another value, a malformed reply,
 * a verify that misses a key), 0 otherwise.  UNAVAILABLE, UNKNOWN and
 * timeouts are counted, not errors: tests decide what they may be.
 */
#include "config.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "wire.h"

enum mode { M_SET, M_GET, M_MIX, M_SEQ, M_VERIFY, M_HEALTH };

struct opts {
    int conc, secs, value_size, keys, timeout_ms, consistency;
    long max_ops;
    enum mode mode;
    const char *file, *prefix;
};

struct worker {
    int id;
    nng_ctx ctx;
    nng_aio *aio;
    long seq;
    char key[128];
    size_t key_len;
    int is_set;
    uint64_t sent_us;
    int sending;
};

static int info_mode, bad_mode;
static struct opts o = { 16, 5, 1024, 10000, 0, 0, 0, M_SET, NULL, "seq" };
static nng_socket *socks;
static int nsocks;
static struct worker *workers;
static atomic_long n_ok, n_notfound, n_unavail, n_unknown, n_other, n_wrong,
    n_done, n_running;
static atomic_int stop_flag;
static nng_mtx *file_lock;
static FILE *ack_file;
static char **verify_keys;
static long verify_count;
static atomic_long verify_next;
static uint64_t lat_hist[64];   /* log2 buckets of microseconds */
static nng_mtx *hist_lock;

static uint64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000;
}

static void
fill_value(uint8_t *buf, size_t len, const char *key, size_t key_len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)key[i % key_len];
}

/* Pick the next request; 0 if this worker is done. */
static int
next_key(struct worker *w)
{
    switch (o.mode) {
    case M_SEQ:
        w->is_set = 1;
        w->key_len = (size_t)snprintf(w->key, sizeof(w->key), "%s-%d-%ld",
                                      o.prefix, w->id, w->seq++);
        return 1;
    case M_VERIFY: {
        long i = atomic_fetch_add(&verify_next, 1);
        if (i >= verify_count)
            return 0;
        w->is_set = 0;
        w->key_len = (size_t)snprintf(w->key, sizeof(w->key), "%s",
                                      verify_keys[i]);
        return 1;
    }
    default:
        w->is_set = o.mode == M_SET || (o.mode == M_MIX && rand() % 2);
        w->key_len = (size_t)snprintf(w->key, sizeof(w->key), "load-%d",
                                      rand() % o.keys);
        return 1;
    }
}

static nng_msg *
build(struct worker *w)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__ClusterRequest req = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterGet get = RZKV__CLUSTER_GET__INIT;
    Rzkv__ClusterSet set = RZKV__CLUSTER_SET__INIT;
    static __thread uint8_t *vbuf;
    static __thread size_t vcap;

    if (o.mode == M_HEALTH) {
        Rzkv__HealthRequest h = RZKV__HEALTH_REQUEST__INIT;
        env.msg_case = RZKV__ENVELOPE__MSG_HEALTH;
        env.health = &h;
        return wire_pack(&env.base);
    }
    req.consistency = (Rzkv__Consistency)o.consistency;
    req.timeout_ms = (uint32_t)o.timeout_ms;
    if (w->is_set) {
        if (vcap < (size_t)o.value_size) {
            free(vbuf);
            vbuf = malloc((size_t)o.value_size + 1);
            vcap = (size_t)o.value_size;
        }
        fill_value(vbuf, (size_t)o.value_size, w->key, w->key_len);
        set.key.data = (uint8_t *)w->key;
        set.key.len = w->key_len;
        set.value.data = vbuf;
        set.value.len = (size_t)o.value_size;
        req.op_case = RZKV__CLUSTER_REQUEST__OP_SET;
        req.set = &set;
    } else {
        get.key.data = (uint8_t *)w->key;
        get.key.len = w->key_len;
        req.op_case = RZKV__CLUSTER_REQUEST__OP_GET;
        req.get = &get;
    }
    env.msg_case = RZKV__ENVELOPE__MSG_CLUSTER;
    env.cluster = &req;
    return wire_pack(&env.base);
}

static void
record(struct worker *w, nng_msg *reply)
{
    Rzkv__Reply *r = wire_unpack_reply(reply);
    if (r == NULL) {
        atomic_fetch_add(&n_wrong, 1);
        fprintf(stderr, "malformed reply for %s\n", w->key);
        return;
    }
    switch (r->status) {
    case RZKV__STATUS__OK:
        atomic_fetch_add(&n_ok, 1);
        if (o.mode == M_HEALTH)
            break;
        if (!w->is_set) {
            size_t len = r->body_case == RZKV__REPLY__BODY_CLUSTER
                       ? r->cluster->value.len : 0;
            uint8_t *want = malloc(len ? len : 1);
            fill_value(want, len, w->key, w->key_len);
            if (len == 0 || memcmp(want, r->cluster->value.data, len) != 0 ||
                (o.mode == M_VERIFY && len != (size_t)o.value_size)) {
                atomic_fetch_add(&n_wrong, 1);
                fprintf(stderr, "wrong value for %s (%zu bytes)\n", w->key,
                        len);
            }
            free(want);
        } else if (o.mode == M_SEQ && ack_file != NULL) {
            nng_mtx_lock(file_lock);
            fprintf(ack_file, "%s\n", w->key);
            nng_mtx_unlock(file_lock);
        }
        break;
    case RZKV__STATUS__NOT_FOUND:
        atomic_fetch_add(&n_notfound, 1);
        if (o.mode == M_VERIFY) {
            atomic_fetch_add(&n_wrong, 1);
            fprintf(stderr, "acknowledged key %s not found\n", w->key);
        }
        break;
    case RZKV__STATUS__UNAVAILABLE:
        atomic_fetch_add(&n_unavail, 1);
        break;
    case RZKV__STATUS__UNKNOWN:
        atomic_fetch_add(&n_unknown, 1);
        break;
    default:
        atomic_fetch_add(&n_other, 1);
        fprintf(stderr, "%s %s: %s: %s\n", w->is_set ? "set" : "get",
                w->key, wire_status_str(r->status), r->message);
        break;
    }
    if (o.mode == M_VERIFY && r->status != RZKV__STATUS__OK &&
        r->status != RZKV__STATUS__NOT_FOUND) {
        atomic_fetch_add(&n_wrong, 1);
        fprintf(stderr, "verify %s: %s: %s\n", w->key,
                wire_status_str(r->status), r->message);
    }
    rzkv__reply__free_unpacked(r, NULL);
}

static void
issue(struct worker *w)
{
    if (atomic_load(&stop_flag) || !next_key(w)) {
        atomic_fetch_sub(&n_running, 1);
        return;
    }
    nng_msg *m = build(w);
    w->sending = 1;
    w->sent_us = now_us();
    nng_aio_set_msg(w->aio, m);
    nng_ctx_send(w->ctx, w->aio);
}

static void
worker_cb(void *arg)
{
    struct worker *w = arg;
    int rv = nng_aio_result(w->aio);

    if (w->sending) {
        w->sending = 0;
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(w->aio));
            atomic_fetch_add(&n_other, 1);
            fprintf(stderr, "send: %s\n", nng_strerror(rv));
            nng_msleep(10);
            issue(w);
            return;
        }
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    if (rv != 0) {
        atomic_fetch_add(&n_other, 1);
        fprintf(stderr, "%s %s: %s\n", w->is_set ? "set" : "get", w->key,
                nng_strerror(rv));
    } else {
        nng_msg *reply = nng_aio_get_msg(w->aio);
        record(w, reply);
        nng_msg_free(reply);
        uint64_t us = now_us() - w->sent_us;
        int b = 0;
        while (b < 63 && (1ull << (b + 1)) <= us)
            b++;
        nng_mtx_lock(hist_lock);
        lat_hist[b]++;
        nng_mtx_unlock(hist_lock);
    }
    long done = atomic_fetch_add(&n_done, 1) + 1;
    if (o.max_ops > 0 && done >= o.max_ops)
        atomic_store(&stop_flag, 1);
    issue(w);
}

static long
percentile_ms(double p)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < 64; i++)
        total += lat_hist[i];
    for (int i = 0; i < 64; i++) {
        seen += lat_hist[i];
        if (total > 0 && (double)seen >= p * (double)total)
            return (long)((1ull << (i + 1)) / 1000) + 1;
    }
    return 0;
}

static void
load_verify_file(void)
{
    FILE *f = fopen(o.file, "r");
    char line[256];
    long cap = 0;

    if (f == NULL) {
        perror(o.file);
        exit(2);
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (verify_count == cap) {
            cap = cap ? cap * 2 : 1024;
            verify_keys = realloc(verify_keys, (size_t)cap * sizeof(char *));
        }
        verify_keys[verify_count++] = strdup(line);
    }
    fclose(f);
}

/* -i: one NodeInfoRequest per address, printed a worker a line. */
static int
node_info(void)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__NodeInfoRequest ni = RZKV__NODE_INFO_REQUEST__INIT;
    int rc = 0;

    env.msg_case = RZKV__ENVELOPE__MSG_NODE_INFO;
    env.node_info = &ni;
    for (int i = 0; i < nsocks; i++) {
        nng_msg *m = wire_pack(&env.base), *reply;
        nng_socket_set_ms(socks[i], NNG_OPT_RECVTIMEO, 3000);
        if (nng_sendmsg(socks[i], m, 0) != 0 ||
            nng_recvmsg(socks[i], &reply, 0) != 0) {
            printf("node %d: no answer\n", i);
            rc = 1;
            continue;
        }
        Rzkv__Reply *r = wire_unpack_reply(reply);
        nng_msg_free(reply);
        if (r == NULL || r->body_case != RZKV__REPLY__BODY_NODE_INFO) {
            printf("node %d: bad answer\n", i);
            rc = 1;
        } else {
            for (size_t k = 0; k < r->node_info->n_workers; k++) {
                const Rzkv__WorkerInfo *w = r->node_info->workers[k];
                printf("node %d %s[%u]: entries %" PRIu64 " commits %"
                       PRIu64 " ops_committed %" PRIu64 " fsyncs %" PRIu64
                       " requests %" PRIu64 " batches_sent %" PRIu64
                       " ops_sent %" PRIu64 "\n", i, w->role, w->instance,
                       w->entries, w->commits, w->ops_committed, w->fsyncs,
                       w->requests, w->batches_sent, w->ops_sent);
            }
        }
        if (r != NULL)
            rzkv__reply__free_unpacked(r, NULL);
    }
    return rc;
}

/* ---- -b: malformed requests -------------------------------------------- */

static nng_msg *
pack_cluster_set(size_t key_len, size_t value_len, int consistency, int noop)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__ClusterRequest req = RZKV__CLUSTER_REQUEST__INIT;
    Rzkv__ClusterSet set = RZKV__CLUSTER_SET__INIT;
    uint8_t *key = calloc(1, key_len + 1), *value = calloc(1, value_len + 1);

    memset(key, 'k', key_len);
    set.key.data = key;
    set.key.len = key_len;
    set.value.data = value;
    set.value.len = value_len;
    req.consistency = (Rzkv__Consistency)consistency;
    if (!noop) {
        req.op_case = RZKV__CLUSTER_REQUEST__OP_SET;
        req.set = &set;
    }
    env.msg_case = RZKV__ENVELOPE__MSG_CLUSTER;
    env.cluster = &req;
    nng_msg *m = wire_pack(&env.base);
    free(key);
    free(value);
    return m;
}

static nng_msg *
pack_bad_batch(void)
{
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    Rzkv__NodeBatch b = RZKV__NODE_BATCH__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
    b.n_ops = 1;
    b.ops = ops;                /* an operation with nothing set */
    env.msg_case = RZKV__ENVELOPE__MSG_NODE;
    env.node = &b;
    return wire_pack(&env.base);
}

static nng_msg *
bad_request(const char *kind)
{
    nng_msg *m = NULL;
    if (!strcmp(kind, "garbage")) {
        nng_msg_alloc(&m, 64);
        for (size_t i = 0; i < 64; i++)
            ((uint8_t *)nng_msg_body(m))[i] = (uint8_t)(0xff - i * 7);
    } else if (!strcmp(kind, "truncated")) {
        m = pack_cluster_set(10, 100, 0, 0);
        nng_msg_chop(m, 7);
    } else if (!strcmp(kind, "unknown")) {
        static const uint8_t field99[] = { 0x9a, 0x06, 0x01, 0x00 };
        nng_msg_alloc(&m, 0);
        nng_msg_append(m, field99, sizeof(field99));
    } else if (!strcmp(kind, "empty")) {
        nng_msg_alloc(&m, 0);
    } else if (!strcmp(kind, "emptykey")) {
        m = pack_cluster_set(0, 10, 0, 0);
    } else if (!strcmp(kind, "bigkey")) {
        m = pack_cluster_set(65537, 10, 0, 0);
    } else if (!strcmp(kind, "badconsistency")) {
        m = pack_cluster_set(3, 10, 7, 0);
    } else if (!strcmp(kind, "noop")) {
        m = pack_cluster_set(3, 10, 0, 1);
    } else if (!strcmp(kind, "toolarge")) {
        m = pack_cluster_set(3, (16u << 20) + 1, 0, 0);
    } else if (!strcmp(kind, "oversize")) {
        nng_msg_alloc(&m, 40u << 20);
        memset(nng_msg_body(m), 0x0a, nng_msg_len(m));
    } else if (!strcmp(kind, "badbatch")) {
        m = pack_bad_batch();
    }
    return m;
}

static int
bad_requests(void)
{
    static const char *const kinds[] = {
        "garbage", "truncated", "unknown", "empty", "emptykey", "bigkey",
        "badconsistency", "noop", "toolarge", "oversize", "badbatch",
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        nng_socket s;
        char url[300];
        nng_msg *reply;
        /* A fresh socket each time: an oversize message may cost the
         * connection, which is allowed. */
        wire_address_url(o.prefix, url, sizeof(url));
        nng_req0_open(&s);
        nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
        nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
        nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 64u << 20);
        nng_dial(s, url, NULL, 0);
        const char *status = "none";
        if (nng_sendmsg(s, bad_request(kinds[i]), 0) == 0 &&
            nng_recvmsg(s, &reply, 0) == 0) {
            Rzkv__Reply *r = wire_unpack_reply(reply);
            if (r == NULL)
                status = "undecodable";
            else if (r->status == RZKV__STATUS__OK &&
                     r->body_case == RZKV__REPLY__BODY_NODE &&
                     r->node->n_results == 1)
                status = wire_status_str(r->node->results[0]->status);
            else
                status = wire_status_str(r->status);
            if (r != NULL)
                rzkv__reply__free_unpacked(r, NULL);
            nng_msg_free(reply);
        }
        printf("%s %s\n", kinds[i], status);
        nng_close(s);
    }
    return 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: coord_load [-c CONC] [-d SECS] [-n OPS] "
            "[-s BYTES] [-k KEYS] [-m set|get|mix|seq|verify|health] "
            "[-C one|quorum|all] [-t MS] [-f FILE] [-p PREFIX] "
            "ADDR[,ADDR...]\n");
    exit(2);
}

static void
parse(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "c:d:n:s:k:m:C:t:f:p:ib")) != -1) {
        switch (ch) {
        case 'b': bad_mode = 1; break;
        case 'i': info_mode = 1; break;
        case 'c': o.conc = atoi(optarg); break;
        case 'd': o.secs = atoi(optarg); break;
        case 'n': o.max_ops = atol(optarg); break;
        case 's': o.value_size = atoi(optarg); break;
        case 'k': o.keys = atoi(optarg); break;
        case 't': o.timeout_ms = atoi(optarg); break;
        case 'f': o.file = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 'm':
            o.mode = !strcmp(optarg, "set") ? M_SET
                   : !strcmp(optarg, "get") ? M_GET
                   : !strcmp(optarg, "mix") ? M_MIX
                   : !strcmp(optarg, "seq") ? M_SEQ
                   : !strcmp(optarg, "verify") ? M_VERIFY
                   : !strcmp(optarg, "health") ? M_HEALTH : (usage(), M_SET);
            break;
        case 'C':
            o.consistency = !strcmp(optarg, "one") ? 1
                          : !strcmp(optarg, "all") ? 2 : 0;
            break;
        default: usage();
        }
    }
    if (optind != argc - 1 || o.conc < 1 || o.keys < 1 || o.value_size < 1)
        usage();
}

static void
open_sockets(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    for (char *a = strtok_r(copy, ",", &save); a != NULL;
         a = strtok_r(NULL, ",", &save)) {
        char url[300];
        if (wire_address_url(a, url, sizeof(url)) != 0) {
            fprintf(stderr, "bad address %s\n", a);
            exit(2);
        }
        socks = realloc(socks, (size_t)(nsocks + 1) * sizeof(*socks));
        nng_socket *s = &socks[nsocks++];
        if (nng_req0_open(s) != 0 ||
            nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, 64u << 20) != 0 ||
            nng_socket_set_ms(*s, NNG_OPT_REQ_RESENDTIME,
                              NNG_DURATION_INFINITE) != 0 ||
            nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK) != 0) {
            fprintf(stderr, "cannot dial %s\n", url);
            exit(2);
        }
    }
    free(copy);
}

int
main(int argc, char **argv)
{
    parse(argc, argv);
    if (bad_mode) {
        o.prefix = argv[optind];
        return bad_requests();
    }
    srand((unsigned)getpid());
    open_sockets(argv[optind]);
    if (info_mode) {
        nng_msleep(100);
        return node_info();
    }
    nng_mtx_alloc(&file_lock);
    nng_mtx_alloc(&hist_lock);
    if (o.mode == M_SEQ && o.file != NULL &&
        (ack_file = fopen(o.file, "w")) == NULL) {
        perror(o.file);
        return 2;
    }
    if (o.mode == M_VERIFY) {
        if (o.file == NULL)
            usage();
        load_verify_file();
    }
    nng_msleep(100);            /* let the dials connect */
    workers = calloc((size_t)o.conc, sizeof(*workers));
    for (int i = 0; i < o.conc; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        if (nng_ctx_open(&w->ctx, socks[i % nsocks]) != 0 ||
            nng_aio_alloc(&w->aio, worker_cb, w) != 0)
            return 2;
        /* Past the request's own timeout, the server owes an answer. */
        nng_aio_set_timeout(w->aio, (o.timeout_ms ? o.timeout_ms : 2000) +
                                    3000);
    }
    atomic_store(&n_running, o.conc);
    nng_time start = nng_clock();
    for (int i = 0; i < o.conc; i++)
        issue(&workers[i]);
    nng_time end = start + (nng_time)o.secs * 1000;
    while (atomic_load(&n_running) > 0) {
        if (nng_clock() >= end)
            atomic_store(&stop_flag, 1);
        nng_msleep(5);
    }
    double secs = (double)(nng_clock() - start) / 1000.0;
    if (ack_file != NULL)
        fclose(ack_file);
    long done = atomic_load(&n_done);
    printf("%ld answers in %.2f s: %.0f/s; ok %ld not_found %ld "
           "unavailable %ld unknown %ld other %ld wrong %ld; "
           "p50 <%ld ms p99 <%ld ms\n", done, secs, (double)done / secs,
           atomic_load(&n_ok), atomic_load(&n_notfound),
           atomic_load(&n_unavail), atomic_load(&n_unknown),
           atomic_load(&n_other), atomic_load(&n_wrong),
           percentile_ms(0.5), percentile_ms(0.99));
    return atomic_load(&n_wrong) > 0 ? 1 : 0;
}

/*
 * storage_bench.c - load one storage worker over its Node API and report
 * acknowledged operations per second, latency and fsyncs.  Not installed.
 *
 *   storage_bench [-c CONC] [-d SECS] [-b OPS] [-s BYTES] [-k KEYS]
 *                 [-m write|read] [-f] [-w WORKERS -i INSTANCE] URL
 *
 *   -c  concurrent requesters: nng REQ contexts, each with one message in
 *       flight (default 64)
 *   -d  seconds to run (default 5)
 *   -b  operations per NodeBatch message (default 1)
 *   -s  value size in bytes (default 1024)
 *   -k  key space: keys bench-00000000.. (default 100000); reads and
 *       writes pick uniformly random keys in it (fill it first for reads)
 *   -m  write (ReplicaSet, each a new stamp) or read (ReplicaGet)
 *   -f  first write every key of the key space once (not measured)
 *   -w, -i  the node's storage worker count and this worker's instance:
 *       only keys of this shard are used (default 1 and 0)
 *
 * Prints one line: messages and operations per second, latency per
 * message (p50, p99, max), and from the worker's NodeInfo before and after:
 * fsyncs, commits and operations per commit.  Every operation's result is
 * checked; a run with errors says so and exits 1.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "ring.h"
#include "wire.h"

struct requester {
    nng_ctx ctx;
    nng_aio *aio;
    int receiving;
    uint64_t started;           /* ns, of the message in flight */
    uint32_t *lat;              /* latencies in microseconds */
    size_t nlat, cap;
    unsigned seed;
    /* The batch being built; reused for every message. */
    Rzkv__NodeOp **ops;
    Rzkv__NodeOp *op;
    Rzkv__ReplicaGet *get;
    Rzkv__ReplicaSet *set;
    Rzkv__Entry *entry;
    Rzkv__Stamp *stamp;
    char (*keys)[32];
};

static struct {
    nng_socket sock;
    int conc, batch, write, workers, instance, fill;
    double secs;
    size_t value_size;
    long keyspace;
    uint8_t *value;
    long *shard_keys;           /* key numbers of this shard */
    long nshard_keys;
    uint64_t epoch;
    atomic_uint_fast64_t counter;
    uint64_t deadline;
    atomic_long msgs, ops, errors;
    atomic_int running;
    pthread_mutex_t lock;
    pthread_cond_t done;
    char first_error[256];
} b;

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
note_error(const char *what)
{
    if (atomic_fetch_add(&b.errors, 1) == 0) {
        pthread_mutex_lock(&b.lock);
        snprintf(b.first_error, sizeof(b.first_error), "%s", what);
        pthread_mutex_unlock(&b.lock);
    }
}

static void
finish(struct requester *r)
{
    (void)r;
    pthread_mutex_lock(&b.lock);
    if (atomic_fetch_sub(&b.running, 1) == 1)
        pthread_cond_signal(&b.done);
    pthread_mutex_unlock(&b.lock);
}

/* Uniformly random keys, for writes as for reads: pages all over. */
static long
pick_key(struct requester *r)
{
    return b.shard_keys[rand_r(&r->seed) % b.nshard_keys];
}

static void
send_next(struct requester *r)
{
    for (int i = 0; i < b.batch; i++) {
        snprintf(r->keys[i], sizeof(r->keys[i]), "bench-%08ld", pick_key(r));
        ProtobufCBinaryData key = { strlen(r->keys[i]),
                                    (uint8_t *)r->keys[i] };
        if (b.write) {
            r->stamp[i].epoch = b.epoch;
            r->stamp[i].counter = atomic_fetch_add(&b.counter, 1);
            r->entry[i].key = key;
        } else {
            r->get[i].key = key;
        }
    }
    Rzkv__NodeBatch nb = RZKV__NODE_BATCH__INIT;
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    nb.n_ops = (size_t)b.batch;
    nb.ops = r->ops;
    env.msg_case = RZKV__ENVELOPE__MSG_NODE;
    env.node = &nb;
    nng_msg *msg = wire_pack(&env.base);
    if (msg == NULL) {
        note_error("out of memory");
        finish(r);
        return;
    }
    r->receiving = 0;
    r->started = now_ns();
    nng_aio_set_msg(r->aio, msg);
    nng_ctx_send(r->ctx, r->aio);
}

static void
check_reply(nng_msg *msg)
{
    Rzkv__Reply *reply = wire_unpack_reply(msg);
    if (reply == NULL) {
        note_error("undecodable reply");
        return;
    }
    if (reply->status != RZKV__STATUS__OK ||
        reply->body_case != RZKV__REPLY__BODY_NODE ||
        reply->node->n_results != (size_t)b.batch) {
        char text[256];
        snprintf(text, sizeof(text), "reply %s %s",
                 wire_status_str(reply->status), reply->message);
        note_error(text);
    } else {
        for (size_t i = 0; i < reply->node->n_results; i++) {
            const Rzkv__NodeResult *res = reply->node->results[i];
            if (res->status != RZKV__STATUS__OK ||
                (!b.write && res->entry == NULL)) {
                char text[256];
                snprintf(text, sizeof(text), "op %s %s%s",
                         wire_status_str(res->status), res->message,
                         res->entry == NULL ? " (absent: write first)" : "");
                note_error(text);
            }
        }
    }
    rzkv__reply__free_unpacked(reply, NULL);
}

static void
requester_cb(void *arg)
{
    struct requester *r = arg;
    int rv = nng_aio_result(r->aio);

    if (rv != 0) {
        if (!r->receiving)
            nng_msg_free(nng_aio_get_msg(r->aio));
        note_error(nng_strerror(rv));
        finish(r);
        return;
    }
    if (!r->receiving) {
        r->receiving = 1;
        nng_ctx_recv(r->ctx, r->aio);
        return;
    }
    uint64_t t = now_ns();
    nng_msg *msg = nng_aio_get_msg(r->aio);
    check_reply(msg);
    nng_msg_free(msg);
    if (r->nlat == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 4096;
        r->lat = realloc(r->lat, r->cap * sizeof(*r->lat));
    }
    r->lat[r->nlat++] = (uint32_t)((t - r->started) / 1000);
    atomic_fetch_add(&b.msgs, 1);
    atomic_fetch_add(&b.ops, b.batch);
    if (t >= b.deadline)
        finish(r);
    else
        send_next(r);
}

static void
requester_init(struct requester *r, int i)
{
    int n = b.batch;
    r->seed = (unsigned)i * 7919u + 1;
    r->ops = calloc((size_t)n, sizeof(*r->ops));
    r->op = calloc((size_t)n, sizeof(*r->op));
    r->get = calloc((size_t)n, sizeof(*r->get));
    r->set = calloc((size_t)n, sizeof(*r->set));
    r->entry = calloc((size_t)n, sizeof(*r->entry));
    r->stamp = calloc((size_t)n, sizeof(*r->stamp));
    r->keys = calloc((size_t)n, sizeof(*r->keys));
    for (int j = 0; j < n; j++) {
        r->op[j] = (Rzkv__NodeOp)RZKV__NODE_OP__INIT;
        r->ops[j] = &r->op[j];
        if (b.write) {
            r->stamp[j] = (Rzkv__Stamp)RZKV__STAMP__INIT;
            r->stamp[j].writer.data = (uint8_t *)"bench/c0";
            r->stamp[j].writer.len = 8;
            r->entry[j] = (Rzkv__Entry)RZKV__ENTRY__INIT;
            r->entry[j].stamp = &r->stamp[j];
            r->entry[j].value.data = b.value;
            r->entry[j].value.len = b.value_size;
            r->set[j] = (Rzkv__ReplicaSet)RZKV__REPLICA_SET__INIT;
            r->set[j].entry = &r->entry[j];
            r->op[j].op_case = RZKV__NODE_OP__OP_SET;
            r->op[j].set = &r->set[j];
        } else {
            r->get[j] = (Rzkv__ReplicaGet)RZKV__REPLICA_GET__INIT;
            r->op[j].op_case = RZKV__NODE_OP__OP_GET;
            r->op[j].get = &r->get[j];
        }
    }
    if (nng_ctx_open(&r->ctx, b.sock) != 0 ||
        nng_aio_alloc(&r->aio, requester_cb, r) != 0) {
        fprintf(stderr, "storage_bench: nng context\n");
        exit(1);
    }
    nng_aio_set_timeout(r->aio, 30000);
}

/* One synchronous request; the reply or NULL. */
static Rzkv__Reply *
call(const Rzkv__Envelope *env)
{
    nng_ctx ctx;
    nng_aio *aio;
    Rzkv__Reply *reply = NULL;
    nng_msg *msg = wire_pack(&env->base);
    if (msg == NULL || nng_ctx_open(&ctx, b.sock) != 0)
        return NULL;
    if (nng_aio_alloc(&aio, NULL, NULL) == 0) {
        nng_aio_set_timeout(aio, 10000);
        nng_aio_set_msg(aio, msg);
        nng_ctx_send(ctx, aio);
        nng_aio_wait(aio);
        if (nng_aio_result(aio) == 0) {
            nng_ctx_recv(ctx, aio);
            nng_aio_wait(aio);
            if (nng_aio_result(aio) == 0) {
                msg = nng_aio_get_msg(aio);
                reply = wire_unpack_reply(msg);
            }
        }
        nng_msg_free(msg);
        nng_aio_free(aio);
    }
    nng_ctx_close(ctx);
    return reply;
}

struct info {
    uint64_t fsyncs, commits, ops;
    struct clock clock;
};

static int
get_info(struct info *out)
{
    Rzkv__NodeInfoRequest req = RZKV__NODE_INFO_REQUEST__INIT;
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    env.msg_case = RZKV__ENVELOPE__MSG_NODE_INFO;
    env.node_info = &req;
    Rzkv__Reply *r = call(&env);
    if (r == NULL || r->body_case != RZKV__REPLY__BODY_NODE_INFO ||
        r->node_info->n_workers != 1)
        return -1;
    const Rzkv__WorkerInfo *w = r->node_info->workers[0];
    out->fsyncs = w->fsyncs;
    out->commits = w->commits;
    out->ops = w->ops_committed;
    out->clock = wire_clock_view(w->clock);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

/* Write every key of this shard once, 256 to a message. */
static int
fill(void)
{
    enum { PER_MSG = 256 };
    static Rzkv__NodeOp op[PER_MSG], *ops[PER_MSG];
    static Rzkv__ReplicaSet set[PER_MSG];
    static Rzkv__Entry entry[PER_MSG];
    static Rzkv__Stamp stamp[PER_MSG];
    static char keys[PER_MSG][32];

    for (long first = 0; first < b.nshard_keys; first += PER_MSG) {
        size_t n = 0;
        for (long i = first; i < b.nshard_keys && n < PER_MSG; i++, n++) {
            snprintf(keys[n], sizeof(keys[n]), "bench-%08ld",
                     b.shard_keys[i]);
            stamp[n] = (Rzkv__Stamp)RZKV__STAMP__INIT;
            stamp[n].epoch = b.epoch;
            stamp[n].counter = atomic_fetch_add(&b.counter, 1);
            stamp[n].writer.data = (uint8_t *)"bench/c0";
            stamp[n].writer.len = 8;
            entry[n] = (Rzkv__Entry)RZKV__ENTRY__INIT;
            entry[n].key.data = (uint8_t *)keys[n];
            entry[n].key.len = strlen(keys[n]);
            entry[n].stamp = &stamp[n];
            entry[n].value.data = b.value;
            entry[n].value.len = b.value_size;
            set[n] = (Rzkv__ReplicaSet)RZKV__REPLICA_SET__INIT;
            set[n].entry = &entry[n];
            op[n] = (Rzkv__NodeOp)RZKV__NODE_OP__INIT;
            op[n].op_case = RZKV__NODE_OP__OP_SET;
            op[n].set = &set[n];
            ops[n] = &op[n];
        }
        Rzkv__NodeBatch nb = RZKV__NODE_BATCH__INIT;
        Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
        nb.n_ops = n;
        nb.ops = ops;
        env.msg_case = RZKV__ENVELOPE__MSG_NODE;
        env.node = &nb;
        Rzkv__Reply *r = call(&env);
        if (r == NULL || r->status != RZKV__STATUS__OK)
            return -1;
        rzkv__reply__free_unpacked(r, NULL);
    }
    return 0;
}

static int
cmp_u32(const void *a, const void *c)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)c;
    return x < y ? -1 : x > y;
}

static _Noreturn void
usage(void)
{
    fprintf(stderr, "usage: storage_bench [-c CONC] [-d SECS] [-b OPS] "
            "[-s BYTES] [-k KEYS] [-m write|read] [-f] [-w WORKERS -i INSTANCE] "
            "URL\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    int ch;
    b.conc = 64;
    b.secs = 5;
    b.batch = 1;
    b.value_size = 1024;
    b.keyspace = 100000;
    b.write = 1;
    b.workers = 1;
    while ((ch = getopt(argc, argv, "c:d:b:s:k:m:fw:i:")) != -1) {
        switch (ch) {
        case 'c': b.conc = atoi(optarg); break;
        case 'd': b.secs = atof(optarg); break;
        case 'b': b.batch = atoi(optarg); break;
        case 's': b.value_size = strtoul(optarg, NULL, 10); break;
        case 'k': b.keyspace = atol(optarg); break;
        case 'm': b.write = strcmp(optarg, "read") != 0; break;
        case 'f': b.fill = 1; break;
        case 'w': b.workers = atoi(optarg); break;
        case 'i': b.instance = atoi(optarg); break;
        default: usage();
        }
    }
    if (optind + 1 != argc || b.conc < 1 || b.batch < 1 || b.keyspace < 1 ||
        b.workers < 1 || b.instance < 0 || b.instance >= b.workers)
        usage();
}

int
main(int argc, char **argv)
{
    struct info before, after;
    int rv;

    parse_args(argc, argv);
    const char *url = argv[optind];
    b.value = malloc(b.value_size + 1);
    memset(b.value, 'v', b.value_size);
    b.shard_keys = malloc((size_t)b.keyspace * sizeof(long));
    for (long i = 0; i < b.keyspace; i++) {
        char key[32];
        snprintf(key, sizeof(key), "bench-%08ld", i);
        if (ring_shard(key, strlen(key), (unsigned)b.workers) ==
            (unsigned)b.instance)
            b.shard_keys[b.nshard_keys++] = i;
    }
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.done, NULL);
    if ((rv = nng_req0_open(&b.sock)) != 0 ||
        (rv = nng_dial(b.sock, url, NULL, 0)) != 0) {
        fprintf(stderr, "storage_bench: %s: %s\n", url, nng_strerror(rv));
        return 1;
    }
    nng_socket_set_size(b.sock, NNG_OPT_RECVMAXSZ, 0);
    if (get_info(&before) != 0) {
        fprintf(stderr, "storage_bench: no NodeInfo from %s\n", url);
        return 1;
    }
    /* Stamps above the worker's clock, so every write is applied. */
    b.epoch = before.clock.epoch;
    atomic_store(&b.counter, before.clock.counter + 1);
    if (b.fill) {
        if (fill() != 0) {
            fprintf(stderr, "storage_bench: filling the key space failed\n");
            return 1;
        }
        if (get_info(&before) != 0)
            return 1;
    }

    struct requester *rq = calloc((size_t)b.conc, sizeof(*rq));
    for (int i = 0; i < b.conc; i++)
        requester_init(&rq[i], i);
    uint64_t t0 = now_ns();
    b.deadline = t0 + (uint64_t)(b.secs * 1e9);
    atomic_store(&b.running, b.conc);
    for (int i = 0; i < b.conc; i++)
        send_next(&rq[i]);
    pthread_mutex_lock(&b.lock);
    while (atomic_load(&b.running) > 0)
        pthread_cond_wait(&b.done, &b.lock);
    pthread_mutex_unlock(&b.lock);
    double elapsed = (double)(now_ns() - t0) / 1e9;
    if (get_info(&after) != 0)
        memset(&after, 0, sizeof(after));

    size_t n = 0;
    for (int i = 0; i < b.conc; i++)
        n += rq[i].nlat;
    uint32_t *all = malloc((n ? n : 1) * sizeof(*all));
    n = 0;
    for (int i = 0; i < b.conc; i++) {
        memcpy(all + n, rq[i].lat, rq[i].nlat * sizeof(*all));
        n += rq[i].nlat;
    }
    qsort(all, n, sizeof(*all), cmp_u32);
    uint64_t commits = after.commits - before.commits;
    printf("mode=%s batch=%d conc=%d value=%zu secs=%.1f msgs/s=%.0f "
           "ops/s=%.0f p50=%uus p99=%uus max=%uus fsyncs/s=%.0f "
           "commits/s=%.0f ops/commit=%.1f errors=%ld\n",
           b.write ? "write" : "read", b.batch, b.conc, b.value_size, elapsed,
           (double)atomic_load(&b.msgs) / elapsed,
           (double)atomic_load(&b.ops) / elapsed,
           n ? all[n / 2] : 0, n ? all[n * 99 / 100] : 0, n ? all[n - 1] : 0,
           (double)(after.fsyncs - before.fsyncs) / elapsed,
           (double)commits / elapsed,
           commits ? (double)(after.ops - before.ops) / (double)commits : 0.0,
           atomic_load(&b.errors));
    if (atomic_load(&b.errors))
        printf("first error: %s\n", b.first_error);
    nng_close(b.sock);
    return atomic_load(&b.errors) ? 1 : 0;
}

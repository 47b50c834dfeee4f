/*
 * storage_client.c - talk to one storage worker over its Node API, for the
 * integration tests (t/integ/storage.sh).  Not installed.
 *
 *   storage_client [-t MS] [-e MS] URL COMMAND [ARGS...]
 *
 *   -e MS: set and del expire MS ms from now (ReplicaSet.expires_ms; a
 *   negative MS has expired already); without it they never expire.
 *
 *   set KEY VALUE EPOCH COUNTER [WRITER [NONCE]]  "applied=0|1 clock=E.C"
 *   del KEY EPOCH COUNTER [WRITER [NONCE]]        same, writes a tombstone
 *   get KEY               "absent" or "E.C WRITER NONCE value=V|tombstone"
 *   clock [KEY]           "E.C"
 *   clockset E C [KEY]    "E.C" (the clock after the raise)
 *   info                  "entries=N bytes=N epoch=N clock=E.C fsyncs=N
 *                          commits=N ops=N"
 *   health                "OK ok"
 *   list [START [END [HASH_START HASH_END [LIMIT [tombstones]]]]]
 *                         "KEY E.C [tombstone]" lines, then "next=KEY"
 *   raw HEX               send these bytes; "STATUS message"
 *   unknown               an empty Envelope; "STATUS message"
 *   cluster               a Cluster API request; "STATUS message"
 *   oversize BYTES        a NodeBatch Set whose value has BYTES bytes;
 *                         "STATUS message" or "no reply: ERROR"
 *   mget KEY...           one batch of gets; per operation "I absent",
 *                         "I STATUS message" or "I value=V" (V cut to 16
 *                         bytes) and "len=N"
 *   badops                one batch of bad operations and a good one;
 *                         "STATUS message" per operation
 *   load N PREFIX [CONC]  write PREFIX0..PREFIX(N-1) with CONC requesters;
 *                         "ack KEY E.C clock=E.C" as each is acknowledged,
 *                         then "done N"
 *   check FILE            get every key of FILE's ack lines; "checked=N
 *                         missing=M older=O"
 *
 * Exit status: 0 when a reply came (whatever its status), 1 when none came
 * or the command failed, 2 on usage errors.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "contract.h"
#include "wire.h"

static nng_socket sock;
static int timeout_ms = 5000;
static long long expires_in_ms;     /* -e; 0: no expiry */
static int expires_set;

static _Noreturn void
usage(void)
{
    fprintf(stderr, "usage: storage_client [-t MS] [-e MS] URL COMMAND [ARGS...] "
            "(see the source)\n");
    exit(2);
}

/* One request/reply on a fresh context; NULL (with a message) on error. */
static Rzkv__Reply *
call_bytes(const void *data, size_t len)
{
    nng_ctx ctx;
    nng_aio *aio;
    nng_msg *msg;
    int rv;

    if ((rv = nng_ctx_open(&ctx, sock)) != 0)
        goto fail;
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_ctx_close(ctx);
        goto fail;
    }
    if ((rv = nng_msg_alloc(&msg, len)) != 0)
        goto fail_aio;
    if (len)
        memcpy(nng_msg_body(msg), data, len);
    nng_aio_set_timeout(aio, timeout_ms);
    nng_aio_set_msg(aio, msg);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0) {
        nng_msg_free(msg);
        goto fail_aio;
    }
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) != 0)
        goto fail_aio;
    msg = nng_aio_get_msg(aio);
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    Rzkv__Reply *reply = wire_unpack_reply(msg);
    nng_msg_free(msg);
    if (reply == NULL)
        printf("no reply: undecodable reply\n");
    return reply;
fail_aio:
    nng_aio_free(aio);
    nng_ctx_close(ctx);
fail:
    printf("no reply: %s\n", nng_strerror(rv));
    return NULL;
}

static Rzkv__Reply *
call(const Rzkv__Envelope *env)
{
    size_t len = rzkv__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return NULL;
    rzkv__envelope__pack(env, buf);
    Rzkv__Reply *r = call_bytes(buf, len);
    free(buf);
    return r;
}

static void
print_status(const Rzkv__Reply *r)
{
    printf("%s %s\n", wire_status_str(r->status), r->message);
}

/* Send a batch of ops; the reply, checked to carry one result each. */
static Rzkv__Reply *
batch(Rzkv__NodeOp **ops, size_t n)
{
    Rzkv__NodeBatch b = RZKV__NODE_BATCH__INIT;
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    b.n_ops = n;
    b.ops = ops;
    env.msg_case = RZKV__ENVELOPE__MSG_NODE;
    env.node = &b;
    Rzkv__Reply *r = call(&env);
    if (r == NULL)
        return NULL;
    if (r->body_case != RZKV__REPLY__BODY_NODE || r->node->n_results != n) {
        print_status(r);
        printf("bad reply: not %zu results\n", n);
        rzkv__reply__free_unpacked(r, NULL);
        return NULL;
    }
    return r;
}

static ProtobufCBinaryData
bytes_of(const char *s)
{
    ProtobufCBinaryData b = { strlen(s), (uint8_t *)s };
    return b;
}

static void
print_result(const Rzkv__NodeResult *res)
{
    if (res->status != RZKV__STATUS__OK) {
        printf("%s %s\n", wire_status_str(res->status), res->message);
        return;
    }
    printf("applied=%d clock=%" PRIu64 ".%" PRIu64 "\n", res->applied,
           res->clock ? res->clock->epoch : 0,
           res->clock ? res->clock->counter : 0);
}

static int
cmd_set(int argc, char **argv, int tombstone)
{
    int base = tombstone ? 1 : 2;
    if (argc < base + 2)
        usage();
    Rzkv__Stamp stamp = RZKV__STAMP__INIT;
    Rzkv__Entry entry = RZKV__ENTRY__INIT;
    Rzkv__ReplicaSet set = RZKV__REPLICA_SET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
    stamp.epoch = strtoull(argv[base], NULL, 10);
    stamp.counter = strtoull(argv[base + 1], NULL, 10);
    stamp.writer = bytes_of(argc > base + 2 ? argv[base + 2] : "test/c0");
    stamp.nonce = argc > base + 3 ? strtoull(argv[base + 3], NULL, 10) : 0;
    entry.key = bytes_of(argv[0]);
    entry.stamp = &stamp;
    entry.tombstone = tombstone;
    if (!tombstone)
        entry.value = bytes_of(argv[1]);
    set.entry = &entry;
    if (expires_set)
        set.expires_ms = (uint64_t)((long long)wire_wall_ms() + expires_in_ms);
    op.op_case = RZKV__NODE_OP__OP_SET;
    op.set = &set;
    Rzkv__Reply *r = batch(ops, 1);
    if (r == NULL)
        return 1;
    print_result(r->node->results[0]);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static void
print_entry(const Rzkv__Entry *e)
{
    printf("%" PRIu64 ".%" PRIu64 " %.*s %" PRIu64 " ", e->stamp->epoch,
           e->stamp->counter, (int)e->stamp->writer.len,
           e->stamp->writer.data, e->stamp->nonce);
    if (e->tombstone)
        printf("tombstone\n");
    else
        printf("value=%.*s\n", (int)e->value.len, e->value.data);
}

static int
cmd_get(int argc, char **argv)
{
    if (argc < 1)
        usage();
    Rzkv__ReplicaGet get = RZKV__REPLICA_GET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
    get.key = bytes_of(argv[0]);
    op.op_case = RZKV__NODE_OP__OP_GET;
    op.get = &get;
    Rzkv__Reply *r = batch(ops, 1);
    if (r == NULL)
        return 1;
    const Rzkv__NodeResult *res = r->node->results[0];
    if (res->status != RZKV__STATUS__OK)
        printf("%s %s\n", wire_status_str(res->status), res->message);
    else if (res->entry == NULL)
        printf("absent\n");
    else
        print_entry(res->entry);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_clock(int argc, char **argv, int set)
{
    Rzkv__ClockGet get = RZKV__CLOCK_GET__INIT;
    Rzkv__ClockSet cs = RZKV__CLOCK_SET__INIT;
    Rzkv__Clock clock = RZKV__CLOCK__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
    if (set) {
        if (argc < 2)
            usage();
        clock.epoch = strtoull(argv[0], NULL, 10);
        clock.counter = strtoull(argv[1], NULL, 10);
        cs.clock = &clock;
        cs.key = bytes_of(argc > 2 ? argv[2] : "k");
        op.op_case = RZKV__NODE_OP__OP_CLOCK_SET;
        op.clock_set = &cs;
    } else {
        get.key = bytes_of(argc > 0 ? argv[0] : "k");
        op.op_case = RZKV__NODE_OP__OP_CLOCK_GET;
        op.clock_get = &get;
    }
    Rzkv__Reply *r = batch(ops, 1);
    if (r == NULL)
        return 1;
    const Rzkv__NodeResult *res = r->node->results[0];
    if (res->status != RZKV__STATUS__OK || res->clock == NULL)
        printf("%s %s\n", wire_status_str(res->status), res->message);
    else
        printf("%" PRIu64 ".%" PRIu64 "\n", res->clock->epoch,
               res->clock->counter);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_info(void)
{
    Rzkv__NodeInfoRequest req = RZKV__NODE_INFO_REQUEST__INIT;
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    env.msg_case = RZKV__ENVELOPE__MSG_NODE_INFO;
    env.node_info = &req;
    Rzkv__Reply *r = call(&env);
    if (r == NULL)
        return 1;
    if (r->body_case != RZKV__REPLY__BODY_NODE_INFO ||
        r->node_info->n_workers != 1) {
        print_status(r);
        rzkv__reply__free_unpacked(r, NULL);
        return 1;
    }
    const Rzkv__WorkerInfo *w = r->node_info->workers[0];
    printf("role=%s instance=%u entries=%" PRIu64 " bytes=%" PRIu64
           " epoch=%" PRIu64 " clock=%" PRIu64 ".%" PRIu64 " fsyncs=%" PRIu64
           " commits=%" PRIu64 " ops=%" PRIu64 "\n", w->role, w->instance,
           w->entries, w->bytes_on_disk, w->epoch,
           w->clock ? w->clock->epoch : 0, w->clock ? w->clock->counter : 0,
           w->fsyncs, w->commits, w->ops_committed);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_envelope(Rzkv__Envelope *env)
{
    Rzkv__Reply *r = call(env);
    if (r == NULL)
        return 1;
    print_status(r);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_list(int argc, char **argv)
{
    Rzkv__ListKeys lk = RZKV__LIST_KEYS__INIT;
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
    if (argc > 0)
        lk.start_key = bytes_of(argv[0]);
    if (argc > 1)
        lk.end_key = bytes_of(argv[1]);
    if (argc > 3) {
        lk.hash_start = strtoull(argv[2], NULL, 0);
        lk.hash_end = strtoull(argv[3], NULL, 0);
    }
    if (argc > 4)
        lk.limit = (uint32_t)strtoul(argv[4], NULL, 10);
    lk.include_tombstones = argc > 5;
    env.msg_case = RZKV__ENVELOPE__MSG_LIST_KEYS;
    env.list_keys = &lk;
    Rzkv__Reply *r = call(&env);
    if (r == NULL)
        return 1;
    if (r->body_case != RZKV__REPLY__BODY_LIST_KEYS) {
        print_status(r);
        rzkv__reply__free_unpacked(r, NULL);
        return 1;
    }
    for (size_t i = 0; i < r->list_keys->n_entries; i++) {
        const Rzkv__Entry *e = r->list_keys->entries[i];
        printf("%.*s %" PRIu64 ".%" PRIu64 "%s\n", (int)e->key.len,
               e->key.data, e->stamp->epoch, e->stamp->counter,
               e->tombstone ? " tombstone" : "");
    }
    printf("next=%.*s\n", (int)r->list_keys->next_key.len,
           r->list_keys->next_key.data);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_raw(const char *hex)
{
    size_t n = strlen(hex) / 2;
    uint8_t *buf = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &buf[i]);
    Rzkv__Reply *r = call_bytes(buf, n);
    free(buf);
    if (r == NULL)
        return 1;
    print_status(r);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_oversize(size_t size)
{
    char *value = malloc(size + 1);
    memset(value, 'x', size);
    value[size] = '\0';
    Rzkv__Stamp stamp = RZKV__STAMP__INIT;
    Rzkv__Entry entry = RZKV__ENTRY__INIT;
    Rzkv__ReplicaSet set = RZKV__REPLICA_SET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
    stamp.epoch = 1;
    stamp.counter = 1;
    entry.key = bytes_of("big");
    entry.stamp = &stamp;
    entry.value.data = (uint8_t *)value;
    entry.value.len = size;
    set.entry = &entry;
    op.op_case = RZKV__NODE_OP__OP_SET;
    op.set = &set;
    Rzkv__Reply *r = batch(ops, 1);
    free(value);
    if (r == NULL)
        return 1;
    print_result(r->node->results[0]);
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

/* Many gets in one batch: what a peer coordinator sends. */
static int
cmd_mget(int argc, char **argv)
{
    if (argc < 1)
        usage();
    Rzkv__ReplicaGet *get = calloc((size_t)argc, sizeof(*get));
    Rzkv__NodeOp *o = calloc((size_t)argc, sizeof(*o));
    Rzkv__NodeOp **ops = calloc((size_t)argc, sizeof(*ops));
    if (get == NULL || o == NULL || ops == NULL)
        return 1;
    for (int i = 0; i < argc; i++) {
        get[i] = (Rzkv__ReplicaGet)RZKV__REPLICA_GET__INIT;
        get[i].key = bytes_of(argv[i]);
        o[i] = (Rzkv__NodeOp)RZKV__NODE_OP__INIT;
        o[i].op_case = RZKV__NODE_OP__OP_GET;
        o[i].get = &get[i];
        ops[i] = &o[i];
    }
    Rzkv__Reply *r = batch(ops, (size_t)argc);
    free(ops);
    free(o);
    free(get);
    if (r == NULL)
        return 1;
    for (size_t i = 0; i < (size_t)argc; i++) {
        const Rzkv__NodeResult *res = r->node->results[i];
        if (res->status != RZKV__STATUS__OK)
            printf("%zu %s %s\n", i, wire_status_str(res->status),
                   res->message);
        else if (res->entry == NULL)
            printf("%zu absent\n", i);
        else
            printf("%zu value=%.*s len=%zu\n", i,
                   (int)(res->entry->value.len < 16 ? res->entry->value.len
                                                    : 16),
                   res->entry->value.data, res->entry->value.len);
    }
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

/* Bad operations around one good one; each gets its own status. */
static int
cmd_badops(void)
{
    static char longkey[RZKV_MAX_KEY + 2];
    memset(longkey, 'k', RZKV_MAX_KEY + 1);
    Rzkv__ReplicaGet g_empty = RZKV__REPLICA_GET__INIT;
    Rzkv__ReplicaGet g_long = RZKV__REPLICA_GET__INIT;
    Rzkv__ReplicaGet g_ok = RZKV__REPLICA_GET__INIT;
    Rzkv__Entry e_nostamp = RZKV__ENTRY__INIT;
    Rzkv__ReplicaSet s_nostamp = RZKV__REPLICA_SET__INIT;
    Rzkv__ReplicaSet s_noentry = RZKV__REPLICA_SET__INIT;
    Rzkv__ClockSet cs_noclock = RZKV__CLOCK_SET__INIT;
    Rzkv__NodeOp o[7];
    Rzkv__NodeOp *ops[7];
    for (int i = 0; i < 7; i++) {
        o[i] = (Rzkv__NodeOp)RZKV__NODE_OP__INIT;
        ops[i] = &o[i];
    }
    g_long.key = bytes_of(longkey);
    g_ok.key = bytes_of("k");
    e_nostamp.key = bytes_of("k");
    e_nostamp.value = bytes_of("v");
    s_nostamp.entry = &e_nostamp;
    cs_noclock.key = bytes_of("k");
    o[0].op_case = RZKV__NODE_OP__OP_GET; o[0].get = &g_empty;
    o[1].op_case = RZKV__NODE_OP__OP_GET; o[1].get = &g_long;
    o[2].op_case = RZKV__NODE_OP__OP_SET; o[2].set = &s_nostamp;
    o[3].op_case = RZKV__NODE_OP__OP_SET; o[3].set = &s_noentry;
    o[4].op_case = RZKV__NODE_OP__OP_CLOCK_SET; o[4].clock_set = &cs_noclock;
    /* o[5]: no operation set at all */
    o[6].op_case = RZKV__NODE_OP__OP_GET; o[6].get = &g_ok;
    Rzkv__Reply *r = batch(ops, 7);
    if (r == NULL)
        return 1;
    for (size_t i = 0; i < 7; i++) {
        const Rzkv__NodeResult *res = r->node->results[i];
        printf("%zu %s %s\n", i, wire_status_str(res->status), res->message);
    }
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

/* ---- load: concurrent writers, one line per acknowledged write -------- */

struct load {
    const char *prefix;
    long n;
    long next;
    uint64_t epoch, counter;
    long acked;
    pthread_mutex_t lock;
};

static void *
load_thread(void *arg)
{
    struct load *ld = arg;
    char key[256], value[64];

    for (;;) {
        pthread_mutex_lock(&ld->lock);
        long i = ld->next < ld->n ? ld->next++ : -1;
        pthread_mutex_unlock(&ld->lock);
        if (i < 0)
            return NULL;
        snprintf(key, sizeof(key), "%s%ld", ld->prefix, i);
        snprintf(value, sizeof(value), "value-%ld", i);
        Rzkv__Stamp stamp = RZKV__STAMP__INIT;
        Rzkv__Entry entry = RZKV__ENTRY__INIT;
        Rzkv__ReplicaSet set = RZKV__REPLICA_SET__INIT;
        Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
        stamp.epoch = ld->epoch;
        stamp.counter = ld->counter + 1 + (uint64_t)i;
        stamp.writer = bytes_of("load/c0");
        entry.key = bytes_of(key);
        entry.stamp = &stamp;
        entry.value = bytes_of(value);
        set.entry = &entry;
        op.op_case = RZKV__NODE_OP__OP_SET;
        op.set = &set;
        Rzkv__Reply *r = batch(ops, 1);
        if (r == NULL)
            return NULL;        /* the worker is gone: stop */
        const Rzkv__NodeResult *res = r->node->results[0];
        pthread_mutex_lock(&ld->lock);
        if (res->status == RZKV__STATUS__OK && res->applied && res->clock) {
            printf("ack %s %" PRIu64 ".%" PRIu64 " clock=%" PRIu64 ".%"
                   PRIu64 "\n", key, stamp.epoch, stamp.counter,
                   res->clock->epoch, res->clock->counter);
            fflush(stdout);
            ld->acked++;
        } else {
            printf("nack %s %s %s\n", key, wire_status_str(res->status),
                   res->message);
        }
        pthread_mutex_unlock(&ld->lock);
        rzkv__reply__free_unpacked(r, NULL);
    }
}

/* The worker's current clock, or -1. */
static int
get_clock(uint64_t *epoch, uint64_t *counter)
{
    Rzkv__ClockGet get = RZKV__CLOCK_GET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
    get.key = bytes_of("k");
    op.op_case = RZKV__NODE_OP__OP_CLOCK_GET;
    op.clock_get = &get;
    Rzkv__Reply *r = batch(ops, 1);
    if (r == NULL || r->node->results[0]->clock == NULL)
        return -1;
    *epoch = r->node->results[0]->clock->epoch;
    *counter = r->node->results[0]->clock->counter;
    rzkv__reply__free_unpacked(r, NULL);
    return 0;
}

static int
cmd_load(int argc, char **argv)
{
    if (argc < 2)
        usage();
    struct load ld = { .prefix = argv[1], .n = atol(argv[0]) };
    int conc = argc > 2 ? atoi(argv[2]) : 16;
    pthread_t th[256];
    if (conc < 1 || conc > 256)
        usage();
    pthread_mutex_init(&ld.lock, NULL);
    if (get_clock(&ld.epoch, &ld.counter) != 0)
        return 1;
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, load_thread, &ld);
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    printf("done %ld\n", ld.acked);
    return ld.acked == ld.n ? 0 : 1;
}

static int
cmd_check(const char *file)
{
    FILE *f = fopen(file, "r");
    char line[512], key[256];
    unsigned long long e, c;
    long checked = 0, missing = 0, older = 0;
    if (f == NULL) {
        perror(file);
        return 1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "ack %255s %llu.%llu", key, &e, &c) != 3)
            continue;
        Rzkv__ReplicaGet get = RZKV__REPLICA_GET__INIT;
        Rzkv__NodeOp op = RZKV__NODE_OP__INIT, *ops[1] = { &op };
        get.key = bytes_of(key);
        op.op_case = RZKV__NODE_OP__OP_GET;
        op.get = &get;
        Rzkv__Reply *r = batch(ops, 1);
        if (r == NULL)
            return 1;
        const Rzkv__Entry *en = r->node->results[0]->entry;
        checked++;
        if (en == NULL) {
            missing++;
            printf("missing %s\n", key);
        } else if (en->stamp->epoch < e ||
                   (en->stamp->epoch == e && en->stamp->counter < c)) {
            older++;
            printf("older %s\n", key);
        }
        rzkv__reply__free_unpacked(r, NULL);
    }
    fclose(f);
    printf("checked=%ld missing=%ld older=%ld\n", checked, missing, older);
    return 0;
}

int
main(int argc, char **argv)
{
    int ch, rv;
    while ((ch = getopt(argc, argv, "t:e:")) != -1) {
        if (ch == 't')
            timeout_ms = atoi(optarg);
        else if (ch == 'e') {
            expires_in_ms = atoll(optarg);
            expires_set = 1;
        } else
            usage();
    }
    argc -= optind;
    argv += optind;
    if (argc < 2)
        usage();
    if ((rv = nng_req0_open(&sock)) != 0 ||
        (rv = nng_dial(sock, argv[0], NULL, NNG_FLAG_NONBLOCK)) != 0) {
        fprintf(stderr, "storage_client: %s: %s\n", argv[0],
                nng_strerror(rv));
        return 1;
    }
    /* Larger replies than nng's default 1 MiB limit (listings). */
    nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 0);
    const char *cmd = argv[1];
    argc -= 2;
    argv += 2;
    int status;
    if (strcmp(cmd, "set") == 0)
        status = cmd_set(argc, argv, 0);
    else if (strcmp(cmd, "del") == 0)
        status = cmd_set(argc, argv, 1);
    else if (strcmp(cmd, "get") == 0)
        status = cmd_get(argc, argv);
    else if (strcmp(cmd, "clock") == 0)
        status = cmd_clock(argc, argv, 0);
    else if (strcmp(cmd, "clockset") == 0)
        status = cmd_clock(argc, argv, 1);
    else if (strcmp(cmd, "info") == 0)
        status = cmd_info();
    else if (strcmp(cmd, "health") == 0) {
        Rzkv__HealthRequest h = RZKV__HEALTH_REQUEST__INIT;
        Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
        env.msg_case = RZKV__ENVELOPE__MSG_HEALTH;
        env.health = &h;
        status = cmd_envelope(&env);
    } else if (strcmp(cmd, "unknown") == 0) {
        Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
        status = cmd_envelope(&env);
    } else if (strcmp(cmd, "cluster") == 0) {
        Rzkv__ClusterGet g = RZKV__CLUSTER_GET__INIT;
        Rzkv__ClusterRequest req = RZKV__CLUSTER_REQUEST__INIT;
        Rzkv__Envelope env = RZKV__ENVELOPE__INIT;
        g.key = bytes_of("k");
        req.op_case = RZKV__CLUSTER_REQUEST__OP_GET;
        req.get = &g;
        env.msg_case = RZKV__ENVELOPE__MSG_CLUSTER;
        env.cluster = &req;
        status = cmd_envelope(&env);
    } else if (strcmp(cmd, "list") == 0)
        status = cmd_list(argc, argv);
    else if (strcmp(cmd, "raw") == 0 && argc == 1)
        status = cmd_raw(argv[0]);
    else if (strcmp(cmd, "oversize") == 0 && argc == 1)
        status = cmd_oversize(strtoul(argv[0], NULL, 10));
    else if (strcmp(cmd, "mget") == 0)
        status = cmd_mget(argc, argv);
    else if (strcmp(cmd, "badops") == 0)
        status = cmd_badops();
    else if (strcmp(cmd, "load") == 0)
        status = cmd_load(argc, argv);
    else if (strcmp(cmd, "check") == 0 && argc == 1)
        status = cmd_check(argv[0]);
    else
        usage();
    fflush(stdout);
    /* No nng_close: nng 1.5.2's can hang for good on a connection that
     * broke with requests in flight (nanomsg/nng#1503), as after a kill
     * -9 of the worker under load; exit closes the socket. */
    return status;
}

/*
 * engine_bench.c - what one replica write costs the storage engine alone,
 * without messages: rzkv's SQLite shard (worker/store.c) against an
 * append-only log with an in-memory index, the shape of a log-structured
 * engine.  Figures, not a test; not installed.
 *
 *   engine_bench [-m store|log] [-n WRITES] [-k KEYS] [-s BYTES] [-g GROUP]
 *                DIR
 *
 *   -m  store: store_open/begin/apply/commit on DIR/engine.db, durability
 *       full, as a storage worker's writer thread does (default);
 *       log: each group appended to DIR/engine.log with one pwrite and
 *       one fdatasync, each key's newest offset and stamp in a hash table
 *   -n  measured writes (default 100000)
 *   -k  key space, bench-00000000.. (default 100000); every key is written
 *       once first (not measured), then writes pick keys uniformly
 *   -s  value size in bytes (default 1024)
 *   -g  writes per transaction, the group commit (default 15, what a
 *       storage worker commits under 64 clients)
 *
 * Prints writes/s, CPU a write (user and system, every thread of the
 * process: the checkpointer's too) and fdatasyncs.  The log model leaves
 * out what a real one needs: compaction (rewriting live values once the
 * log is mostly garbage, about one more write of each value) and
 * rebuilding the index at start.  So its figure is a lower bound on what
 * such an engine costs.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stamp.h"
#include "store.h"

#define KEY_LEN     14              /* "bench-%08d" */

static struct {
    const char *mode, *dir;
    long writes, keys, group;
    size_t value_size;
} opt = { "store", NULL, 100000, 100000, 15, 1024 };

static const uint8_t writer_id[16] = "engine-bench-id";

static void
die(const char *what, const char *why)
{
    fprintf(stderr, "engine_bench: %s%s%s\n", what, why ? ": " : "",
            why ? why : "");
    exit(1);
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* User and system CPU seconds of the whole process so far. */
static void
cpu_s(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
key_of(long i, char out[KEY_LEN + 1])
{
    snprintf(out, KEY_LEN + 1, "bench-%08ld", i);
}

/* ---- the SQLite shard ------------------------------------------------- */

static void
store_write_group(struct store *s, const long *key_ids, long n,
                  uint64_t *counter, uint8_t *value)
{
    if (store_begin(s) != 0)
        die("BEGIN", store_errmsg(s));
    for (long i = 0; i < n; i++) {
        char key[KEY_LEN + 1];
        int applied;
        key_of(key_ids[i], key);
        memcpy(value, counter, sizeof(*counter));
        struct store_entry e = {
            .key = (const uint8_t *)key, .key_len = KEY_LEN,
            .stamp = { .epoch = 1, .counter = ++*counter,
                       .writer = writer_id, .writer_len = sizeof(writer_id),
                       .nonce = *counter * 2654435761u },
            .value = value, .value_len = opt.value_size,
        };
        if (store_apply(s, &e, &applied) != 0 || !applied)
            die("apply", store_errmsg(s));
    }
    if (store_commit(s, (size_t)n) != 0)
        die("COMMIT", store_errmsg(s));
}

/* ---- the append-only log ---------------------------------------------- */

struct log_slot {
    long key_id;                /* -1: empty */
    uint64_t offset;
    uint64_t epoch, counter;
};

struct log_engine {
    int fd;
    uint64_t end;
    struct log_slot *table;
    size_t mask;
    uint8_t *buf;
    size_t cap;
    uint64_t fsyncs;
};

/* FNV-1a over the key's bytes: the engine hashes what it is given. */
static size_t
key_hash(const char *key)
{
    uint64_t h = 1469598103934665603u;
    for (const char *p = key; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    return (size_t)h;
}

static struct log_slot *
log_find(struct log_engine *l, long key_id, const char *key)
{
    size_t i = key_hash(key) & l->mask;
    while (l->table[i].key_id != -1 && l->table[i].key_id != key_id)
        i = (i + 1) & l->mask;
    return &l->table[i];
}

static void
log_write_group(struct log_engine *l, const long *key_ids, long n,
                uint64_t *counter, uint8_t *value)
{
    size_t rec = 4 + 4 + 8 + 8 + sizeof(writer_id) + 8 + KEY_LEN +
                 opt.value_size;
    size_t used = 0;

    if (l->cap < rec * (size_t)n) {
        l->cap = rec * (size_t)n;
        l->buf = realloc(l->buf, l->cap);
        if (l->buf == NULL)
            die("out of memory", NULL);
    }
    for (long i = 0; i < n; i++) {
        char key[KEY_LEN + 1];
        key_of(key_ids[i], key);
        struct log_slot *slot = log_find(l, key_ids[i], key);
        uint64_t c = ++*counter, epoch = 1;
        /* Apply-if-newer, as store_apply does. */
        if (slot->key_id != -1 && (slot->epoch > epoch ||
                                   (slot->epoch == epoch &&
                                    slot->counter >= c)))
            continue;
        memcpy(value, &c, sizeof(c));
        uint8_t *p = l->buf + used;
        uint32_t klen = KEY_LEN, vlen = (uint32_t)opt.value_size;
        uint64_t nonce = c * 2654435761u;
        memcpy(p, &klen, 4), p += 4;
        memcpy(p, &vlen, 4), p += 4;
        memcpy(p, &epoch, 8), p += 8;
        memcpy(p, &c, 8), p += 8;
        memcpy(p, writer_id, sizeof(writer_id)), p += sizeof(writer_id);
        memcpy(p, &nonce, 8), p += 8;
        memcpy(p, key, KEY_LEN), p += KEY_LEN;
        memcpy(p, value, opt.value_size);
        slot->key_id = key_ids[i];
        slot->offset = l->end + used;
        slot->epoch = epoch;
        slot->counter = c;
        used += rec;
    }
    for (size_t done = 0; done < used;) {
        ssize_t w = pwrite(l->fd, l->buf + done, used - done,
                           (off_t)(l->end + done));
        if (w < 0 && errno != EINTR)
            die("write", strerror(errno));
        if (w > 0)
            done += (size_t)w;
    }
    if (fdatasync(l->fd) != 0)
        die("fdatasync", strerror(errno));
    l->fsyncs++;
    l->end += used;
}

/* ---- main ------------------------------------------------------------- */

static void
usage(void)
{
    fprintf(stderr, "usage: engine_bench [-m store|log] [-n WRITES] "
            "[-k KEYS] [-s BYTES] [-g GROUP] DIR\n");
    exit(2);
}

static long
number(const char *s, long min)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min)
        usage();
    return v;
}

int
main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "m:n:k:s:g:")) != -1) {
        switch (ch) {
        case 'm': opt.mode = optarg; break;
        case 'n': opt.writes = number(optarg, 1); break;
        case 'k': opt.keys = number(optarg, 1); break;
        case 's': opt.value_size = (size_t)number(optarg, 8); break;
        case 'g': opt.group = number(optarg, 1); break;
        default: usage();
        }
    }
    if (optind != argc - 1)
        usage();
    opt.dir = argv[optind];
    int use_log = strcmp(opt.mode, "log") == 0;
    if (!use_log && strcmp(opt.mode, "store") != 0)
        usage();

    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/engine.%s", opt.dir,
             use_log ? "log" : "db");
    struct store *s = NULL;
    struct log_engine l = { .fd = -1 };
    if (use_log) {
        size_t size = 1;
        while (size < (size_t)opt.keys * 2)
            size <<= 1;
        l.table = malloc(size * sizeof(*l.table));
        if (l.table == NULL)
            die("out of memory", NULL);
        for (size_t i = 0; i < size; i++)
            l.table[i].key_id = -1;
        l.mask = size - 1;
        l.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (l.fd < 0)
            die(path, strerror(errno));
    } else {
        struct store_config cfg = { .path = path, .shard = 0,
                                    .shard_count = 1, .sync_full = 1 };
        if (store_open(&cfg, &s, err, sizeof(err)) != STORE_OK)
            die(err, NULL);
    }

    uint8_t *value = calloc(1, opt.value_size);
    long *ids = malloc((size_t)(opt.keys > opt.group ? opt.keys : opt.group)
                       * sizeof(*ids));
    if (value == NULL || ids == NULL)
        die("out of memory", NULL);
    for (size_t i = 0; i < opt.value_size; i++)
        value[i] = (uint8_t)(i * 131 + 7);
    uint64_t counter = 0;

    /* Every key once, in groups of 1000, not measured. */
    for (long k = 0; k < opt.keys; k += 1000) {
        long n = opt.keys - k < 1000 ? opt.keys - k : 1000;
        for (long i = 0; i < n; i++)
            ids[i] = k + i;
        if (use_log)
            log_write_group(&l, ids, n, &counter, value);
        else
            store_write_group(s, ids, n, &counter, value);
    }

    struct store_stats st0 = { 0 }, st1 = { 0 };
    uint64_t fsyncs0 = l.fsyncs;
    if (s != NULL)
        store_stats(s, &st0);
    unsigned seed = 12345;
    double u0, s0, u1, s1, t0 = now_s();
    cpu_s(&u0, &s0);
    for (long done = 0; done < opt.writes; done += opt.group) {
        long n = opt.writes - done < opt.group ? opt.writes - done
                                               : opt.group;
        for (long i = 0; i < n; i++)
            ids[i] = (long)(rand_r(&seed) % (unsigned)opt.keys);
        if (use_log)
            log_write_group(&l, ids, n, &counter, value);
        else
            store_write_group(s, ids, n, &counter, value);
    }
    double t1 = now_s();
    cpu_s(&u1, &s1);
    uint64_t fsyncs = l.fsyncs - fsyncs0;
    if (s != NULL) {
        store_stats(s, &st1);
        fsyncs = st1.fsyncs - st0.fsyncs;
    }
    printf("%s: %ld writes of %zu bytes in groups of %ld, %ld keys: "
           "%.0f writes/s, CPU a write %.1f us (user %.1f, system %.1f), "
           "%" PRIu64 " fdatasyncs\n", opt.mode, opt.writes, opt.value_size,
           opt.group, opt.keys, opt.writes / (t1 - t0),
           ((u1 - u0) + (s1 - s0)) * 1e6 / opt.writes,
           (u1 - u0) * 1e6 / opt.writes, (s1 - s0) * 1e6 / opt.writes,
           fsyncs);

    if (s != NULL)
        store_close(s);
    if (l.fd >= 0)
        close(l.fd);
    free(l.table);
    free(l.buf);
    free(value);
    free(ids);
    return 0;
}

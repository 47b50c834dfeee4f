/*
 * metrics.c - the counters file of a worker (metrics.h): opening it on
 * the worker side, mapping it on the supervisor side, and the few
 * functions the request path calls (histogram buckets, request counts).
 *
 * Nothing here takes a lock or makes a system call once the file is
 * open: an observation is a bucket search over a dozen constants and two
 * relaxed atomic adds.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

const char *const metrics_api_names[MAPI_COUNT] = {
    "cluster", "node", "health", "unknown",
};
const char *const metrics_op_names[MOP_COUNT] = {
    "get", "set", "del", "info", "batch", "list_keys", "health", "unknown",
};
const char *const metrics_result_names[METRICS_RESULTS] = {
    "OK", "NOT_FOUND", "UNAVAILABLE", "UNKNOWN", "INVALID", "INTERNAL",
    "UNSUPPORTED", "TOO_LARGE", "STOPPING", "OTHER",
};
const char *const metrics_storage_op_names[MSOP_COUNT] = {
    "get", "set", "clock_get", "clock_set", "purge",
};
const char *const metrics_dest_names[MDEST_COUNT] = { "local", "peer" };

const uint64_t metrics_lat_bounds_ns[METRICS_LAT_BOUNDS] = {
    50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000,
    1000000000, 2500000000, 5000000000, 10000000000,
};
const char *const metrics_lat_bounds_text[METRICS_LAT_BOUNDS] = {
    "5e-05", "0.0001", "0.00025", "0.0005",
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5",
    "1", "2.5", "5", "10",
};
const uint64_t metrics_size_bounds[METRICS_SIZE_BOUNDS] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
};
const char *const metrics_size_bounds_text[METRICS_SIZE_BOUNDS] = {
    "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024",
    "2048", "4096",
};

/* Counts go here until metrics_open() succeeds, or if it fails. */
static struct metrics_file private_block;
struct metrics_file *metrics = &private_block;

uint64_t
metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
metrics_lat_observe(struct metrics_lat_hist *h, uint64_t ns, uint64_t n)
{
    unsigned b = 0;
    while (b < METRICS_LAT_BOUNDS && ns > metrics_lat_bounds_ns[b])
        b++;
    metrics_add(&h->bucket[b], n);
    metrics_add(&h->sum_ns, ns * n);
}

void
metrics_size_observe(struct metrics_size_hist *h, uint64_t v)
{
    unsigned b = 0;
    while (b < METRICS_SIZE_BOUNDS && v > metrics_size_bounds[b])
        b++;
    metrics_add(&h->bucket[b], 1);
    metrics_add(&h->sum, v);
}

void
metrics_request_done(enum metrics_api api, enum metrics_op op,
                     uint64_t status, uint64_t start_ns)
{
    struct metrics_coord *c = &metrics->u.coord;
    uint64_t now = metrics_now_ns();

    if ((unsigned)api >= MAPI_COUNT || (unsigned)op >= MOP_COUNT)
        return;
    metrics_add(&c->requests[api][op][metrics_result_index(status)], 1);
    metrics_lat_observe(&c->duration[api][op],
                        now > start_ns ? now - start_ns : 0, 1);
    if (api == MAPI_CLUSTER && status == 3)     /* rzkv.Status UNKNOWN */
        metrics_add(&c->unknown_outcomes, 1);
}

/* ---- peers: a sequence count around each change of id ------------------- */

void
metrics_peer_set(size_t index, const char *id, int connected)
{
    if (index >= METRICS_MAX_PEERS)
        return;
    struct metrics_peer *p = &metrics->u.coord.peers[index];
    size_t len = strnlen(id, METRICS_PEER_ID - 1);
    if (p->id_len != len || memcmp(p->id, id, len) != 0) {
        uint32_t seq = atomic_load_explicit(&p->seq, memory_order_relaxed);
        atomic_store_explicit(&p->seq, seq + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        memcpy(p->id, id, len);
        p->id[len] = '\0';
        p->id_len = (uint32_t)len;
        atomic_store_explicit(&p->seq, seq + 2, memory_order_release);
    }
    metrics_set(&p->connected, connected ? 1 : 0);
}

void
metrics_peers_count(size_t n)
{
    metrics_set(&metrics->u.coord.npeers,
                n < METRICS_MAX_PEERS ? n : METRICS_MAX_PEERS);
}

int
metrics_peer_read(const struct metrics_coord *c, size_t i, char *id,
                  size_t idlen, int *connected)
{
    if (i >= metrics_get(&c->npeers) || i >= METRICS_MAX_PEERS || idlen == 0)
        return -1;
    struct metrics_peer *p = (struct metrics_peer *)&c->peers[i];
    for (int tries = 0; tries < 100; tries++) {
        uint32_t s1 = atomic_load_explicit(&p->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        uint32_t len = p->id_len < METRICS_PEER_ID ? p->id_len
                                                   : METRICS_PEER_ID - 1;
        if (len >= idlen)
            len = (uint32_t)idlen - 1;
        memcpy(id, p->id, len);
        id[len] = '\0';
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->seq, memory_order_relaxed) == s1) {
            *connected = metrics_get(&p->connected) != 0;
            return 0;
        }
    }
    return -1;
}

/* ---- the worker side: open or create the file --------------------------- */

static int
role_code(const char *role)
{
    return strcmp(role, "storage") == 0 ? MROLE_STORAGE : MROLE_COORD;
}

/* Gauges describe the process, not the slot: a new process starts them
 * at zero. */
static void
reset_gauges(struct metrics_file *f)
{
    if (f->role == MROLE_COORD) {
        metrics_set(&f->u.coord.inflight, 0);
        metrics_set(&f->u.coord.npeers, 0);
        for (size_t i = 0; i < METRICS_MAX_PEERS; i++)
            metrics_set(&f->u.coord.peers[i].connected, 0);
    } else {
        metrics_set(&f->u.storage.entries, 0);
        metrics_set(&f->u.storage.epoch, 0);
    }
}

/* mkdir -p, for a worker run by hand before anything made run_dir. */
static int
make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return -1;
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}

static int
layout_ok(const struct metrics_file *f, uint32_t role, int instance)
{
    return f->magic == METRICS_MAGIC && f->version == METRICS_VERSION &&
           f->size == sizeof(*f) && f->role == role &&
           f->instance == instance;
}

int
metrics_open(const char *run_dir, const char *role, int instance)
{
    char dir[4096], path[4096];
    uint32_t code = (uint32_t)role_code(role);

    snprintf(dir, sizeof(dir), "%s/%s", run_dir, METRICS_DIR);
    snprintf(path, sizeof(path), METRICS_PATH_FMT, run_dir, role, instance);
    if (make_dirs(dir) != 0) {
        log_warn("metrics: cannot create %s; serving without metrics", dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_warn("metrics: cannot open %s; serving without metrics", path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int fresh = (size_t)st.st_size != sizeof(struct metrics_file);
    /* Only ever resized to this layout's size: a reader maps a file of
     * exactly that size, so it never touches a page beyond the end. */
    if (fresh && ftruncate(fd, sizeof(struct metrics_file)) != 0) {
        log_warn("metrics: cannot size %s; serving without metrics", path);
        close(fd);
        return -1;
    }
    struct metrics_file *f = mmap(NULL, sizeof(*f), PROT_READ | PROT_WRITE,
                                  MAP_SHARED, fd, 0);
    close(fd);
    if (f == MAP_FAILED) {
        log_warn("metrics: cannot map %s; serving without metrics", path);
        return -1;
    }
    if (fresh || !layout_ok(f, code, instance)) {
        /* Not ours (another version, a torn first start): start over.
         * Readers check the magic, which goes in last. */
        f->magic = 0;
        atomic_thread_fence(memory_order_seq_cst);
        memset((char *)f + sizeof(f->magic), 0, sizeof(*f) - sizeof(f->magic));
        f->version = METRICS_VERSION;
        f->size = sizeof(*f);
        f->role = code;
        f->instance = instance;
        atomic_thread_fence(memory_order_release);
        f->magic = METRICS_MAGIC;
    }
    reset_gauges(f);
    metrics_set(&f->pid, (uint64_t)getpid());
    metrics_add(&f->opens, 1);
    metrics = f;
    return 0;
}

/* ---- the reader side ---------------------------------------------------- */

const struct metrics_file *
metrics_map(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 ||
        (size_t)st.st_size != sizeof(struct metrics_file)) {
        close(fd);
        return NULL;
    }
    const struct metrics_file *f = mmap(NULL, sizeof(*f), PROT_READ,
                                        MAP_SHARED, fd, 0);
    close(fd);
    if (f == MAP_FAILED)
        return NULL;
    if (f->magic != METRICS_MAGIC || f->version != METRICS_VERSION ||
        f->size != sizeof(*f)) {
        munmap((void *)f, sizeof(*f));
        return NULL;
    }
    return f;
}

void
metrics_unmap(const struct metrics_file *f)
{
    if (f != NULL)
        munmap((void *)f, sizeof(*f));
}

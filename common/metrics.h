/*
 * metrics.h - the counters a worker shares with its supervisor.
 *
 * Every worker keeps its counters in a file of its own under the run
 * directory, RUN_DIR/metrics/ROLE-INSTANCE.shm (METRICS_PATH_FMT), mapped
 * MAP_SHARED: a header, then the role's block of _Atomic uint64_t
 * counters, gauges and fixed-bucket histograms.  The request path only
 * adds to them with relaxed atomics: no lock, no system call, no message.
 * The supervisor maps the same files read-only when /metrics or /health
 * is asked for, or rzkvctl status (supervisor/sup_metrics.c).
 *
 * A restarted worker re-opens the file of its slot and keeps adding, so
 * counters stay monotonic across worker restarts; it resets only the
 * gauges (in flight, peers connected, entries).  A new rzkvd starts every
 * file afresh (a counter reset, which Prometheus expects of a restart).
 * A file whose header does not match this layout (another version) is
 * zeroed and started over.
 *
 * Histograms keep one count per bucket, not cumulative: an observation
 * adds to exactly one bucket, and whoever reads turns them into
 * Prometheus's cumulative buckets, so _count always equals the +Inf
 * bucket.  Durations are summed in nanoseconds.
 *
 * The layout is an ABI between the supervisor and the workers of the same
 * binary only (a node runs one binary: sup_spawn.c execs /proc/self/exe
 * as read at start), so it may change freely with METRICS_VERSION.
 */
#ifndef RZKV_METRICS_H
#define RZKV_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_DIR         "metrics"       /* under node.run_dir */
#define METRICS_PATH_FMT    "%s/" METRICS_DIR "/%s-%d.shm"
#define METRICS_MAGIC       UINT32_C(0x4d4b5a52)    /* "RZKM" */
#define METRICS_VERSION     8

typedef _Atomic uint64_t metrics_counter;

/* ---- label values ------------------------------------------------------- */

/* Requests by API, as a coordinator receives them. */
enum metrics_api {
    MAPI_CLUSTER = 0,
    MAPI_NODE,
    MAPI_HEALTH,
    MAPI_UNKNOWN,               /* undecodable or of no known type */
    MAPI_COUNT,
};

/* Operations; COP_GET/SET/DEL of coord_cluster.c map onto the first 3. */
enum metrics_op {
    MOP_GET = 0,
    MOP_SET,
    MOP_DEL,
    MOP_INFO,
    MOP_BATCH,
    MOP_LIST_KEYS,
    MOP_HEALTH,
    MOP_UNKNOWN,
    MOP_COUNT,
};

/* Results: rzkv.Status 0..8 (api/rzkv.proto), then any other value. */
#define METRICS_RESULTS     10
#define METRICS_RESULT_OTHER (METRICS_RESULTS - 1)

/* Replica operations, as a storage worker applies them. */
enum metrics_storage_op {
    MSOP_GET = 0,
    MSOP_SET,
    MSOP_CLOCK_GET,
    MSOP_CLOCK_SET,
    MSOP_PURGE,
    MSOP_COUNT,
};

enum metrics_dest {
    MDEST_LOCAL = 0,            /* a storage worker of this node */
    MDEST_PEER,                 /* another node */
    MDEST_COUNT,
};

extern const char *const metrics_api_names[MAPI_COUNT];
extern const char *const metrics_op_names[MOP_COUNT];
extern const char *const metrics_result_names[METRICS_RESULTS];
extern const char *const metrics_storage_op_names[MSOP_COUNT];
extern const char *const metrics_dest_names[MDEST_COUNT];

/* ---- histograms --------------------------------------------------------- */

/* Durations: 50 us .. 10 s (upper bounds, seconds), then +Inf. */
#define METRICS_LAT_BOUNDS  17
extern const uint64_t metrics_lat_bounds_ns[METRICS_LAT_BOUNDS];
extern const char *const metrics_lat_bounds_text[METRICS_LAT_BOUNDS];

/* Sizes (operations per message or per commit): 1, 2, 4 .. 4096, +Inf. */
#define METRICS_SIZE_BOUNDS 13
extern const uint64_t metrics_size_bounds[METRICS_SIZE_BOUNDS];
extern const char *const metrics_size_bounds_text[METRICS_SIZE_BOUNDS];

struct metrics_lat_hist {
    metrics_counter bucket[METRICS_LAT_BOUNDS + 1];  /* last: +Inf only */
    metrics_counter sum_ns;
};

struct metrics_size_hist {
    metrics_counter bucket[METRICS_SIZE_BOUNDS + 1];
    metrics_counter sum;
};

/* ---- the blocks --------------------------------------------------------- */

#define METRICS_MAX_PEERS   64
#define METRICS_PEER_ID     256         /* node ids are 1..255 bytes */

/*
 * One peer as a coordinator sees it.  Written by the coordinator's tick
 * thread only; the id under a sequence count (odd while it changes), so a
 * reader never takes half of one id for another.
 */
struct metrics_peer {
    _Atomic uint32_t seq;
    uint32_t id_len;
    char id[METRICS_PEER_ID];
    metrics_counter connected;          /* gauge: 1 if a pipe is up */
};

struct metrics_coord {
    metrics_counter requests[MAPI_COUNT][MOP_COUNT][METRICS_RESULTS];
    struct metrics_lat_hist duration[MAPI_COUNT][MOP_COUNT];
    metrics_counter quorum_failures[3];             /* get, set, del */
    metrics_counter unknown_outcomes;
    metrics_counter read_repairs;
    metrics_counter antientropy_passes;             /* completed passes */
    metrics_counter antientropy_keys;               /* local keys compared */
    metrics_counter antientropy_pushed;             /* copies a replica
                                                     * stored, either way */
    metrics_counter antientropy_failures;           /* listings or copies
                                                     * that failed */
    metrics_counter antientropy_purged;             /* tombstones removed
                                                     * from a replica */
    metrics_counter antientropy_last_pass_ms;       /* gauge: wall clock
                                                     * (Unix ms) at the end
                                                     * of the last complete
                                                     * pass; 0: none */
    metrics_counter antientropy_clean_pass_ms;      /* gauge: wall clock
                                                     * (Unix ms) at the
                                                     * start of the last
                                                     * pass that ended with
                                                     * no failure; 0: none */
    metrics_counter membership_change_ms;           /* gauge: wall clock
                                                     * (Unix ms) since
                                                     * which its cluster
                                                     * file has nodes
                                                     * joining or leaving;
                                                     * 0: none */
    metrics_counter antientropy_tombstones_kept;    /* gauge: tombstones
                                                     * the last complete
                                                     * pass judged and did
                                                     * not purge (yet) */
    struct metrics_size_hist batch_ops;             /* per NodeBatch sent */
    metrics_counter batch_messages[MDEST_COUNT];
    metrics_counter inflight;                       /* gauge */
    metrics_counter npeers;                         /* gauge: peers[] used */
    struct metrics_peer peers[METRICS_MAX_PEERS];
};

struct metrics_storage {
    struct metrics_lat_hist op_duration[MSOP_COUNT];
    struct metrics_size_hist group_commit_ops;
    struct metrics_lat_hist commit_duration;        /* COMMIT, its WAL
                                                     * write and fsync */
    metrics_counter commits;
    metrics_counter fsyncs;
    metrics_counter checkpoints;                    /* as of the last
                                                     * commit */
    metrics_counter wal_restarts;
    metrics_counter commit_failures;
    metrics_counter writes_expired;                 /* refused: arrived
                                                     * past expires_ms */
    metrics_counter entries;                        /* gauge */
    metrics_counter epoch;                          /* gauge */
};

enum metrics_role {
    MROLE_STORAGE = 1,
    MROLE_COORD = 2,
};

struct metrics_file {
    uint32_t magic;             /* METRICS_MAGIC, written last */
    uint32_t version;
    uint32_t size;              /* sizeof(struct metrics_file) */
    uint32_t role;              /* enum metrics_role */
    int32_t instance;
    uint32_t reserved;
    metrics_counter pid;        /* of the process that opened it last */
    metrics_counter opens;      /* processes that opened it: starts */
    union {
        struct metrics_coord coord;
        struct metrics_storage storage;
    } u;
};

/* ---- the worker side ---------------------------------------------------- */

/*
 * This process's block.  Until metrics_open() it points at a private
 * block, so the hooks never need to check for NULL.
 */
extern struct metrics_file *metrics;

/*
 * Map RUN_DIR/metrics/ROLE-INSTANCE.shm (creating the directory and the
 * file if needed), keep its counters, reset its gauges, and point
 * `metrics` at it.  A failure is logged and leaves the private block in
 * place: a worker serves without metrics rather than not at all.
 * 0 or -1.
 */
int metrics_open(const char *run_dir, const char *role, int instance);

static inline void
metrics_add(metrics_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void
metrics_sub(metrics_counter *c, uint64_t n)
{
    atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

static inline void
metrics_set(metrics_counter *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline uint64_t
metrics_get(const metrics_counter *c)
{
    return atomic_load_explicit((metrics_counter *)c, memory_order_relaxed);
}

/* Monotonic nanoseconds (clock_gettime, answered by the vDSO). */
uint64_t metrics_now_ns(void);

/* n observations of ns nanoseconds each. */
void metrics_lat_observe(struct metrics_lat_hist *h, uint64_t ns,
                         uint64_t n);
void metrics_size_observe(struct metrics_size_hist *h, uint64_t v);

/* rzkv.Status -> index into requests[][][] (unknown values: OTHER). */
static inline unsigned
metrics_result_index(uint64_t status)
{
    return status < METRICS_RESULT_OTHER ? (unsigned)status
                                         : METRICS_RESULT_OTHER;
}

/* A request answered: count it and its duration since start_ns. */
void metrics_request_done(enum metrics_api api, enum metrics_op op,
                          uint64_t status, uint64_t start_ns);

/* Publish the peers a coordinator sees (gauges; the tick thread only). */
void metrics_peer_set(size_t index, const char *id, int connected);
void metrics_peers_count(size_t n);

/* ---- the reader side ---------------------------------------------------- */

/*
 * Map a worker's file read-only; NULL if it is missing or not of this
 * layout.  Release with metrics_unmap().
 */
const struct metrics_file *metrics_map(const char *path);
void metrics_unmap(const struct metrics_file *f);

/* Copy peer i's id (NUL-terminated) consistently; 0, or -1 if unused. */
int metrics_peer_read(const struct metrics_coord *c, size_t i, char *id,
                      size_t idlen, int *connected);

#endif

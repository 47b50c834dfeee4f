/*
 * cmd_bench.c - rzkvctl bench: a load generator for an rzkv cluster, in
 * the spirit of redis-benchmark and ghz, built on librzkv.
 *
 * Requests go through librzkv's _async calls, so that a few library
 * threads keep all -c requests in flight: a thread per request making
 * synchronous calls cost the client twice the CPU per request, and the
 * bench shares the machine with the cluster it measures.  The -c slots
 * share a few client handles (one per address by default, each preferring
 * its own address, so load is spread round-robin over the nodes and still
 * fails over).
 *
 * Closed loop (default): each slot has one request in flight; its
 * callback records it and submits the slot's next.  Open loop (--rps R):
 * request i is due at t0 + i/R; the main thread sends it then on an idle
 * slot (waiting for one if all -c are in flight), and its latency is
 * measured from that intended time, not from when it was sent, so a stall
 * that delays later requests shows in their latency (no coordinated
 * omission).  A request the library refuses outright counts as an error
 * and its slot pauses before the next (RETRY_NS).
 *
 * Callbacks run on several library threads, but a slot has one request
 * at a time, so each slot records into its own histograms (hdr.h): a
 * total one, read after rzkv_wait, and a per-second one that a reporter
 * thread swaps out under a mutex only it contends for; the reporter draws
 * the progress line and writes the --csv-timeline rows.  Requests issued
 * during --warmup count in neither the figures nor -n.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_util.h"
#include "hdr.h"
#include "keydist.h"

#define CMD                 "bench"
#define NSTATUS             (RZKV_ERROR + 1)
#define NS_PER_SEC          1000000000ull
#define DEFAULT_DURATION    10.0
#define DEFAULT_CONCURRENCY 16
#define DEFAULT_VALUE_SIZE  1024
#define DEFAULT_KEYS        100000
#define MAX_CONCURRENCY     4096
#define MAX_VALUE_SIZE      (64ul << 20)
#define ZIPF_EXPONENT       0.99
#define KEY_MAX             256
/* The main thread looks at the clock and ^C at least this often. */
#define POLL_NS             (100 * 1000 * 1000ull)
/* Pause before a slot whose request the library refused tries again. */
#define RETRY_NS            (10 * 1000 * 1000ull)

enum bench_op { OP_SET, OP_GET, OP_DEL, OP_MIX, OP_HEALTH };

struct bench_conf {
    struct ctl_client_opts client;  /* -a, --consistency, -t, -j */
    unsigned concurrency;
    uint64_t requests;              /* -n; 0: run for duration */
    double duration;                /* seconds */
    double rps;                     /* 0: closed loop */
    enum bench_op op;
    char op_name[32];
    double read_fraction;           /* mix:R/W */
    size_t value_size;
    uint64_t keys;
    bool zipf;
    double warmup;
    bool prefill;
    bool progress;
    unsigned connections;           /* client handles; 0: one per address */
    const char *key_prefix;
    const char *timeline_path;
    uint64_t seed;
};

/* One request in flight at a time, and what its requests measured. */
struct slot {
    struct bench *b;
    rzkv_client *client;
    struct rng rng;
    char *value;
    /* The request in flight: set before it is submitted, read by its
     * callback; the library orders the two. */
    uint64_t due;                   /* latency counts from here */
    bool measured;                  /* after the warmup */
    struct slot *next;              /* on the parked or idle list */
    uint64_t retry_at;              /* parked: when to submit again */
    /* Swapped out by the reporter once a second. */
    pthread_mutex_t lock;
    struct hdr *tick;
    uint64_t tick_counts[NSTATUS];
    /* Measured requests only; read once every callback has returned. */
    struct hdr *total;
    uint64_t total_counts[NSTATUS];
    uint64_t last_done;
    uint64_t all_requests;          /* warmup included */
};

struct bench {
    const struct bench_conf *conf;
    size_t key_prefix_len;
    struct zipf zipf;
    rzkv_req req;
    uint64_t t0, warm_end, end;     /* monotonic ns; end 0: run for -n */
    atomic_uint_fast64_t sequence;  /* open loop: next due request */
    atomic_uint_fast64_t tickets;   /* -n: measured requests handed out */
    atomic_uint_fast64_t prefilled; /* prefill: next key */
    struct slot *slots;
    atomic_uint live;               /* slots still sending */
    /* The main thread waits here for parked slots, idle slots (open
     * loop) and the end of the run. */
    pthread_mutex_t drive_lock;
    pthread_cond_t drive_cond;
    struct slot *parked;            /* the library refused their request */
    struct slot *idle;              /* open loop: none in flight */
    uint64_t next_line;             /* prefill: of the progress line */
    rzkv_client **clients;
    unsigned nclients;
    atomic_bool have_error;         /* the first failure, for the report */
    pthread_mutex_t error_lock;
    rzkv_error first_error;
    /* The reporter thread. */
    pthread_t reporter;
    pthread_mutex_t report_lock;
    pthread_cond_t report_cond;
    bool report_done;
    FILE *timeline;
    struct rusage usage_at_warm_end;
    bool have_usage;
    struct hdr *so_far;             /* measured, for the progress line */
    uint64_t so_far_counts[NSTATUS];
    /* The timeline's last row, held back one tick (see timeline_row). */
    struct hdr *row;
    uint64_t row_counts[NSTATUS];
    uint64_t row_end;
};

static volatile sig_atomic_t interrupted;

/* ---- small helpers ------------------------------------------------------- */

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void
sleep_until(uint64_t when)
{
    struct timespec ts = { (time_t)(when / NS_PER_SEC),
                           (long)(when % NS_PER_SEC) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static double
ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static bool
is_error(int status)
{
    return status != RZKV_OK && status != RZKV_NOT_FOUND;
}

static double
cpu_seconds(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 +
           (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

static void
on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- options ------------------------------------------------------------- */

enum {
    OPT_CONSISTENCY = 1000, OPT_DIST, OPT_PREFILL, OPT_CSV, OPT_KEY_PREFIX,
    OPT_CONNECTIONS, OPT_SEED, OPT_NO_PROGRESS,
};

static const struct option bench_longopts[] = {
    { "address", required_argument, NULL, 'a' },
    { "timeout", required_argument, NULL, 't' },
    { "json", no_argument, NULL, 'j' },
    { "consistency", required_argument, NULL, OPT_CONSISTENCY },
    { "concurrency", required_argument, NULL, 'c' },
    { "requests", required_argument, NULL, 'n' },
    { "duration", required_argument, NULL, 'd' },
    { "rps", required_argument, NULL, 'r' },
    { "op", required_argument, NULL, 'o' },
    { "value-size", required_argument, NULL, 's' },
    { "keys", required_argument, NULL, 'k' },
    { "dist", required_argument, NULL, OPT_DIST },
    { "warmup", required_argument, NULL, 'w' },
    { "prefill", no_argument, NULL, OPT_PREFILL },
    { "csv-timeline", required_argument, NULL, OPT_CSV },
    { "key-prefix", required_argument, NULL, OPT_KEY_PREFIX },
    { "connections", required_argument, NULL, OPT_CONNECTIONS },
    { "seed", required_argument, NULL, OPT_SEED },
    { "no-progress", no_argument, NULL, OPT_NO_PROGRESS },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

#define BENCH_SYNOPSIS \
    "bench [-a ADDR[,ADDR...]] [-c N] [-n N | -d SECONDS] [--rps R]\n" \
    "               [--op set|get|del|mix:R/W|health] [OPTIONS]"

static void
print_help(void)
{
    printf("usage: rzkvctl " BENCH_SYNOPSIS "\n"
"Send requests to a cluster and report throughput, results and latency.\n"
"\n"
"  -a, --address ADDR[,ADDR...]  nodes, used round-robin (default\n"
"                                $RZKV_ADDRESS or " CTL_DEFAULT_ADDRESS ")\n"
"  -c, --concurrency N           requests in flight (default %d)\n"
"  -n, --requests N              measured requests, then stop\n"
"  -d, --duration SECONDS        measured time (default %.0f without -n)\n"
"  -r, --rps R                   open loop: R requests/s due at fixed\n"
"                                times; latency counts from the due time\n"
"  -o, --op OP                   set (default), get, del, mix:R/W (R reads\n"
"                                to W writes, e.g. mix:50/50) or health\n"
"  -s, --value-size BYTES        value size for writes (default %d)\n"
"  -k, --keys N                  keyspace size (default %d)\n"
"      --dist uniform|zipf       key popularity (zipf: s = 0.99)\n"
"      --consistency LEVEL       one, quorum (default) or all\n"
"  -t, --timeout MS              the node's time to reach a quorum\n"
"  -w, --warmup SECONDS          run first, left out of every figure\n"
"      --prefill                 write every key once before measuring,\n"
"                                so gets find them (without it, get on a\n"
"                                fresh keyspace answers NOT_FOUND)\n"
"  -j, --json                    print the report as one JSON object\n"
"      --csv-timeline FILE       per second: second,ops,ok,errors,p50_ms,\n"
"                                p99_ms (by completion time)\n"
"      --connections N           client handles (each its own connection\n"
"                                to every node; default one per address)\n"
"      --key-prefix P            keys are P0000000000.. (default bench:)\n"
"      --seed N                  random seed (default from the clock)\n"
"      --no-progress             no progress line, even on a terminal\n"
"\n"
"Errors in the report are UNAVAILABLE, UNKNOWN, INVALID and ERROR;\n"
"NOT_FOUND is an answer.  Exits 0 when the run completed and some request\n"
"was answered; 5 if none was; see rzkvctl(1).\n",
           DEFAULT_CONCURRENCY, DEFAULT_DURATION, DEFAULT_VALUE_SIZE,
           DEFAULT_KEYS);
}

static int
parse_seconds(const char *s, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
parse_op(const char *s, struct bench_conf *bc)
{
    static const struct { const char *name; enum bench_op op; } ops[] = {
        { "set", OP_SET }, { "get", OP_GET }, { "del", OP_DEL },
        { "health", OP_HEALTH },
    };
    unsigned long r, w;

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(s, ops[i].name) == 0) {
            bc->op = ops[i].op;
            snprintf(bc->op_name, sizeof(bc->op_name), "%s", s);
            return 0;
        }
    if (strncmp(s, "mix:", 4) == 0) {
        char buf[32], *slash;
        snprintf(buf, sizeof(buf), "%s", s + 4);
        if ((slash = strchr(buf, '/')) == NULL)
            return -1;
        *slash = '\0';
        if (ctl_parse_uint(buf, 1000000, &r) != 0 ||
            ctl_parse_uint(slash + 1, 1000000, &w) != 0 || r + w == 0)
            return -1;
        bc->op = OP_MIX;
        bc->read_fraction = (double)r / (double)(r + w);
        snprintf(bc->op_name, sizeof(bc->op_name), "mix:%lu/%lu", r, w);
        return 0;
    }
    return -1;
}

/* One of bench's own options: 0, or -1 after printing why not. */
static int
bench_option(struct bench_conf *bc, int ch, const char *arg, bool *have_n,
             bool *have_d)
{
    unsigned long v;
    const char *what;

    switch (ch) {
    case 'c':
        what = "concurrency: expected 1..4096";
        if (ctl_parse_uint(arg, MAX_CONCURRENCY, &v) != 0 || v == 0)
            goto bad;
        bc->concurrency = (unsigned)v;
        return 0;
    case 'n':
        what = "request count: expected 1 or more";
        if (ctl_parse_uint(arg, ULONG_MAX, &v) != 0 || v == 0)
            goto bad;
        bc->requests = v;
        *have_n = true;
        return 0;
    case 'd':
        what = "duration: expected seconds, more than 0";
        if (parse_seconds(arg, 1e7, &bc->duration) != 0 || bc->duration == 0)
            goto bad;
        *have_d = true;
        return 0;
    case 'r':
        what = "rate: expected requests per second, more than 0";
        if (parse_seconds(arg, 1e9, &bc->rps) != 0 || bc->rps == 0)
            goto bad;
        return 0;
    case 'o':
        what = "op: expected set, get, del, mix:R/W or health";
        if (parse_op(arg, bc) != 0)
            goto bad;
        return 0;
    case 's':
        what = "value size: expected bytes, 0..67108864";
        if (ctl_parse_uint(arg, MAX_VALUE_SIZE, &v) != 0)
            goto bad;
        bc->value_size = v;
        return 0;
    case 'k':
        what = "key count: expected 1 or more";
        if (ctl_parse_uint(arg, ULONG_MAX, &v) != 0 || v == 0)
            goto bad;
        bc->keys = v;
        return 0;
    case OPT_DIST:
        what = "distribution: expected uniform or zipf";
        if (strcmp(arg, "uniform") != 0 && strcmp(arg, "zipf") != 0)
            goto bad;
        bc->zipf = strcmp(arg, "zipf") == 0;
        return 0;
    case 'w':
        what = "warmup: expected seconds";
        if (parse_seconds(arg, 1e6, &bc->warmup) != 0)
            goto bad;
        return 0;
    case OPT_PREFILL: bc->prefill = true; return 0;
    case OPT_CSV: bc->timeline_path = arg; return 0;
    case OPT_KEY_PREFIX:
        what = "key prefix: expected at most 200 bytes";
        if (strlen(arg) > 200)
            goto bad;
        bc->key_prefix = arg;
        return 0;
    case OPT_CONNECTIONS:
        what = "connections: expected 1..4096";
        if (ctl_parse_uint(arg, MAX_CONCURRENCY, &v) != 0 || v == 0)
            goto bad;
        bc->connections = (unsigned)v;
        return 0;
    case OPT_SEED:
        what = "seed: expected a number";
        if (ctl_parse_uint(arg, ULONG_MAX, &v) != 0)
            goto bad;
        bc->seed = v;
        return 0;
    case OPT_NO_PROGRESS: bc->progress = false; return 0;
    }
    what = "unexpected option";
bad:
    ctl_usage_error(CMD, "bad %s (\"%s\")", what, arg != NULL ? arg : "");
    return -1;
}

/* Parse argv into bc: -1 to go on, else the exit status to return. */
static int
parse_bench_args(int argc, char **argv, struct bench_conf *bc)
{
    bool have_n = false, have_d = false;
    int ch;

    memset(bc, 0, sizeof(*bc));
    ctl_client_opts_init(&bc->client);
    bc->concurrency = DEFAULT_CONCURRENCY;
    bc->value_size = DEFAULT_VALUE_SIZE;
    bc->keys = DEFAULT_KEYS;
    bc->key_prefix = "bench:";
    bc->progress = isatty(STDERR_FILENO);
    bc->seed = now_ns() ^ ((uint64_t)getpid() << 32);
    parse_op("set", bc);

    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":a:t:jc:n:d:r:o:s:k:w:h",
                             bench_longopts, NULL)) != -1) {
        int r = 0;
        switch (ch) {
        case 'h':
            print_help();
            return CTL_EXIT_OK;
        case ':': case '?':
            if (optopt != 0)
                ctl_usage_error(CMD, "option -%c %s", optopt,
                                ch == ':' ? "needs a value" : "is unknown");
            else
                ctl_usage_error(CMD, "option %s %s", argv[optind - 1],
                                ch == ':' ? "needs a value" : "is unknown");
            return CTL_EXIT_USAGE;
        case 'a': case 't': case 'j':
            r = ctl_client_option(CMD, &bc->client, ch, optarg) > 0 ? 0 : -1;
            break;
        case OPT_CONSISTENCY:
            r = ctl_client_option(CMD, &bc->client, 'c', optarg) > 0 ? 0 : -1;
            break;
        default:
            r = bench_option(bc, ch, optarg, &have_n, &have_d);
        }
        if (r != 0)
            return CTL_EXIT_USAGE;
    }
    if (optind < argc) {
        ctl_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
        return CTL_EXIT_USAGE;
    }
    if (have_n && have_d) {
        ctl_usage_error(CMD, "give -n or --duration, not both");
        return CTL_EXIT_USAGE;
    }
    if (!have_n && !have_d)
        bc->duration = DEFAULT_DURATION;
    if (bc->client.naddrs == 0) {
        const char *env = getenv("RZKV_ADDRESS");
        if (ctl_client_option(CMD, &bc->client, 'a', env != NULL &&
                              *env != '\0' ? env : CTL_DEFAULT_ADDRESS) <= 0)
            return CTL_EXIT_USAGE;
    }
    if (bc->connections == 0)
        bc->connections = (unsigned)bc->client.naddrs;
    if (bc->connections > bc->concurrency)
        bc->connections = bc->concurrency;
    return -1;
}

/* ---- one request --------------------------------------------------------- */

static size_t
make_key(const struct bench *b, uint64_t index, char *key)
{
    return key_name(key, KEY_MAX, b->conf->key_prefix, b->key_prefix_len,
                    index);
}

static uint64_t
pick_key(struct slot *s)
{
    const struct bench *b = s->b;
    if (b->conf->zipf)
        return zipf_next(&b->zipf, &s->rng);
    return rng_below(&s->rng, b->conf->keys);
}

static void
note_error(struct bench *b, const rzkv_error *err)
{
    if (atomic_load_explicit(&b->have_error, memory_order_relaxed))
        return;
    pthread_mutex_lock(&b->error_lock);
    if (!atomic_load(&b->have_error)) {
        b->first_error = *err;
        atomic_store(&b->have_error, true);
    }
    pthread_mutex_unlock(&b->error_lock);
}

/* The first failure answered through a callback, for the report. */
static void
note_result(struct bench *b, const rzkv_result *res)
{
    rzkv_error err;

    if (!is_error(res->status) ||
        atomic_load_explicit(&b->have_error, memory_order_relaxed))
        return;
    err.status = res->status;
    snprintf(err.message, sizeof(err.message), "%s", res->message);
    snprintf(err.address, sizeof(err.address), "%s", res->address);
    note_error(b, &err);
}

static rzkv_status
submit_set(struct slot *s, uint64_t index, uint64_t serial, rzkv_callback cb,
           rzkv_error *err)
{
    const struct bench *b = s->b;
    char key[KEY_MAX];
    size_t key_len = make_key(b, index, key);

    /* Every write carries a different value, so nothing can elide it;
     * the serial goes in as hex digits so values stay printable.  The
     * library copies key and value before the call returns. */
    for (size_t i = 0; i < 16 && i < b->conf->value_size; i++)
        s->value[i] = "0123456789abcdef"[(serial >> (60 - 4 * i)) & 15];
    return rzkv_set_async(s->client, key, key_len, s->value,
                          b->conf->value_size, &b->req, cb, s, err);
}

/* Send the slot's next request; cb hears of it unless this fails. */
static rzkv_status
submit_request(struct slot *s, uint64_t serial, rzkv_callback cb,
               rzkv_error *err)
{
    const struct bench *b = s->b;
    char key[KEY_MAX];
    size_t key_len;
    enum bench_op op = b->conf->op;

    if (op == OP_MIX)
        op = rng_double(&s->rng) < b->conf->read_fraction ? OP_GET : OP_SET;
    switch (op) {
    case OP_SET:
        return submit_set(s, pick_key(s), serial, cb, err);
    case OP_GET:
        key_len = make_key(b, pick_key(s), key);
        return rzkv_get_async(s->client, key, key_len, &b->req, cb, s, err);
    case OP_DEL:
        key_len = make_key(b, pick_key(s), key);
        return rzkv_del_async(s->client, key, key_len, &b->req, cb, s, err);
    case OP_HEALTH:
    default:
        return rzkv_health_async(s->client, &b->req, cb, s, err);
    }
}

/* ---- slots: one request in flight each ----------------------------------- */

static void
record(struct slot *s, rzkv_status st, uint64_t done)
{
    unsigned i = (unsigned)st < NSTATUS ? (unsigned)st : RZKV_ERROR;
    uint64_t latency = done > s->due ? done - s->due : 0;

    pthread_mutex_lock(&s->lock);
    hdr_record(s->tick, latency);
    s->tick_counts[i]++;
    pthread_mutex_unlock(&s->lock);
    if (s->measured) {
        hdr_record(s->total, latency);
        s->total_counts[i]++;
        s->last_done = done;
    }
    s->all_requests++;
}

/* ^C: no more requests; those in flight are still counted. */
static bool
stopping(void)
{
    return interrupted;
}

/* The slot is done for this run; the last one wakes the main thread. */
static void
slot_finish(struct slot *s)
{
    struct bench *b = s->b;

    if (atomic_fetch_sub(&b->live, 1) == 1) {
        pthread_mutex_lock(&b->drive_lock);
        pthread_cond_broadcast(&b->drive_cond);
        pthread_mutex_unlock(&b->drive_lock);
    }
}

/* The library refused a request: the main thread tries the slot again
 * after a pause, as a callback must not wait and a retry at once could
 * spin. */
static void
slot_park(struct slot *s, uint64_t now)
{
    struct bench *b = s->b;

    pthread_mutex_lock(&b->drive_lock);
    s->retry_at = now + RETRY_NS;
    s->next = b->parked;
    b->parked = s;
    pthread_cond_broadcast(&b->drive_cond);
    pthread_mutex_unlock(&b->drive_lock);
}

/* Back on the open loop's idle list, for the dispatcher. */
static void
slot_release(struct slot *s)
{
    struct bench *b = s->b;

    pthread_mutex_lock(&b->drive_lock);
    s->next = b->idle;
    b->idle = s;
    pthread_cond_broadcast(&b->drive_cond);
    pthread_mutex_unlock(&b->drive_lock);
}

static void closed_done(void *arg, const rzkv_result *res);

/*
 * Closed loop: the slot's next request, due now; from the main thread at
 * the start and after a pause, else from the callback of the last one.
 * Once the request is submitted its callback may already be running on
 * another thread: nothing touches the slot after that.
 */
static void
closed_next(struct slot *s, uint64_t now)
{
    struct bench *b = s->b;
    const struct bench_conf *bc = b->conf;
    rzkv_error err;
    rzkv_status st;

    if (stopping() || (b->end != 0 && now >= b->end)) {
        slot_finish(s);
        return;
    }
    s->due = now;
    s->measured = now >= b->warm_end;
    if (s->measured && bc->requests != 0 &&
        atomic_fetch_add(&b->tickets, 1) >= bc->requests) {
        slot_finish(s);
        return;
    }
    uint64_t serial = atomic_fetch_add_explicit(&b->sequence, 1,
                                                memory_order_relaxed);
    if ((st = submit_request(s, serial, closed_done, &err)) == RZKV_OK)
        return;
    now = now_ns();
    record(s, st, now);
    note_error(b, &err);
    slot_park(s, now);
}

static void
closed_done(void *arg, const rzkv_result *res)
{
    struct slot *s = arg;
    uint64_t done = now_ns();

    record(s, res->status, done);
    note_result(s->b, res);
    closed_next(s, done);
}

static void prefill_done(void *arg, const rzkv_result *res);

/* Prefill: write keys 0..keys-1 once, each slot taking the next. */
static void
prefill_next(struct slot *s, uint64_t now)
{
    struct bench *b = s->b;
    rzkv_error err;
    rzkv_status st;
    uint64_t k;

    if (stopping() || (k = atomic_fetch_add(&b->prefilled, 1)) >=
                       b->conf->keys) {
        slot_finish(s);
        return;
    }
    if ((st = submit_set(s, k, k, prefill_done, &err)) == RZKV_OK)
        return;
    pthread_mutex_lock(&s->lock);
    s->tick_counts[(unsigned)st < NSTATUS ? (unsigned)st : RZKV_ERROR]++;
    pthread_mutex_unlock(&s->lock);
    note_error(b, &err);
    slot_park(s, now);
}

static void
prefill_done(void *arg, const rzkv_result *res)
{
    struct slot *s = arg;
    rzkv_status st = res->status;

    pthread_mutex_lock(&s->lock);
    s->tick_counts[(unsigned)st < NSTATUS ? (unsigned)st : RZKV_ERROR]++;
    pthread_mutex_unlock(&s->lock);
    note_result(s->b, res);
    prefill_next(s, now_ns());
}

/*
 * Run every slot through next until all have finished, retrying parked
 * ones when their pause is over; on_tick (if any) runs every POLL_NS.
 */
static void
drive(struct bench *b, void (*next)(struct slot *, uint64_t),
      void (*on_tick)(struct bench *))
{
    atomic_store(&b->live, b->conf->concurrency);
    for (unsigned i = 0; i < b->conf->concurrency; i++)
        next(&b->slots[i], now_ns());
    pthread_mutex_lock(&b->drive_lock);
    while (atomic_load(&b->live) > 0) {
        uint64_t now = now_ns(), wake = now + POLL_NS;
        struct slot *ready = NULL, **pp = &b->parked;

        while (*pp != NULL) {
            struct slot *s = *pp;
            if (s->retry_at <= now) {
                *pp = s->next;
                s->next = ready;
                ready = s;
            } else {
                if (s->retry_at < wake)
                    wake = s->retry_at;
                pp = &s->next;
            }
        }
        if (ready == NULL) {
            struct timespec ts = { (time_t)(wake / NS_PER_SEC),
                                   (long)(wake % NS_PER_SEC) };
            pthread_cond_timedwait(&b->drive_cond, &b->drive_lock, &ts);
        }
        pthread_mutex_unlock(&b->drive_lock);
        while (ready != NULL) {
            struct slot *s = ready;
            ready = s->next;
            next(s, now_ns());
        }
        if (on_tick != NULL)
            on_tick(b);
        pthread_mutex_lock(&b->drive_lock);
    }
    pthread_mutex_unlock(&b->drive_lock);
}

static void
open_done(void *arg, const rzkv_result *res)
{
    struct slot *s = arg;

    record(s, res->status, now_ns());
    note_result(s->b, res);
    slot_release(s);
}

/* Open loop: an idle slot, waiting while all are in flight; NULL when
 * the run is stopped meanwhile. */
static struct slot *
open_take_slot(struct bench *b)
{
    struct slot *s;

    pthread_mutex_lock(&b->drive_lock);
    while ((s = b->idle) == NULL && !stopping()) {
        uint64_t wake = now_ns() + POLL_NS;
        struct timespec ts = { (time_t)(wake / NS_PER_SEC),
                               (long)(wake % NS_PER_SEC) };
        pthread_cond_timedwait(&b->drive_cond, &b->drive_lock, &ts);
    }
    if (s != NULL)
        b->idle = s->next;
    pthread_mutex_unlock(&b->drive_lock);
    return s;
}

/*
 * Open loop, on the main thread: request i is due at t0 + i/rps and sent
 * then, on an idle slot.  When all -c are in flight it waits for one, so
 * the schedule slips and the latency, counted from the due time, shows it.
 */
static void
open_dispatch(struct bench *b)
{
    const struct bench_conf *bc = b->conf;
    double interval = 1e9 / bc->rps;

    b->idle = NULL;
    for (unsigned i = bc->concurrency; i-- > 0;) {
        b->slots[i].next = b->idle;
        b->idle = &b->slots[i];
    }
    for (uint64_t serial = 0; !stopping(); serial++) {
        uint64_t due = b->t0 + (uint64_t)((double)serial * interval), now;
        struct slot *s;
        rzkv_error err;
        rzkv_status st;

        if (b->end != 0 && due >= b->end)
            break;
        if ((s = open_take_slot(b)) == NULL)
            break;
        while ((now = now_ns()) < due && !stopping())
            sleep_until(due - now > POLL_NS ? now + POLL_NS : due);
        s->due = due;
        s->measured = due >= b->warm_end;
        if (stopping() || (s->measured && bc->requests != 0 &&
                            atomic_fetch_add(&b->tickets, 1) >=
                            bc->requests)) {
            slot_release(s);
            break;
        }
        if ((st = submit_request(s, serial, open_done, &err)) == RZKV_OK)
            continue;
        now = now_ns();
        record(s, st, now);
        note_error(b, &err);
        slot_release(s);
        /* Refused: pause rather than spin, and end on time even though
         * the schedule cannot catch up with the pauses. */
        sleep_until(now + RETRY_NS);
        if (b->end != 0 && now_ns() >= b->end)
            break;
    }
}

/* Until every callback has returned: then the slots are the main thread's. */
static void
wait_clients(struct bench *b)
{
    for (unsigned i = 0; i < b->nclients; i++)
        rzkv_wait(b->clients[i]);
}

/* ---- the reporter: progress line and timeline ---------------------------- */

/* Move every slot's per-second figures into h and counts. */
static void
collect_tick(struct bench *b, struct hdr *h, uint64_t *counts)
{
    hdr_reset(h);
    memset(counts, 0, NSTATUS * sizeof(*counts));
    for (unsigned i = 0; i < b->conf->concurrency; i++) {
        struct slot *sl = &b->slots[i];
        pthread_mutex_lock(&sl->lock);
        hdr_merge(h, sl->tick);
        if (sl->tick->count > 0)
            hdr_reset(sl->tick);
        for (int s = 0; s < NSTATUS; s++) {
            counts[s] += sl->tick_counts[s];
            sl->tick_counts[s] = 0;
        }
        pthread_mutex_unlock(&sl->lock);
    }
}

static uint64_t
count_errors(const uint64_t *counts)
{
    uint64_t n = 0;
    for (int s = 0; s < NSTATUS; s++)
        if (is_error(s))
            n += counts[s];
    return n;
}

static void
progress_line(struct bench *b, uint64_t tick_end, const struct hdr *h,
              double seconds)
{
    bool warm = tick_end <= b->warm_end;
    const struct hdr *p99_of = warm ? h : b->so_far;

    fprintf(stderr, "\r\033[K%s %6.1fs  %8.0f ops/s  p99 %7.3f ms  "
            "errors %" PRIu64, warm ? "warmup" : "bench ",
            (double)((int64_t)(tick_end - b->warm_end)) / 1e9,
            (double)h->count / seconds, ms(hdr_percentile(p99_of, 99)),
            count_errors(b->so_far_counts));
    fflush(stderr);
}

static void
write_row(struct bench *b)
{
    const struct hdr *h = b->row;

    fprintf(b->timeline, "%.3f,%" PRIu64 ",%" PRIu64 ",%" PRIu64
            ",%.3f,%.3f\n", (double)(b->row_end - b->warm_end) / 1e9,
            h->count, b->row_counts[RZKV_OK], count_errors(b->row_counts),
            ms(hdr_percentile(h, 50)), ms(hdr_percentile(h, 99)));
}

/*
 * Add a measured interval to the timeline.  Rows cover whole seconds; a
 * row is written one tick late so that the stragglers answered just after
 * the run ends (under 100 ms) join the last second instead of making a
 * row of their own; a longer remainder (-n) gets its own, shorter row.
 */
static void
timeline_row(struct bench *b, const struct hdr *h, const uint64_t *counts,
             uint64_t end, bool final)
{
    bool fold = final && b->row_end != 0 &&
                end - b->row_end < NS_PER_SEC / 10;

    if (b->timeline == NULL)
        return;
    if (b->row_end != 0 && !fold)
        write_row(b);
    if (fold) {
        hdr_merge(b->row, h);
        for (int s = 0; s < NSTATUS; s++)
            b->row_counts[s] += counts[s];
    } else {
        memcpy(b->row, h, sizeof(*h));
        memcpy(b->row_counts, counts, sizeof(b->row_counts));
        b->row_end = end;
    }
    if (final && (fold || h->count > 0))
        write_row(b);
}

/* One interval ending at tick_end: timeline row and progress line. */
static void
report_tick(struct bench *b, struct hdr *h, uint64_t tick_start,
            uint64_t tick_end, bool final)
{
    uint64_t counts[NSTATUS];
    double seconds = (double)(tick_end - tick_start) / 1e9;

    collect_tick(b, h, counts);
    if (tick_end == b->warm_end && !b->have_usage) {
        getrusage(RUSAGE_SELF, &b->usage_at_warm_end);
        b->have_usage = true;
    }
    if (tick_start >= b->warm_end) {
        hdr_merge(b->so_far, h);
        for (int s = 0; s < NSTATUS; s++)
            b->so_far_counts[s] += counts[s];
        timeline_row(b, h, counts, tick_end, final);
    }
    if (b->conf->progress && seconds > 0.2)
        progress_line(b, tick_end, h, seconds);
}

/* Ticks fall on warm_end + k seconds, so one falls on warm_end itself. */
static void *
run_reporter(void *arg)
{
    struct bench *b = arg;
    struct hdr *h = malloc(sizeof(*h));
    uint64_t tick = b->warm_end, last = b->t0;

    if (h == NULL)
        return NULL;
    while (tick > b->t0 + NS_PER_SEC)
        tick -= NS_PER_SEC;
    if (tick <= b->t0)
        tick += NS_PER_SEC;
    pthread_mutex_lock(&b->report_lock);
    for (;;) {
        struct timespec ts = { (time_t)(tick / NS_PER_SEC),
                               (long)(tick % NS_PER_SEC) };
        while (!b->report_done &&
               pthread_cond_timedwait(&b->report_cond, &b->report_lock,
                                      &ts) != ETIMEDOUT)
            ;
        if (b->report_done)
            break;
        pthread_mutex_unlock(&b->report_lock);
        report_tick(b, h, last, tick, false);
        last = tick;
        tick += NS_PER_SEC;
        pthread_mutex_lock(&b->report_lock);
    }
    pthread_mutex_unlock(&b->report_lock);
    /* The last, partial interval; it also flushes the timeline. */
    uint64_t end = now_ns();
    report_tick(b, h, last, end > last ? end : last, true);
    if (b->conf->progress)
        fprintf(stderr, "\r\033[K");
    free(h);
    return NULL;
}

/* Timed waits on cond are deadlines on the monotonic clock. */
static void
init_monotonic_cond(pthread_cond_t *cond)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

static int
start_reporter(struct bench *b)
{
    int rv;

    init_monotonic_cond(&b->report_cond);
    pthread_mutex_init(&b->report_lock, NULL);
    b->report_done = false;
    if ((rv = pthread_create(&b->reporter, NULL, run_reporter, b)) != 0) {
        fprintf(stderr, "rzkvctl bench: cannot start a thread: %s\n",
                strerror(rv));
        return -1;
    }
    return 0;
}

static void
stop_reporter(struct bench *b)
{
    pthread_mutex_lock(&b->report_lock);
    b->report_done = true;
    pthread_cond_signal(&b->report_cond);
    pthread_mutex_unlock(&b->report_lock);
    pthread_join(b->reporter, NULL);
    pthread_cond_destroy(&b->report_cond);
    pthread_mutex_destroy(&b->report_lock);
}

/* ---- the report ---------------------------------------------------------- */

struct summary {
    struct hdr *h;
    uint64_t counts[NSTATUS];
    uint64_t requests;
    uint64_t all_requests;          /* warmup included */
    double seconds;                 /* warm_end to the last measured answer */
    double ops_per_sec;
    double cpu_seconds;             /* this process, over the same window */
};

static void
summarize(struct bench *b, struct summary *sum, const struct rusage *end)
{
    uint64_t last = b->warm_end;

    hdr_reset(sum->h);
    memset(sum->counts, 0, sizeof(sum->counts));
    for (unsigned i = 0; i < b->conf->concurrency; i++) {
        struct slot *sl = &b->slots[i];
        hdr_merge(sum->h, sl->total);
        for (int s = 0; s < NSTATUS; s++)
            sum->counts[s] += sl->total_counts[s];
        if (sl->last_done > last)
            last = sl->last_done;
        sum->all_requests += sl->all_requests;
    }
    sum->requests = sum->h->count;
    sum->seconds = (double)(last - b->warm_end) / 1e9;
    sum->ops_per_sec = sum->seconds > 0 ? sum->requests / sum->seconds : 0;
    sum->cpu_seconds = cpu_seconds(end) - cpu_seconds(&b->usage_at_warm_end);
}

static const char *
load_kind(const struct bench_conf *bc, char *buf, size_t len)
{
    if (bc->rps > 0)
        snprintf(buf, len, "open loop at %.0f requests/s", bc->rps);
    else
        snprintf(buf, len, "closed loop");
    return buf;
}

static void
print_text(const struct bench *b, const struct summary *sum)
{
    const struct bench_conf *bc = b->conf;
    const struct hdr *h = sum->h;
    char kind[64];

    printf("op            %s", bc->op_name);
    if (bc->op != OP_HEALTH)
        printf(" (%zu-byte values, %" PRIu64 " keys, %s, %s)",
               bc->value_size, bc->keys, bc->zipf ? "zipf" : "uniform",
               rzkv_consistency_str(bc->client.consistency));
    printf("\nload          c=%u, %s, %zu address%s, %u connection%s\n",
           bc->concurrency, load_kind(bc, kind, sizeof(kind)),
           bc->client.naddrs, bc->client.naddrs == 1 ? "" : "es",
           bc->connections, bc->connections == 1 ? "" : "s");
    printf("measured      %" PRIu64 " requests in %.2f s (after %.1f s "
           "warmup): %.1f ops/s\n", sum->requests, sum->seconds, bc->warmup,
           sum->ops_per_sec);
    printf("results      ");
    for (int s = 0; s < NSTATUS; s++)
        printf(" %s %" PRIu64 "%s", rzkv_status_str(s), sum->counts[s],
               s + 1 < NSTATUS ? "," : "\n");
    printf("latency (ms)  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  "
           "max %.3f  mean %.3f\n", ms(hdr_percentile(h, 50)),
           ms(hdr_percentile(h, 90)), ms(hdr_percentile(h, 99)),
           ms(hdr_percentile(h, 99.9)), ms(h->max), hdr_mean(h) / 1e6);
    if (sum->seconds > 0 && sum->requests > 0)
        printf("bench cpu     %.2f s (%.2f of a core, %.1f us a request)\n",
               sum->cpu_seconds, sum->cpu_seconds / sum->seconds,
               sum->cpu_seconds * 1e6 / sum->requests);
    if (atomic_load(&b->have_error))
        printf("first error   %s from %s: %s\n",
               rzkv_status_str(b->first_error.status),
               b->first_error.address[0] != '\0' ? b->first_error.address
                                                 : "(no node)",
               b->first_error.message);
}

static void
print_json(const struct bench *b, const struct summary *sum,
           const uint64_t *prefill, double prefill_seconds)
{
    const struct bench_conf *bc = b->conf;
    const struct hdr *h = sum->h;

    printf("{\"ops_per_sec\":%.1f,\"ok\":%" PRIu64 ",\"requests\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"results\":{", sum->ops_per_sec,
           sum->counts[RZKV_OK], sum->requests, count_errors(sum->counts));
    for (int s = 0; s < NSTATUS; s++)
        printf("\"%s\":%" PRIu64 "%s", rzkv_status_str(s), sum->counts[s],
               s + 1 < NSTATUS ? "," : "}");
    printf(",\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"p999\":%.3f,\"max\":%.3f,\"mean\":%.3f,\"min\":%.3f}",
           ms(hdr_percentile(h, 50)), ms(hdr_percentile(h, 90)),
           ms(hdr_percentile(h, 99)), ms(hdr_percentile(h, 99.9)),
           ms(h->max), hdr_mean(h) / 1e6, h->count > 0 ? ms(h->min) : 0.0);
    printf(",\"op\":\"%s\",\"concurrency\":%u,\"value_size\":%zu,"
           "\"duration_s\":%.3f,\"warmup_s\":%.3f,\"keys\":%" PRIu64
           ",\"dist\":\"%s\",\"consistency\":\"%s\",\"rps\":",
           bc->op_name, bc->concurrency, bc->value_size, sum->seconds,
           bc->warmup, bc->keys, bc->zipf ? "zipf" : "uniform",
           rzkv_consistency_str(bc->client.consistency));
    if (bc->rps > 0)
        printf("%.1f", bc->rps);
    else
        printf("null");
    printf(",\"addresses\":%zu,\"connections\":%u,\"requests_all\":%" PRIu64,
           bc->client.naddrs, bc->connections, sum->all_requests);
    printf(",\"bench_cpu_s\":%.3f,\"bench_cpu_cores\":%.3f",
           sum->cpu_seconds,
           sum->seconds > 0 ? sum->cpu_seconds / sum->seconds : 0.0);
    if (bc->prefill)
        printf(",\"prefill\":{\"keys\":%" PRIu64 ",\"seconds\":%.3f,"
               "\"errors\":%" PRIu64 "}", bc->keys, prefill_seconds,
               count_errors(prefill));
    if (atomic_load(&b->have_error)) {
        const rzkv_error *e = &b->first_error;
        printf(",\"first_error\":{\"status\":\"%s\",\"address\":",
               rzkv_status_str(e->status));
        ctl_json_string(stdout, e->address, strlen(e->address));
        printf(",\"message\":");
        ctl_json_string(stdout, e->message, strlen(e->message));
        printf("}");
    }
    printf("}\n");
}

/* ---- setting up and tearing down ----------------------------------------- */

/* Client handle i prefers address i mod naddrs and fails over to the
 * others in order. */
static int
connect_clients(struct bench *b, int *exit_status)
{
    const struct bench_conf *bc = b->conf;
    size_t n = bc->client.naddrs;
    char **rotated = calloc(n, sizeof(*rotated));

    b->clients = calloc(bc->connections, sizeof(*b->clients));
    if (rotated == NULL || b->clients == NULL) {
        free(rotated);
        fprintf(stderr, "rzkvctl bench: out of memory\n");
        *exit_status = CTL_EXIT_ERROR;
        return -1;
    }
    for (unsigned i = 0; i < bc->connections; i++) {
        struct ctl_client_opts view = bc->client;
        for (size_t k = 0; k < n; k++)
            rotated[k] = bc->client.addrs[(i + k) % n];
        view.addrs = rotated;
        if ((b->clients[i] = ctl_connect(CMD, &view, exit_status)) == NULL) {
            free(rotated);
            return -1;
        }
        b->nclients = i + 1;
    }
    free(rotated);
    return 0;
}

static int
setup_slots(struct bench *b)
{
    const struct bench_conf *bc = b->conf;

    b->slots = calloc(bc->concurrency, sizeof(*b->slots));
    if (b->slots == NULL)
        return -1;
    for (unsigned i = 0; i < bc->concurrency; i++) {
        struct slot *s = &b->slots[i];
        s->b = b;
        s->client = b->clients[i % b->nclients];
        rng_seed(&s->rng, bc->seed + i * 0x9e3779b97f4a7c15ull);
        pthread_mutex_init(&s->lock, NULL);
        s->tick = malloc(sizeof(*s->tick));
        s->total = malloc(sizeof(*s->total));
        s->value = malloc(bc->value_size + 1);
        if (s->tick == NULL || s->total == NULL || s->value == NULL)
            return -1;
        hdr_reset(s->tick);
        hdr_reset(s->total);
        /* Printable, varied bytes: neither compressible nor all zero. */
        for (size_t k = 0; k < bc->value_size; k++)
            s->value[k] = (char)('a' + rng_below(&s->rng, 26));
    }
    return 0;
}

/* Close the clients first: nothing is in flight by then (wait_clients),
 * and the slots must outlive any callback. */
static void
teardown(struct bench *b)
{
    for (unsigned i = 0; i < b->nclients; i++)
        rzkv_close(b->clients[i]);
    free(b->clients);
    if (b->slots != NULL)
        for (unsigned i = 0; i < b->conf->concurrency; i++) {
            struct slot *s = &b->slots[i];
            free(s->tick);
            free(s->total);
            free(s->value);
            pthread_mutex_destroy(&s->lock);
        }
    free(b->slots);
    free(b->so_far);
    free(b->row);
    pthread_cond_destroy(&b->drive_cond);
    pthread_mutex_destroy(&b->drive_lock);
    pthread_mutex_destroy(&b->error_lock);
}

static void
prefill_progress(struct bench *b)
{
    const struct bench_conf *bc = b->conf;

    if (bc->progress && now_ns() >= b->next_line) {
        uint64_t done = atomic_load(&b->prefilled);
        fprintf(stderr, "\r\033[Kprefill %" PRIu64 "/%" PRIu64 " keys",
                done < bc->keys ? done : bc->keys, bc->keys);
        fflush(stderr);
        b->next_line += NS_PER_SEC;
    }
}

/* Write the keyspace once; counts by result into counts. */
static void
prefill(struct bench *b, uint64_t *counts, double *seconds)
{
    const struct bench_conf *bc = b->conf;
    uint64_t start = now_ns();

    b->next_line = start + NS_PER_SEC;
    drive(b, prefill_next, prefill_progress);
    wait_clients(b);
    *seconds = (double)(now_ns() - start) / 1e9;
    memset(counts, 0, NSTATUS * sizeof(*counts));
    for (unsigned i = 0; i < bc->concurrency; i++)
        for (int s = 0; s < NSTATUS; s++) {
            counts[s] += b->slots[i].tick_counts[s];
            b->slots[i].tick_counts[s] = 0;
        }
    if (bc->progress)
        fprintf(stderr, "\r\033[K");
    fprintf(stderr, "rzkvctl bench: prefill: %" PRIu64 " keys in %.1f s "
            "(%.0f sets/s), %" PRIu64 " errors\n", bc->keys, *seconds,
            *seconds > 0 ? bc->keys / *seconds : 0.0, count_errors(counts));
}

/* The measured run: slots, reporter, and the final figures. */
static int
measure(struct bench *b, struct summary *sum)
{
    const struct bench_conf *bc = b->conf;
    struct rusage end_usage;

    b->t0 = now_ns();
    b->warm_end = b->t0 + (uint64_t)(bc->warmup * 1e9);
    b->end = bc->requests != 0 ? 0
             : b->warm_end + (uint64_t)(bc->duration * 1e9);
    atomic_store(&b->sequence, 0);
    if (b->warm_end == b->t0) {
        getrusage(RUSAGE_SELF, &b->usage_at_warm_end);
        b->have_usage = true;
    }
    if (start_reporter(b) != 0)
        return -1;
    if (bc->rps > 0)
        open_dispatch(b);
    else
        drive(b, closed_next, NULL);
    wait_clients(b);
    getrusage(RUSAGE_SELF, &end_usage);
    stop_reporter(b);
    if (!b->have_usage)     /* stopped during the warmup */
        b->usage_at_warm_end = end_usage;
    summarize(b, sum, &end_usage);
    return 0;
}

int
cmd_bench(int argc, char **argv)
{
    struct bench_conf bc;
    struct bench b;
    struct summary sum = { 0 };
    struct sigaction sa;
    uint64_t prefill_counts[NSTATUS] = { 0 };
    double prefill_seconds = 0;
    int rv;

    if ((rv = parse_bench_args(argc, argv, &bc)) >= 0) {
        ctl_client_opts_free(&bc.client);
        return rv;
    }
    memset(&b, 0, sizeof(b));
    b.conf = &bc;
    b.key_prefix_len = strlen(bc.key_prefix);
    pthread_mutex_init(&b.error_lock, NULL);
    pthread_mutex_init(&b.drive_lock, NULL);
    init_monotonic_cond(&b.drive_cond);
    ctl_client_req(&bc.client, &b.req);
    if (bc.zipf)
        zipf_init(&b.zipf, bc.keys, ZIPF_EXPONENT);
    rv = CTL_EXIT_ERROR;
    if (bc.timeline_path != NULL) {
        if ((b.timeline = fopen(bc.timeline_path, "w")) == NULL) {
            fprintf(stderr, "rzkvctl bench: %s: %s\n", bc.timeline_path,
                    strerror(errno));
            goto out;
        }
        fprintf(b.timeline, "second,ops,ok,errors,p50_ms,p99_ms\n");
    }
    if (connect_clients(&b, &rv) != 0)
        goto out;
    rv = CTL_EXIT_ERROR;
    sum.h = malloc(sizeof(*sum.h));
    b.so_far = malloc(sizeof(*b.so_far));
    b.row = malloc(sizeof(*b.row));
    if (sum.h == NULL || b.so_far == NULL || b.row == NULL ||
        setup_slots(&b) != 0) {
        fprintf(stderr, "rzkvctl bench: out of memory\n");
        goto out;
    }
    hdr_reset(b.so_far);

    /* ^C ends the run early and still reports what was measured. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    if (bc.prefill)
        prefill(&b, prefill_counts, &prefill_seconds);
    if (measure(&b, &sum) != 0)
        goto out;
    if (bc.client.json)
        print_json(&b, &sum, prefill_counts, prefill_seconds);
    else
        print_text(&b, &sum);
    rv = sum.counts[RZKV_OK] + sum.counts[RZKV_NOT_FOUND] > 0
         ? CTL_EXIT_OK : CTL_EXIT_ERROR;
    if (rv != CTL_EXIT_OK)
        fprintf(stderr, "rzkvctl bench: no request was answered\n");
out:
    signal(SIGINT, SIG_DFL);
    if (b.timeline != NULL && fclose(b.timeline) != 0) {
        fprintf(stderr, "rzkvctl bench: %s: %s\n", bc.timeline_path,
                strerror(errno));
        rv = CTL_EXIT_ERROR;
    }
    teardown(&b);
    free(sum.h);
    ctl_client_opts_free(&bc.client);
    if (fflush(stdout) != 0 && rv == CTL_EXIT_OK)
        rv = CTL_EXIT_ERROR;
    return rv;
}

/*
 * workload.c - client workloads of the fault suite, recording histories.
 *
 * Runs client threads against a cluster through librzkv and writes every
 * operation as JSON lines (invoke, then ok / fail / info) with
 * CLOCK_MONOTONIC times in ns, for t/fault/linearize.py and
 * t/fault/analyze.py.  Three workloads run side by side, each thread with
 * its own client, whose first node differs, so every node coordinates:
 *
 *   register  (process "rT")  random QUORUM reads and writes on a handful
 *             of keys "reg-K", every written value unique ("rT-N");
 *   unique    (process "uT")  each write a new key "uniq-T-N": at the end
 *             every acknowledged one must be readable;
 *   delete    (process "dT")  write "del-T-N", then delete half of them,
 *             and now and then read back an earlier deleted key: a
 *             deleted key must never come back.
 *
 * With --verify, it reads every key named on standard input (one a line)
 * at the given consistency, retrying while the cluster answers
 * UNAVAILABLE / UNKNOWN / ERROR, and records those reads in the same
 * format: appended to the history, they are the final state the checks
 * compare against.
 *
 * The workloads use QUORUM unless --op-consistency says otherwise: with
 * ONE under partitions, stale reads are expected, which is how the suite
 * shows that it notices them (t/fault/fault_detects.sh).
 *
 * Result mapping: OK and NOT_FOUND are "ok" (a read of NOT_FOUND returns
 * null); UNAVAILABLE is "fail" (the API promises nothing was applied);
 * UNKNOWN and ERROR are "info" for writes (they may have been applied)
 * and "fail" for reads (a read that returned nothing constrains nothing).
 *
 * Usage: workload -a ADDR[,ADDR..] -o HISTORY [options]   (see usage())
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rzkv.h"

#define MAX_ADDRS   16
#define KEY_MAX     128
#define VALUE_MAX   128

enum workload { W_REGISTER, W_UNIQUE, W_DELETE, W_VERIFY };

static const char *workload_name[] = { "r", "u", "d", "v" };

struct settings {
    const char *addrs[MAX_ADDRS];
    size_t naddrs;
    const char *out;
    int threads[3];             /* per workload */
    int keys;                   /* register keys */
    long ops;                   /* per thread, 0: no limit */
    double duration;            /* seconds, 0: no limit */
    unsigned timeout_ms;
    unsigned seed;
    rzkv_consistency consistency;   /* of the workloads' operations */
    bool verify;
    int verify_threads;
    rzkv_consistency verify_consistency;
    double verify_deadline;     /* seconds per key */
};

/* What every thread shares: the history file and the counters. */
struct shared {
    const struct settings *set;
    FILE *out;
    pthread_mutex_t lock;
    uint64_t end_ns;
    atomic_long counts[4][3];   /* [workload][ok, fail, info] */
    atomic_long errors;         /* RZKV_ERROR / INVALID seen */
    /* --verify: keys from stdin, taken in turn */
    char **vkeys;
    size_t nvkeys;
    atomic_size_t vnext;
    atomic_long unreadable;
};

struct thread {
    struct shared *sh;
    enum workload kind;
    int index;
    unsigned rnd;
    rzkv_client *client;
    pthread_t tid;
};

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/*
 * One history event.  value NULL prints null.  err, if given, is kept as
 * "error" for whoever reads the history after a failure.
 */
static void
record(struct thread *t, const char *type, const char *f, const char *key,
       const char *value, size_t vlen, uint64_t time, const char *err)
{
    struct shared *sh = t->sh;

    pthread_mutex_lock(&sh->lock);
    fprintf(sh->out, "{\"process\":\"%s%d\",\"type\":\"%s\",\"f\":\"%s\","
            "\"key\":", workload_name[t->kind], t->index, type, f);
    json_string(sh->out, key, strlen(key));
    fputs(",\"value\":", sh->out);
    if (value != NULL)
        json_string(sh->out, value, vlen);
    else
        fputs("null", sh->out);
    fprintf(sh->out, ",\"time\":%" PRIu64, time);
    if (err != NULL && err[0] != '\0') {
        fputs(",\"error\":", sh->out);
        json_string(sh->out, err, strlen(err));
    }
    fputs("}\n", sh->out);
    pthread_mutex_unlock(&sh->lock);
}

/* "ok", "fail" or "info" for a result, as the header explains. */
static const char *
outcome(rzkv_status st, bool is_write)
{
    switch (st) {
    case RZKV_OK:
    case RZKV_NOT_FOUND:
        return "ok";
    case RZKV_UNAVAILABLE:
        return "fail";
    default:
        return is_write ? "info" : "fail";
    }
}

static void
count(struct thread *t, const char *type, rzkv_status st)
{
    int i = type[0] == 'o' ? 0 : type[0] == 'f' ? 1 : 2;
    atomic_fetch_add(&t->sh->counts[t->kind][i], 1);
    if (st == RZKV_ERROR || st == RZKV_INVALID)
        atomic_fetch_add(&t->sh->errors, 1);
}

/* ---- the three operations, each recorded ---------------------------------- */

static rzkv_status
do_write(struct thread *t, const char *key, const char *value,
         const rzkv_req *req)
{
    rzkv_error err;
    record(t, "invoke", "write", key, value, strlen(value), now_ns(), NULL);
    rzkv_status st = rzkv_set(t->client, key, strlen(key), value,
                              strlen(value), req, NULL, &err);
    uint64_t end = now_ns();
    const char *type = outcome(st, true);
    record(t, type, "write", key, value, strlen(value), end,
           st == RZKV_OK ? NULL : err.message);
    count(t, type, st);
    return st;
}

static rzkv_status
do_delete(struct thread *t, const char *key, const rzkv_req *req)
{
    rzkv_error err;
    record(t, "invoke", "delete", key, NULL, 0, now_ns(), NULL);
    rzkv_status st = rzkv_del(t->client, key, strlen(key), req, NULL, &err);
    uint64_t end = now_ns();
    const char *type = outcome(st, true);
    record(t, type, "delete", key, NULL, 0, end,
           st == RZKV_OK ? NULL : err.message);
    count(t, type, st);
    return st;
}

static rzkv_status
do_read(struct thread *t, const char *key, const rzkv_req *req)
{
    rzkv_error err;
    void *value = NULL;
    size_t len = 0;

    record(t, "invoke", "read", key, NULL, 0, now_ns(), NULL);
    rzkv_status st = rzkv_get(t->client, key, strlen(key), req, &value,
                              &len, NULL, &err);
    uint64_t end = now_ns();
    const char *type = outcome(st, false);
    record(t, type, "read", key, st == RZKV_OK ? value : NULL, len, end,
           st == RZKV_OK || st == RZKV_NOT_FOUND ? NULL : err.message);
    count(t, type, st);
    rzkv_free(value);
    return st;
}

/* ---- workloads ------------------------------------------------------------- */

static bool
keep_going(struct thread *t, long n)
{
    const struct settings *set = t->sh->set;
    if (set->ops > 0 && n >= set->ops)
        return false;
    return t->sh->end_ns == 0 || now_ns() < t->sh->end_ns;
}

static void
run_register(struct thread *t)
{
    char key[KEY_MAX], value[VALUE_MAX];
    rzkv_req req = { t->sh->set->consistency, t->sh->set->timeout_ms };

    for (long n = 0; keep_going(t, n); n++) {
        snprintf(key, sizeof(key), "reg-%d",
                 (int)(rand_r(&t->rnd) % (unsigned)t->sh->set->keys));
        if (rand_r(&t->rnd) % 2 == 0) {
            do_read(t, key, &req);
        } else {
            snprintf(value, sizeof(value), "r%d-%ld", t->index, n);
            do_write(t, key, value, &req);
        }
    }
}

static void
run_unique(struct thread *t)
{
    char key[KEY_MAX], value[VALUE_MAX];
    rzkv_req req = { t->sh->set->consistency, t->sh->set->timeout_ms };

    for (long n = 0; keep_going(t, n); n++) {
        snprintf(key, sizeof(key), "uniq-%d-%ld", t->index, n);
        snprintf(value, sizeof(value), "u%d-%ld", t->index, n);
        do_write(t, key, value, &req);
    }
}

/*
 * Write a key, delete every other one once written, and read back a
 * random earlier deleted key now and then.
 */
static void
run_delete(struct thread *t)
{
    char key[KEY_MAX], value[VALUE_MAX];
    rzkv_req req = { t->sh->set->consistency, t->sh->set->timeout_ms };
    long deleted[256];
    size_t ndeleted = 0;

    for (long n = 0; keep_going(t, n); n++) {
        snprintf(key, sizeof(key), "del-%d-%ld", t->index, n);
        snprintf(value, sizeof(value), "d%d-%ld", t->index, n);
        if (do_write(t, key, value, &req) != RZKV_OK || n % 2 == 1)
            continue;
        if (do_delete(t, key, &req) == RZKV_OK)
            deleted[ndeleted++ % 256] = n;
        if (ndeleted > 0 && rand_r(&t->rnd) % 4 == 0) {
            size_t back = ndeleted < 256 ? ndeleted : 256;
            long old = deleted[rand_r(&t->rnd) % back];
            snprintf(key, sizeof(key), "del-%d-%ld", t->index, old);
            do_read(t, key, &req);
        }
    }
}

/* Read each key until the cluster answers, up to a deadline per key. */
static void
run_verify(struct thread *t)
{
    struct shared *sh = t->sh;
    rzkv_req req = { sh->set->verify_consistency, sh->set->timeout_ms };

    for (;;) {
        size_t i = atomic_fetch_add(&sh->vnext, 1);
        if (i >= sh->nvkeys)
            return;
        uint64_t give_up = now_ns() +
            (uint64_t)(sh->set->verify_deadline * 1e9);
        rzkv_status st;
        while ((st = do_read(t, sh->vkeys[i], &req)) != RZKV_OK &&
               st != RZKV_NOT_FOUND && now_ns() < give_up)
            usleep(100 * 1000);
        if (st != RZKV_OK && st != RZKV_NOT_FOUND) {
            fprintf(stderr, "workload: could not read %s: %s\n",
                    sh->vkeys[i], rzkv_status_str(st));
            atomic_fetch_add(&sh->unreadable, 1);
        }
    }
}

static void *
thread_main(void *arg)
{
    struct thread *t = arg;
    switch (t->kind) {
    case W_REGISTER: run_register(t); break;
    case W_UNIQUE: run_unique(t); break;
    case W_DELETE: run_delete(t); break;
    case W_VERIFY: run_verify(t); break;
    }
    return NULL;
}

/* ---- setup ----------------------------------------------------------------- */

/* A client whose node list starts at node `first`, so load spreads. */
static rzkv_client *
client_for(const struct settings *set, size_t first)
{
    const char *order[MAX_ADDRS];
    rzkv_options opts = { .timeout_ms = set->timeout_ms };
    rzkv_error err;

    for (size_t i = 0; i < set->naddrs; i++)
        order[i] = set->addrs[(first + i) % set->naddrs];
    rzkv_client *c = rzkv_connect(order, set->naddrs, &opts, &err);
    if (c == NULL) {
        fprintf(stderr, "workload: connect: %s\n", err.message);
        exit(1);
    }
    return c;
}

static void
read_keys(struct shared *sh)
{
    char line[4096];
    size_t cap = 0;
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (sh->nvkeys == cap) {
            cap = cap ? cap * 2 : 1024;
            sh->vkeys = realloc(sh->vkeys, cap * sizeof(*sh->vkeys));
            if (sh->vkeys == NULL) {
                perror("workload");
                exit(1);
            }
        }
        sh->vkeys[sh->nvkeys++] = strdup(line);
    }
}

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: workload -a ADDR[,ADDR..] -o HISTORY [options]\n"
        "  -r N   register threads (default 4)      -k N  register keys (3)\n"
        "  -u N   unique-write threads (default 2)  -d N  delete threads (2)\n"
        "  -n N   operations per thread (0: no limit, default 0)\n"
        "  -D S   duration in seconds (default 10)\n"
        "  -t MS  per-request timeout (default 1000)  -s SEED\n"
        "  --op-consistency one|quorum|all: of the workloads (quorum);\n"
        "         one makes anomalies likely: the suite's test of itself\n"
        "  --verify [--consistency one|quorum|all] [--verify-threads N]\n"
        "         [--verify-deadline S]: read the keys on stdin, recorded\n"
        "History lines are appended to HISTORY.\n");
}

static void
split_addrs(struct settings *set, char *arg)
{
    for (char *a = strtok(arg, ","); a != NULL; a = strtok(NULL, ",")) {
        if (set->naddrs == MAX_ADDRS) {
            fprintf(stderr, "workload: at most %d addresses\n", MAX_ADDRS);
            exit(64);
        }
        set->addrs[set->naddrs++] = a;
    }
}

static void
parse_args(struct settings *set, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "verify", no_argument, NULL, 'V' },
        { "op-consistency", required_argument, NULL, 'C' },
        { "consistency", required_argument, NULL, 'c' },
        { "verify-threads", required_argument, NULL, 'T' },
        { "verify-deadline", required_argument, NULL, 'L' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;

    *set = (struct settings){
        .threads = { 4, 2, 2 }, .keys = 3, .duration = 10,
        .timeout_ms = 1000, .seed = (unsigned)time(NULL),
        .consistency = RZKV_QUORUM,
        .verify_threads = 4, .verify_consistency = RZKV_QUORUM,
        .verify_deadline = 30,
    };
    while ((ch = getopt_long(argc, argv, "a:o:r:k:u:d:n:D:t:s:h", longopts,
                             NULL)) != -1) {
        switch (ch) {
        case 'a': split_addrs(set, optarg); break;
        case 'o': set->out = optarg; break;
        case 'r': set->threads[W_REGISTER] = atoi(optarg); break;
        case 'u': set->threads[W_UNIQUE] = atoi(optarg); break;
        case 'd': set->threads[W_DELETE] = atoi(optarg); break;
        case 'k': set->keys = atoi(optarg); break;
        case 'n': set->ops = atol(optarg); break;
        case 'D': set->duration = atof(optarg); break;
        case 't': set->timeout_ms = (unsigned)atoi(optarg); break;
        case 's': set->seed = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'V': set->verify = true; break;
        case 'T': set->verify_threads = atoi(optarg); break;
        case 'L': set->verify_deadline = atof(optarg); break;
        case 'c':
        case 'C':
            if (rzkv_consistency_parse(optarg, ch == 'c'
                                       ? &set->verify_consistency
                                       : &set->consistency) != 0) {
                fprintf(stderr, "workload: bad consistency %s\n", optarg);
                exit(64);
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(64);
        }
    }
    if (set->naddrs == 0 || set->out == NULL || set->keys < 1 ||
        set->verify_threads < 1) {
        usage(stderr);
        exit(64);
    }
}

static void
print_summary(struct shared *sh)
{
    static const char *names[] = { "register", "unique", "delete",
                                   "verify" };
    for (int w = 0; w < 4; w++) {
        long ok = atomic_load(&sh->counts[w][0]);
        long fail = atomic_load(&sh->counts[w][1]);
        long info = atomic_load(&sh->counts[w][2]);
        if (ok + fail + info > 0)
            printf("workload %s: %ld ops: %ld ok, %ld fail, %ld info\n",
                   names[w], ok + fail + info, ok, fail, info);
    }
    if (atomic_load(&sh->errors) > 0)
        printf("workload: %ld ERROR/INVALID results\n",
               atomic_load(&sh->errors));
}

int
main(int argc, char **argv)
{
    struct settings set;
    struct shared sh = { .set = &set };
    struct thread *threads;
    int n = 0, total;

    parse_args(&set, argc, argv);
    if ((sh.out = fopen(set.out, "a")) == NULL) {
        fprintf(stderr, "workload: %s: %s\n", set.out, strerror(errno));
        return 1;
    }
    pthread_mutex_init(&sh.lock, NULL);
    if (set.verify)
        read_keys(&sh);
    else if (set.duration > 0)
        sh.end_ns = now_ns() + (uint64_t)(set.duration * 1e9);
    total = set.verify ? set.verify_threads
        : set.threads[0] + set.threads[1] + set.threads[2];
    if ((threads = calloc((size_t)total + 1, sizeof(*threads))) == NULL) {
        perror("workload");
        return 1;
    }
    for (int w = 0; w < 4; w++) {
        int count_w = set.verify ? (w == W_VERIFY ? set.verify_threads : 0)
            : (w == W_VERIFY ? 0 : set.threads[w]);
        for (int i = 0; i < count_w; i++, n++) {
            struct thread *t = &threads[n];
            t->sh = &sh;
            t->kind = (enum workload)w;
            t->index = i;
            t->rnd = set.seed * 7919u + (unsigned)n;
            t->client = client_for(&set, (size_t)n % set.naddrs);
            if (pthread_create(&t->tid, NULL, thread_main, t) != 0) {
                perror("workload: pthread_create");
                return 1;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        pthread_join(threads[i].tid, NULL);
        rzkv_close(threads[i].client);
    }
    fclose(sh.out);
    free(threads);
    for (size_t i = 0; i < sh.nvkeys; i++)
        free(sh.vkeys[i]);
    free(sh.vkeys);
    print_summary(&sh);
    if (set.verify && atomic_load(&sh.unreadable) > 0) {
        printf("workload: %ld keys could not be read\n",
               atomic_load(&sh.unreadable));
        return 2;
    }
    return 0;
}

/*
 * client_cpu.c - what librzkv costs its caller: client CPU per request,
 * with C requests in flight either from one thread (the _async calls, each
 * callback submitting the next request) or from C threads (the
 * synchronous calls, as rzkvctl bench drives them today).  A measuring
 * tool (not installed, not a test).
 *
 *   client_cpu [-m async|sync] [-c C] [-d SECS] [-w SECS]
 *              [-o health|get|set] [-s BYTES] [-k KEYS] ADDR...
 *
 *   -m  async (default) or sync       -c  requests in flight (64)
 *   -d  seconds measured (5)          -w  seconds of warmup before (1)
 *   -o  health (default), get, set    -s  value bytes for set (100)
 *   -k  key space for get and set (1000)
 *
 * Prints one line: requests and their outcomes, the rate, and this
 * process's CPU (getrusage: user + system) and context switches per
 * request over the measured seconds.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "rzkv.h"

enum op { OP_HEALTH, OP_GET, OP_SET };

struct load {
    rzkv_client *c;
    enum op op;
    unsigned keys;
    char *value;
    size_t value_len;
    atomic_bool stop;
    atomic_uint_fast64_t done, failed, refused, seq;
    rzkv_error first_failure;
    atomic_bool failure_noted;
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
key_for(struct load *l, char *buf, size_t len)
{
    uint64_t n = atomic_fetch_add(&l->seq, 1) * 2654435761u;
    return snprintf(buf, len, "cpu-%" PRIu64, n % l->keys);
}

static void
note(struct load *l, rzkv_status st, const char *message)
{
    atomic_fetch_add(&l->done, 1);
    if (st == RZKV_OK || (st == RZKV_NOT_FOUND && l->op == OP_GET))
        return;
    atomic_fetch_add(&l->failed, 1);
    if (!atomic_exchange(&l->failure_noted, true)) {
        l->first_failure.status = st;
        snprintf(l->first_failure.message, sizeof(l->first_failure.message),
                 "%s", message);
    }
}

/* ---- one thread, many in flight -------------------------------------------- */

static void next_async(void *arg, const rzkv_result *res);

static rzkv_status
submit(struct load *l)
{
    char key[64];
    int n;

    switch (l->op) {
    case OP_GET:
        n = key_for(l, key, sizeof(key));
        return rzkv_get_async(l->c, key, (size_t)n, NULL, next_async, l,
                              NULL);
    case OP_SET:
        n = key_for(l, key, sizeof(key));
        return rzkv_set_async(l->c, key, (size_t)n, l->value, l->value_len,
                              NULL, next_async, l, NULL);
    case OP_HEALTH:
    default:
        return rzkv_health_async(l->c, NULL, next_async, l, NULL);
    }
}

static void
next_async(void *arg, const rzkv_result *res)
{
    struct load *l = arg;

    note(l, res->status, res->message);
    if (!atomic_load(&l->stop) && submit(l) != RZKV_OK)
        atomic_fetch_add(&l->refused, 1);
}

/* ---- a thread per request in flight ---------------------------------------- */

static void *
run_sync(void *arg)
{
    struct load *l = arg;
    char key[64];
    rzkv_error err;
    rzkv_status st;
    void *v;
    size_t len;
    int n;

    while (!atomic_load(&l->stop)) {
        switch (l->op) {
        case OP_GET:
            n = key_for(l, key, sizeof(key));
            st = rzkv_get(l->c, key, (size_t)n, NULL, &v, &len, NULL, &err);
            if (st == RZKV_OK)
                rzkv_free(v);
            break;
        case OP_SET:
            n = key_for(l, key, sizeof(key));
            st = rzkv_set(l->c, key, (size_t)n, l->value, l->value_len, NULL,
                          NULL, &err);
            break;
        case OP_HEALTH:
        default:
            st = rzkv_health(l->c, NULL, &err);
            break;
        }
        note(l, st, err.message);
    }
    return NULL;
}

static void
usage(void)
{
    fprintf(stderr, "usage: client_cpu [-m async|sync] [-c C] [-d SECS] "
            "[-w SECS] [-o health|get|set] [-s BYTES] [-k KEYS] ADDR...\n");
    exit(64);
}

static double
cpu_s(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
           (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
    struct load l = { .op = OP_HEALTH, .keys = 1000, .value_len = 100 };
    bool async = true;
    unsigned conc = 64;
    double secs = 5, warmup = 1;
    pthread_t *threads = NULL;
    rzkv_error err;
    int ch;

    while ((ch = getopt(argc, argv, "m:c:d:w:o:s:k:")) != -1) {
        switch (ch) {
        case 'm':
            if (strcmp(optarg, "async") != 0 && strcmp(optarg, "sync") != 0)
                usage();
            async = strcmp(optarg, "async") == 0;
            break;
        case 'c': conc = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': secs = strtod(optarg, NULL); break;
        case 'w': warmup = strtod(optarg, NULL); break;
        case 's': l.value_len = strtoul(optarg, NULL, 10); break;
        case 'k': l.keys = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'o':
            if (strcmp(optarg, "health") == 0)
                l.op = OP_HEALTH;
            else if (strcmp(optarg, "get") == 0)
                l.op = OP_GET;
            else if (strcmp(optarg, "set") == 0)
                l.op = OP_SET;
            else
                usage();
            break;
        default:
            usage();
        }
    }
    if (optind >= argc || conc == 0 || secs <= 0 || l.keys == 0)
        usage();
    if ((l.value = malloc(l.value_len + 1)) == NULL)
        return 1;
    memset(l.value, 'v', l.value_len);
    l.c = rzkv_connect((const char *const *)argv + optind,
                       (size_t)(argc - optind), NULL, &err);
    if (l.c == NULL) {
        fprintf(stderr, "client_cpu: %s\n", err.message);
        return 1;
    }

    if (async) {
        for (unsigned i = 0; i < conc; i++)
            if (submit(&l) != RZKV_OK)
                atomic_fetch_add(&l.refused, 1);
    } else {
        if ((threads = calloc(conc, sizeof(*threads))) == NULL)
            return 1;
        for (unsigned i = 0; i < conc; i++)
            if (pthread_create(&threads[i], NULL, run_sync, &l) != 0) {
                fprintf(stderr, "client_cpu: cannot start thread %u\n", i);
                return 1;
            }
    }

    struct rusage r0, r1;
    usleep((useconds_t)(warmup * 1e6));
    uint64_t d0 = atomic_load(&l.done);
    double t0 = now_s();
    getrusage(RUSAGE_SELF, &r0);
    usleep((useconds_t)(secs * 1e6));
    getrusage(RUSAGE_SELF, &r1);
    double t1 = now_s();
    uint64_t d1 = atomic_load(&l.done);

    atomic_store(&l.stop, true);
    if (async) {
        rzkv_wait(l.c);
    } else {
        for (unsigned i = 0; i < conc; i++)
            pthread_join(threads[i], NULL);
    }

    uint64_t n = d1 - d0;
    double cpu = cpu_s(&r1) - cpu_s(&r0);
    long csw = (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw);
    printf("%s c=%u op=%s: %" PRIu64 " requests in %.2f s = %.0f/s, "
           "failed %" PRIu64 ", refused %" PRIu64 "; CPU %.2f s "
           "(user %.2f, sys %.2f) = %.1f us/request, %.1f ctx switches/"
           "request\n",
           async ? "async" : "sync", conc,
           l.op == OP_GET ? "get" : l.op == OP_SET ? "set" : "health",
           n, t1 - t0, (double)n / (t1 - t0),
           atomic_load(&l.failed), atomic_load(&l.refused), cpu,
           (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
           (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6,
           (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
           (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6,
           n > 0 ? cpu * 1e6 / (double)n : 0.0,
           n > 0 ? (double)csw / (double)n : 0.0);
    if (atomic_load(&l.failure_noted))
        printf("first failure: %s: %s\n",
               rzkv_status_str(l.first_failure.status),
               l.first_failure.message);
    rzkv_close(l.c);
    free(threads);
    free(l.value);
    return 0;
}

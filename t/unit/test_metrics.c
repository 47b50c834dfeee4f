/*
 * test_metrics.c - the counters file of a worker (common/metrics.h):
 * histogram buckets, counters kept and gauges reset across a re-open,
 * a file of another layout started over, the read-only mapping, and
 * peer ids read whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

static char run_dir[256];

static int
setup(void **state)
{
    (void)state;
    snprintf(run_dir, sizeof(run_dir), "/tmp/rzkv-test-metrics.XXXXXX");
    if (mkdtemp(run_dir) == NULL)
        return -1;
    /* A level below, to see metrics_open() create what is missing. */
    strncat(run_dir, "/run", sizeof(run_dir) - strlen(run_dir) - 1);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[600];
    (void)state;
    *strrchr(run_dir, '/') = '\0';
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
path_of(char *buf, size_t len, const char *role, int instance)
{
    snprintf(buf, len, METRICS_PATH_FMT, run_dir, role, instance);
}

static void
test_lat_buckets(void **state)
{
    struct metrics_lat_hist h;
    (void)state;
    memset(&h, 0, sizeof(h));
    metrics_lat_observe(&h, 50000, 1);          /* on the bound: le 5e-05 */
    metrics_lat_observe(&h, 50001, 2);          /* just over: le 0.0001 */
    metrics_lat_observe(&h, 20000000000u, 1);   /* 20 s: +Inf only */
    assert_int_equal(metrics_get(&h.bucket[0]), 1);
    assert_int_equal(metrics_get(&h.bucket[1]), 2);
    assert_int_equal(metrics_get(&h.bucket[METRICS_LAT_BOUNDS]), 1);
    assert_int_equal(metrics_get(&h.sum_ns),
                     50000 + 2 * 50001 + 20000000000u);
    for (int b = 1; b < METRICS_LAT_BOUNDS; b++)
        assert_true(metrics_lat_bounds_ns[b] > metrics_lat_bounds_ns[b - 1]);
    /* The text of each bound says the same number of seconds. */
    for (int b = 0; b < METRICS_LAT_BOUNDS; b++)
        assert_true(llabs((long long)(strtod(metrics_lat_bounds_text[b],
                                             NULL) * 1e9) -
                          (long long)metrics_lat_bounds_ns[b]) < 2);
}

static void
test_size_buckets(void **state)
{
    struct metrics_size_hist h;
    (void)state;
    memset(&h, 0, sizeof(h));
    metrics_size_observe(&h, 1);
    metrics_size_observe(&h, 3);                /* le 4 */
    metrics_size_observe(&h, 4096);
    metrics_size_observe(&h, 5000);             /* +Inf */
    assert_int_equal(metrics_get(&h.bucket[0]), 1);
    assert_int_equal(metrics_get(&h.bucket[2]), 1);
    assert_int_equal(metrics_get(&h.bucket[METRICS_SIZE_BOUNDS - 1]), 1);
    assert_int_equal(metrics_get(&h.bucket[METRICS_SIZE_BOUNDS]), 1);
    assert_int_equal(metrics_get(&h.sum), 1 + 3 + 4096 + 5000);
}

static void
test_reopen_keeps_counters(void **state)
{
    char path[512];
    (void)state;

    assert_int_equal(metrics_open(run_dir, "coordinator", 0), 0);
    metrics_request_done(MAPI_CLUSTER, MOP_SET, 0, metrics_now_ns());
    metrics_request_done(MAPI_CLUSTER, MOP_SET, 3, metrics_now_ns());
    metrics_request_done(MAPI_CLUSTER, MOP_GET, 42, metrics_now_ns());
    metrics_add(&metrics->u.coord.inflight, 5);
    metrics_peer_set(0, "n2", 1);
    metrics_peers_count(1);
    struct metrics_file *first = metrics;

    /* A restarted worker: same file, counters go on, gauges start at 0. */
    assert_int_equal(metrics_open(run_dir, "coordinator", 0), 0);
    const struct metrics_coord *c = &metrics->u.coord;
    assert_int_equal(metrics_get(&c->requests[MAPI_CLUSTER][MOP_SET][0]), 1);
    assert_int_equal(metrics_get(&c->requests[MAPI_CLUSTER][MOP_SET][3]), 1);
    assert_int_equal(metrics_get(&c->requests[MAPI_CLUSTER][MOP_GET]
                                 [METRICS_RESULT_OTHER]), 1);
    assert_int_equal(metrics_get(&c->unknown_outcomes), 1);
    uint64_t n = 0;
    for (int b = 0; b <= METRICS_LAT_BOUNDS; b++)
        n += metrics_get(&c->duration[MAPI_CLUSTER][MOP_SET].bucket[b]);
    assert_int_equal(n, 2);
    assert_int_equal(metrics_get(&c->inflight), 0);
    assert_int_equal(metrics_get(&c->npeers), 0);
    assert_int_equal(metrics_get(&metrics->opens), 2);
    assert_int_equal(metrics_get(&metrics->pid), (uint64_t)getpid());
    (void)first;

    /* The reader sees the same numbers. */
    path_of(path, sizeof(path), "coordinator", 0);
    const struct metrics_file *f = metrics_map(path);
    assert_non_null(f);
    assert_int_equal(f->role, MROLE_COORD);
    assert_int_equal(metrics_get(&f->u.coord.requests[MAPI_CLUSTER][MOP_SET]
                                 [0]), 1);
    metrics_unmap(f);
}

static void
test_other_layout_starts_over(void **state)
{
    char path[512];
    (void)state;

    assert_int_equal(metrics_open(run_dir, "storage", 1), 0);
    metrics_add(&metrics->u.storage.commits, 7);
    path_of(path, sizeof(path), "storage", 1);

    /* Another version wrote it: the header says so. */
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    uint32_t version = METRICS_VERSION + 1;
    assert_int_equal(fseek(fp, 4, SEEK_SET), 0);
    assert_int_equal(fwrite(&version, sizeof(version), 1, fp), 1);
    fclose(fp);
    assert_null(metrics_map(path));
    assert_int_equal(metrics_open(run_dir, "storage", 1), 0);
    assert_int_equal(metrics_get(&metrics->u.storage.commits), 0);
    assert_non_null(metrics_map(path));

    /* A file of the wrong size is refused by readers, resized by the
     * worker. */
    assert_int_equal(truncate(path, 100), 0);
    assert_null(metrics_map(path));
    assert_int_equal(metrics_open(run_dir, "storage", 1), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, sizeof(struct metrics_file));
    assert_null(metrics_map("/nonexistent/metrics.shm"));
}

static void
test_peers(void **state)
{
    char id[METRICS_PEER_ID], long_id[300];
    int connected;
    (void)state;

    assert_int_equal(metrics_open(run_dir, "coordinator", 3), 0);
    metrics_peer_set(0, "alpha", 1);
    metrics_peer_set(1, "b", 0);
    metrics_peers_count(2);
    const struct metrics_coord *c = &metrics->u.coord;
    assert_int_equal(metrics_peer_read(c, 0, id, sizeof(id), &connected), 0);
    assert_string_equal(id, "alpha");
    assert_int_equal(connected, 1);
    assert_int_equal(metrics_peer_read(c, 1, id, sizeof(id), &connected), 0);
    assert_string_equal(id, "b");
    assert_int_equal(connected, 0);
    assert_int_equal(metrics_peer_read(c, 2, id, sizeof(id), &connected),
                     -1);
    /* A new id in the slot replaces the old one whole. */
    metrics_peer_set(0, "z", 0);
    assert_int_equal(metrics_peer_read(c, 0, id, sizeof(id), &connected), 0);
    assert_string_equal(id, "z");
    assert_int_equal(c->peers[0].seq % 2, 0);
    /* Ids are cut to what fits, never overrun. */
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    metrics_peer_set(1, long_id, 1);
    assert_int_equal(metrics_peer_read(c, 1, id, 8, &connected), 0);
    assert_string_equal(id, "xxxxxxx");
    metrics_peer_set(METRICS_MAX_PEERS, "ignored", 1);  /* out of range */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lat_buckets),
        cmocka_unit_test(test_size_buckets),
        cmocka_unit_test(test_reopen_keeps_counters),
        cmocka_unit_test(test_other_layout_starts_over),
        cmocka_unit_test(test_peers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_hdr.c - the latency histogram of rzkvctl bench: bucket bounds and
 * width, percentiles of known distributions within 1%, exact extremes,
 * merging, and values beyond the resolved range.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hdr.h"

static struct hdr *
new_hdr(void)
{
    struct hdr *h = malloc(sizeof(*h));
    assert_non_null(h);
    hdr_reset(h);
    return h;
}

/* |got - want| <= 1% of want (plus one unit for small values). */
static void
assert_close(uint64_t got, double want)
{
    double slack = want * 0.01 + 1.0;
    if (fabs((double)got - want) > slack)
        fail_msg("got %llu, want %.1f +- %.1f", (unsigned long long)got,
                 want, slack);
}

static void
test_bucket_bounds(void **state)
{
    (void)state;
    unsigned last = 0;

    /* Every value lies in its bucket; buckets grow with values; a bucket
     * is at most 1/128 of its low end wide above the exact range. */
    for (uint64_t v = 0; v < ((uint64_t)1 << 40); v = v < 4096 ? v + 1
                                                  : v + v / 97 + 1) {
        unsigned b = hdr_bucket(v);
        assert_true(b < HDR_BUCKETS);
        assert_true(b >= last);
        last = b;
        assert_true(hdr_bucket_low(b) <= v);
        assert_true(v <= hdr_bucket_high(b));
        if (v >= HDR_LINEAR_MAX && b < HDR_BUCKETS - 1) {
            uint64_t width = hdr_bucket_high(b) - hdr_bucket_low(b) + 1;
            assert_true(width * 128 <= hdr_bucket_low(b));
        }
    }
    /* Adjacent buckets leave no gap. */
    for (unsigned b = 0; b + 2 < HDR_BUCKETS; b++)
        assert_true(hdr_bucket_high(b) + 1 == hdr_bucket_low(b + 1));
    assert_int_equal(hdr_bucket(255), 255);
    assert_int_equal(hdr_bucket(256), 256);
    assert_int_equal(hdr_bucket(UINT64_MAX), HDR_BUCKETS - 1);
}

static void
test_small_values_exact(void **state)
{
    (void)state;
    struct hdr *h = new_hdr();

    for (uint64_t v = 1; v <= 100; v++)
        hdr_record(h, v);
    assert_int_equal(h->count, 100);
    assert_int_equal(hdr_percentile(h, 50), 50);
    assert_int_equal(hdr_percentile(h, 90), 90);
    assert_int_equal(hdr_percentile(h, 99), 99);
    assert_int_equal(hdr_percentile(h, 99.9), 100);
    assert_int_equal(hdr_percentile(h, 100), 100);
    assert_int_equal(hdr_percentile(h, 0), 1);
    assert_true(fabs(hdr_mean(h) - 50.5) < 1e-9);
    free(h);
}

static void
test_uniform(void **state)
{
    (void)state;
    struct hdr *h = new_hdr();
    const uint64_t n = 1000000;

    for (uint64_t v = 1; v <= n; v++)
        hdr_record(h, v * 1000);        /* 1 us .. 1 s in ns */
    assert_close(hdr_percentile(h, 50), 500000.0 * 1000);
    assert_close(hdr_percentile(h, 90), 900000.0 * 1000);
    assert_close(hdr_percentile(h, 99), 990000.0 * 1000);
    assert_close(hdr_percentile(h, 99.9), 999000.0 * 1000);
    assert_int_equal(hdr_percentile(h, 100), n * 1000);
    assert_int_equal(h->min, 1000);
    assert_int_equal(h->max, n * 1000);
    free(h);
}

/* Exponential latencies (mean 2 ms) from its inverse CDF on an even grid,
 * so that the exact quantiles are known: -mean * ln(1 - p). */
static void
test_exponential(void **state)
{
    (void)state;
    struct hdr *h = new_hdr();
    const int n = 200000;
    const double mean = 2e6;
    const double ps[] = { 50, 90, 99, 99.9 };

    for (int i = 0; i < n; i++) {
        double u = (i + 0.5) / n;
        hdr_record(h, (uint64_t)llround(-mean * log(1 - u)));
    }
    for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++)
        assert_close(hdr_percentile(h, ps[k]), -mean * log(1 - ps[k] / 100));
    assert_true(fabs(hdr_mean(h) - mean) < mean * 0.01);
    free(h);
}

/* A bimodal mix: 99% fast (200 us), 1% slow (50 ms); p99 must still see
 * the fast mode and p99.9 the slow one. */
static void
test_bimodal_tail(void **state)
{
    (void)state;
    struct hdr *h = new_hdr();

    for (int i = 0; i < 9900; i++)
        hdr_record(h, 200000);
    for (int i = 0; i < 100; i++)
        hdr_record(h, 50000000);
    assert_close(hdr_percentile(h, 50), 200000);
    assert_close(hdr_percentile(h, 99), 200000);
    assert_int_equal(hdr_percentile(h, 99.9), 50000000);   /* clamped to max */
    assert_int_equal(hdr_percentile(h, 100), 50000000);
    free(h);
}

static void
test_merge_equals_whole(void **state)
{
    (void)state;
    struct hdr *a = new_hdr(), *b = new_hdr(), *whole = new_hdr();
    uint64_t x = 88172645463325252ull;

    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x % 100000000;
        hdr_record(i % 3 == 0 ? a : b, v);
        hdr_record(whole, v);
    }
    hdr_merge(a, b);
    assert_int_equal(a->count, whole->count);
    assert_int_equal(a->min, whole->min);
    assert_int_equal(a->max, whole->max);
    assert_memory_equal(a->buckets, whole->buckets, sizeof(a->buckets));
    assert_int_equal(hdr_percentile(a, 99), hdr_percentile(whole, 99));
    /* Merging an empty histogram changes nothing, min included. */
    hdr_reset(b);
    hdr_merge(a, b);
    assert_int_equal(a->min, whole->min);
    assert_int_equal(a->count, whole->count);
    free(a);
    free(b);
    free(whole);
}

static void
test_empty_and_huge(void **state)
{
    (void)state;
    struct hdr *h = new_hdr();

    assert_int_equal(hdr_percentile(h, 50), 0);
    assert_int_equal(hdr_percentile(h, 100), 0);
    assert_true(hdr_mean(h) == 0.0);

    /* Beyond 2^40: counted in the top bucket, the max stays exact. */
    hdr_record(h, (uint64_t)1 << 50);
    hdr_record(h, 1000);
    assert_int_equal(hdr_percentile(h, 100), (uint64_t)1 << 50);
    assert_int_equal(hdr_percentile(h, 99), (uint64_t)1 << 50);
    assert_close(hdr_percentile(h, 50), 1000);
    assert_int_equal(h->min, 1000);

    /* A constant: every percentile is that value exactly. */
    hdr_reset(h);
    for (int i = 0; i < 1000; i++)
        hdr_record(h, 12345);
    assert_int_equal(hdr_percentile(h, 50), 12345);
    assert_int_equal(hdr_percentile(h, 99.9), 12345);
    free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_exponential),
        cmocka_unit_test(test_bimodal_tail),
        cmocka_unit_test(test_merge_equals_whole),
        cmocka_unit_test(test_empty_and_huge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

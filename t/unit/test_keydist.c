/*
 * test_keydist.c - the key choosers of rzkvctl bench: the Zipf sampler's
 * frequencies match k^-s / H(n, s) for several n and s, indexes stay in
 * range, and the uniform draws are even and reproducible from a seed.
 */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keydist.h"

/* Every bucket's count within 5 standard deviations of its expectation;
 * a wrong distribution misses by far more at these sample sizes. */
static void
assert_counts(const uint64_t *count, const double *p, size_t n, uint64_t draws)
{
    for (size_t k = 0; k < n; k++) {
        double want = p[k] * (double)draws;
        double sd = sqrt(want * (1 - p[k]));
        if (fabs((double)count[k] - want) > 5 * sd + 2)
            fail_msg("bucket %zu: got %llu, want %.1f (sd %.1f)", k,
                     (unsigned long long)count[k], want, sd);
    }
}

static void
check_zipf(uint64_t n, double s, uint64_t draws)
{
    struct zipf z;
    struct rng r;
    uint64_t *count = calloc(n, sizeof(*count));
    double *p = calloc(n, sizeof(*p));
    double norm = 0;

    assert_non_null(count);
    assert_non_null(p);
    assert_int_equal(zipf_init(&z, n, s), 0);
    rng_seed(&r, 42 + n);
    for (uint64_t i = 0; i < draws; i++) {
        uint64_t k = zipf_next(&z, &r);
        assert_true(k < n);
        count[k]++;
    }
    for (uint64_t k = 0; k < n; k++)
        norm += p[k] = pow((double)(k + 1), -s);
    for (uint64_t k = 0; k < n; k++)
        p[k] /= norm;
    assert_counts(count, p, n, draws);
    free(count);
    free(p);
}

static void
test_zipf_099(void **state)
{
    (void)state;
    check_zipf(100, 0.99, 2000000);
    check_zipf(1000, 0.99, 2000000);
}

static void
test_zipf_other_exponents(void **state)
{
    (void)state;
    check_zipf(50, 0.5, 1000000);
    check_zipf(50, 1.0, 1000000);      /* the s = 1 limit of the helpers */
    check_zipf(50, 1.5, 1000000);
    check_zipf(2, 0.99, 100000);
}

static void
test_zipf_edges(void **state)
{
    (void)state;
    struct zipf z;
    struct rng r;

    assert_int_equal(zipf_init(&z, 0, 0.99), -1);
    assert_int_equal(zipf_init(&z, 10, 0), -1);
    assert_int_equal(zipf_init(&z, 10, NAN), -1);

    assert_int_equal(zipf_init(&z, 1, 0.99), 0);
    rng_seed(&r, 1);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(zipf_next(&z, &r), 0);

    /* A billion keys: no table, indexes in range, the head is hot. */
    uint64_t n = 1000000000, first = 0, draws = 200000;
    assert_int_equal(zipf_init(&z, n, 0.99), 0);
    for (uint64_t i = 0; i < draws; i++) {
        uint64_t k = zipf_next(&z, &r);
        assert_true(k < n);
        first += k == 0;
    }
    /* P(rank 1) = 1 / H(1e9, 0.99) ~ 1/23.6 (H summed numerically). */
    assert_true(first > draws / 30 && first < draws / 17);
}

static void
test_uniform(void **state)
{
    (void)state;
    struct rng r, again;
    uint64_t count[10] = { 0 };
    double p[10];
    const uint64_t draws = 1000000;

    rng_seed(&r, 7);
    for (uint64_t i = 0; i < draws; i++) {
        uint64_t k = rng_below(&r, 10);
        assert_true(k < 10);
        count[k]++;
        double d = rng_double(&r);
        assert_true(d >= 0 && d < 1);
    }
    for (int k = 0; k < 10; k++)
        p[k] = 0.1;
    assert_counts(count, p, 10, draws);

    rng_seed(&r, 99);
    rng_seed(&again, 99);
    for (int i = 0; i < 100; i++)
        assert_true(rng_next(&r) == rng_next(&again));
    rng_seed(&again, 100);
    assert_true(rng_next(&r) != rng_next(&again));
}

/* key_name writes what snprintf("%s%010" PRIu64) writes, truncation
 * included. */
static void
test_key_name(void **state)
{
    (void)state;
    const char *prefixes[] = { "", "bench:", "s1k:", "a-much-longer-prefix/" };
    const uint64_t indexes[] = { 0, 7, 1234567890, 9999999999ull,
                                 10000000000ull, UINT64_MAX };
    const size_t caps[] = { 1, 2, 5, 11, 16, 64 };
    char want[64], got[64];

    for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
        for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++)
            for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
                int n = snprintf(want, caps[c], "%s%010" PRIu64, prefixes[p],
                                 indexes[i]);
                size_t wlen = (size_t)n < caps[c] ? (size_t)n : caps[c] - 1;
                memset(got, 'x', sizeof(got));
                size_t len = key_name(got, caps[c], prefixes[p],
                                      strlen(prefixes[p]), indexes[i]);
                assert_int_equal(len, wlen);
                assert_string_equal(got, want);
            }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zipf_099),
        cmocka_unit_test(test_zipf_other_exponents),
        cmocka_unit_test(test_zipf_edges),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_key_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

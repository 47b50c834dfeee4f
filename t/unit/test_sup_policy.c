/*
 * test_sup_policy.c - the supervisor's restart policy (sup_policy.c) on
 * made-up clocks: growth, cap, reset after a long life, the one-start-a-
 * second floor, and the give-up point after too many deaths.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sup.h"

/* A worker that dies right after every start, as soon as it may start. */
static void
test_crash_loop_backoff(void **state)
{
    const struct sup_backoff *b = &sup_default_backoff;
    static const int want_backoff[] = { 100, 200, 400, 800, 1600, 3200,
                                        6400, 10000, 10000, 10000 };
    int backoff = 0;
    int64_t started = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(want_backoff) / sizeof(want_backoff[0]);
         i++) {
        int64_t died = started + 5;
        int delay = sup_backoff_next(b, &backoff, started, died);
        assert_int_equal(backoff, want_backoff[i]);
        /* The 1 s floor since the last start hides the first doublings. */
        int floor = 1000 - 5;
        assert_int_equal(delay, want_backoff[i] > floor ? want_backoff[i]
                                                        : floor);
        started = died + delay;
    }
}

static void
test_reset_after_long_life(void **state)
{
    const struct sup_backoff *b = &sup_default_backoff;
    int backoff = 6400;
    (void)state;

    /* Up 29 s: still doubling, and no floor (the last start is old). */
    assert_int_equal(sup_backoff_next(b, &backoff, 0, 29000), 10000);
    /* Up 30 s: back to the minimum. */
    backoff = 6400;
    assert_int_equal(sup_backoff_next(b, &backoff, 0, 30000), 100);
    assert_int_equal(backoff, 100);
}

static void
test_never_twice_a_second(void **state)
{
    const struct sup_backoff *b = &sup_default_backoff;
    int backoff = 0;
    (void)state;

    /* Died 300 ms after its start: wait until 1 s after that start. */
    assert_int_equal(sup_backoff_next(b, &backoff, 10000, 10300), 700);
}

static void
test_too_many_deaths(void **state)
{
    const struct sup_backoff *b = &sup_default_backoff;
    int64_t deaths[SUP_DEATH_LIMIT_MAX];
    int n = 0;
    (void)state;

    /* Nine deaths in a minute are tolerated, the tenth is not. */
    for (int i = 0; i < 9; i++)
        assert_false(sup_death_record(b, deaths, &n, 1000 + i * 6000));
    assert_true(sup_death_record(b, deaths, &n, 1000 + 9 * 6000));
}

static void
test_spaced_deaths_are_fine(void **state)
{
    const struct sup_backoff *b = &sup_default_backoff;
    int64_t deaths[SUP_DEATH_LIMIT_MAX];
    int n = 0;
    (void)state;

    /* One death every 7 s: ten of them span 63 s, never 10 in 60 s. */
    for (int i = 0; i < 40; i++)
        assert_false(sup_death_record(b, deaths, &n, (int64_t)i * 7000));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_loop_backoff),
        cmocka_unit_test(test_reset_after_long_life),
        cmocka_unit_test(test_never_twice_a_second),
        cmocka_unit_test(test_too_many_deaths),
        cmocka_unit_test(test_spaced_deaths_are_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

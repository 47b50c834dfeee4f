/*
 * test_log.c - the per-second budget of log lines (log_rate_take).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "log.h"

/* per_s lines a second go out; the rest are counted, and reported once,
 * on the first call of a later second. */
static void
test_budget_and_dropped(void **state)
{
    struct log_rate r = { 0, 0, 0 };
    unsigned dropped;

    (void)state;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(log_rate_take(&r, 100, 3, &dropped), 1);
        assert_int_equal(dropped, 0);
    }
    for (int i = 0; i < 5; i++) {
        assert_int_equal(log_rate_take(&r, 100, 3, &dropped), 0);
        assert_int_equal(dropped, 0);
    }
    assert_int_equal(log_rate_take(&r, 101, 3, &dropped), 1);
    assert_int_equal(dropped, 5);
    assert_int_equal(log_rate_take(&r, 101, 3, &dropped), 1);
    assert_int_equal(dropped, 0);
    /* A quiet second in between: nothing was dropped in 101. */
    assert_int_equal(log_rate_take(&r, 103, 3, &dropped), 1);
    assert_int_equal(dropped, 0);
}

/* One line a second, the count of the refused ones carried into it. */
static void
test_one_a_second(void **state)
{
    struct log_rate r = { 0, 0, 0 };
    unsigned dropped;

    (void)state;
    assert_int_equal(log_rate_take(&r, 7, 1, &dropped), 1);
    assert_int_equal(log_rate_take(&r, 7, 1, &dropped), 0);
    assert_int_equal(log_rate_take(&r, 7, 1, &dropped), 0);
    assert_int_equal(log_rate_take(&r, 8, 1, &dropped), 1);
    assert_int_equal(dropped, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_and_dropped),
        cmocka_unit_test(test_one_a_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

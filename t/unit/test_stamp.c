/*
 * test_stamp.c - the order of clocks and stamps, and apply-if-newer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stamp.h"

static struct stamp
mk(uint64_t e, uint64_t c, const char *w, uint64_t nonce)
{
    struct stamp s = { e, c, (const uint8_t *)w, strlen(w), nonce };
    return s;
}

static void
test_clock_order(void **state)
{
    (void)state;
    struct clock a = { 1, 9 }, b = { 2, 0 }, c = { 2, 1 };
    assert_true(clock_cmp(&a, &b) < 0);
    assert_true(clock_cmp(&b, &c) < 0);
    assert_true(clock_cmp(&c, &a) > 0);
    assert_int_equal(clock_cmp(&c, &c), 0);
}

static void
test_stamp_tie_breaks(void **state)
{
    (void)state;
    struct stamp a = mk(3, 7, "n1/c0", 5);
    struct stamp b = mk(3, 7, "n2/c0", 1);
    struct stamp c = mk(3, 7, "n1/c0", 6);
    struct stamp d = mk(3, 7, "n1/c00", 0);
    struct stamp e = mk(3, 8, "a", 0);
    struct stamp f = mk(4, 0, "a", 0);
    assert_true(stamp_cmp(&a, &b) < 0);     /* writer bytes */
    assert_true(stamp_cmp(&b, &a) > 0);
    assert_true(stamp_cmp(&a, &c) < 0);     /* nonce */
    assert_true(stamp_cmp(&a, &d) < 0);     /* prefix is older */
    assert_true(stamp_cmp(&b, &e) < 0);     /* counter before writer */
    assert_true(stamp_cmp(&e, &f) < 0);     /* epoch before counter */
    assert_int_equal(stamp_cmp(&a, &a), 0);
}

static void
test_apply_if_newer(void **state)
{
    (void)state;
    struct stamp held = mk(2, 5, "w", 1);
    struct stamp older = mk(2, 4, "w", 9);
    struct stamp equal = mk(2, 5, "w", 1);
    struct stamp newer = mk(2, 6, "a", 0);
    assert_true(stamp_should_apply(NULL, &older));
    assert_false(stamp_should_apply(&held, &older));
    assert_false(stamp_should_apply(&held, &equal));
    assert_true(stamp_should_apply(&held, &newer));
}

static void
test_clock_raise_never_lowers(void **state)
{
    (void)state;
    struct clock c = { 5, 10 };
    assert_false(clock_raise(&c, 5, 9));
    assert_false(clock_raise(&c, 4, 100));
    assert_false(clock_raise(&c, 5, 10));
    assert_int_equal(c.epoch, 5);
    assert_int_equal(c.counter, 10);
    assert_true(clock_raise(&c, 5, 11));
    assert_int_equal(c.counter, 11);
    assert_true(clock_raise(&c, 6, 0));
    assert_int_equal(c.epoch, 6);
    assert_int_equal(c.counter, 0);
}

static void
test_clock_next(void **state)
{
    (void)state;
    struct clock seen[] = { { 3, 9 }, { 4, 2 }, { 4, 7 }, { 1, 50 } };
    struct clock n = clock_next(seen, 4);
    assert_int_equal(n.epoch, 4);
    assert_int_equal(n.counter, 8);
    for (size_t i = 0; i < 4; i++)
        assert_true(clock_cmp(&n, &seen[i]) > 0);
    struct clock none = clock_next(NULL, 0);
    assert_int_equal(none.epoch, 0);
    assert_int_equal(none.counter, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_order),
        cmocka_unit_test(test_stamp_tie_breaks),
        cmocka_unit_test(test_apply_if_newer),
        cmocka_unit_test(test_clock_raise_never_lowers),
        cmocka_unit_test(test_clock_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

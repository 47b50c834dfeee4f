/*
 * test_quorum.c - the quorum rules of worker/quorum.c, one event at a
 * time: required counts, newest-wins merge with absent and tombstones,
 * which replicas need repair, and UNAVAILABLE versus UNKNOWN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quorum.h"

enum { UNAVAILABLE = 2, UNKNOWN = 3 };

static const char *const names[] = { "n1", "n2", "n3", "n4", "n5" };

static struct stamp
mk(uint64_t e, uint64_t c, const char *w, uint64_t nonce)
{
    struct stamp s = { e, c, (const uint8_t *)w, strlen(w), nonce };
    return s;
}

static void
test_required(void **state)
{
    (void)state;
    assert_int_equal(quorum_required(QUORUM_CONS_QUORUM, 3, 0), 2);
    assert_int_equal(quorum_required(QUORUM_CONS_QUORUM, 5, 0), 3);
    assert_int_equal(quorum_required(QUORUM_CONS_QUORUM, 4, 0), 3);
    assert_int_equal(quorum_required(QUORUM_CONS_QUORUM, 1, 0), 1);
    assert_int_equal(quorum_required(QUORUM_CONS_QUORUM, 5, 4), 4);
    assert_int_equal(quorum_required(QUORUM_CONS_QUORUM, 3, 9), 2);
    assert_int_equal(quorum_required(QUORUM_CONS_ONE, 3, 2), 1);
    assert_int_equal(quorum_required(QUORUM_CONS_ALL, 3, 2), 3);
    assert_int_equal(quorum_required(77, 3, 2), 0);
}

static void
test_write_met_after_w_acks(void **state)
{
    (void)state;
    struct quorum q;
    quorum_init(&q, 3, 2);
    assert_int_equal(quorum_write_state(&q), QUORUM_WAIT);
    assert_true(quorum_ack(&q, 2));
    assert_int_equal(quorum_write_state(&q), QUORUM_WAIT);
    assert_false(quorum_ack(&q, 2));            /* a duplicate ack */
    assert_int_equal(quorum_count(&q, QREP_HOLDS), 1);
    assert_true(quorum_fail(&q, 0, "timeout"));
    assert_int_equal(quorum_write_state(&q), QUORUM_WAIT);
    assert_true(quorum_ack(&q, 1));
    assert_int_equal(quorum_write_state(&q), QUORUM_MET);
    /* A failure after an ack does not undo it. */
    assert_false(quorum_fail(&q, 1, "late"));
    assert_int_equal(quorum_write_state(&q), QUORUM_MET);
    quorum_free(&q);
}

static void
test_write_impossible_early(void **state)
{
    (void)state;
    struct quorum q;
    quorum_init(&q, 3, 2);
    quorum_fail(&q, 1, "not connected");
    assert_int_equal(quorum_write_state(&q), QUORUM_WAIT);
    quorum_fail(&q, 2, "not connected");
    /* One replica still pending, but two are needed: fail fast. */
    assert_int_equal(quorum_write_state(&q), QUORUM_IMPOSSIBLE);

    struct quorum all;
    quorum_init(&all, 3, 3);
    quorum_ack(&all, 0);
    quorum_fail(&all, 1, "timeout");
    assert_int_equal(quorum_write_state(&all), QUORUM_IMPOSSIBLE);
    quorum_free(&q);
    quorum_free(&all);
}

/* A write sent to 3 replicas (2 needed) that 0 and 1 refused for good. */
static void
sent_to_three_two_refused(struct quorum *q)
{
    quorum_init(q, 3, 2);
    for (unsigned i = 0; i < 3; i++)
        quorum_sent(q, i);
    quorum_refuse(q, 0, "INTERNAL: nothing applied");
    quorum_refuse(q, 1, "INTERNAL: nothing applied");
}

static void
test_unavailable_or_unknown(void **state)
{
    (void)state;
    struct quorum q;

    /* Clock phase failed: nothing was written. */
    quorum_init(&q, 3, 2);
    quorum_sent(&q, 0);
    quorum_expire(&q, "timeout");
    assert_int_equal(quorum_failure_status(&q, 0), UNAVAILABLE);

    /* Value phase: nothing left this node (all peers down, local
     * refused) -> still UNAVAILABLE. */
    quorum_init(&q, 3, 2);
    quorum_fail(&q, 0, "not connected");
    quorum_fail(&q, 1, "not connected");
    quorum_fail(&q, 2, "not connected");
    assert_int_equal(quorum_failure_status(&q, 1), UNAVAILABLE);

    /* Value phase: sent to one, then timed out -> may take effect. */
    quorum_init(&q, 3, 2);
    quorum_sent(&q, 1);
    quorum_fail(&q, 0, "not connected");
    quorum_expire(&q, "timeout");
    assert_int_equal(quorum_write_state(&q), QUORUM_IMPOSSIBLE);
    assert_int_equal(quorum_failure_status(&q, 1), UNKNOWN);

    /* Value phase: one acked, the others failed -> UNKNOWN too. */
    quorum_init(&q, 3, 2);
    quorum_ack(&q, 2);
    quorum_fail(&q, 0, "not connected");
    quorum_fail(&q, 1, "not connected");
    assert_int_equal(quorum_failure_status(&q, 1), UNKNOWN);

    /* Value phase: every replica it reached refused it for good (a full
     * disk, expired), the third was never reached -> UNAVAILABLE, even
     * as the caller marks the first two sent. */
    quorum_init(&q, 3, 2);
    quorum_sent(&q, 0);
    quorum_sent(&q, 1);
    assert_true(quorum_refuse(&q, 0, "INTERNAL: nothing applied"));
    assert_true(quorum_refuse(&q, 1, "UNAVAILABLE: expired"));
    quorum_fail(&q, 2, "not connected");
    quorum_sent(&q, 0);         /* marking sent again changes nothing */
    assert_int_equal(quorum_failure_status(&q, 1), UNAVAILABLE);

    /* ... but one that failed without refusing keeps it in doubt. */
    sent_to_three_two_refused(&q);
    quorum_expire(&q, "timeout");
    assert_int_equal(quorum_failure_status(&q, 1), UNKNOWN);

    /* Two refused, one pending: worth waiting for the third. */
    sent_to_three_two_refused(&q);
    assert_int_equal(quorum_write_state(&q), QUORUM_IMPOSSIBLE);
    assert_true(quorum_refusals_may_settle(&q));
    quorum_refuse(&q, 2, "INTERNAL: nothing applied");
    assert_false(quorum_refusals_may_settle(&q));     /* settled */
    assert_int_equal(quorum_failure_status(&q, 1), UNAVAILABLE);
    /* ... not if one failed without refusing, or one holds it. */
    quorum_init(&q, 3, 2);
    for (unsigned i = 0; i < 3; i++)
        quorum_sent(&q, i);
    quorum_refuse(&q, 0, "INTERNAL: nothing applied");
    quorum_fail(&q, 1, "UNAVAILABLE: storage worker late");
    assert_false(quorum_refusals_may_settle(&q));
    quorum_init(&q, 5, 4);
    quorum_ack(&q, 0);
    quorum_refuse(&q, 1, "INTERNAL: nothing applied");
    quorum_refuse(&q, 2, "INTERNAL: nothing applied");
    assert_false(quorum_refusals_may_settle(&q));
    /* A failure before the value left never stands in the way. */
    quorum_init(&q, 3, 2);
    quorum_sent(&q, 0);
    quorum_refuse(&q, 0, "INTERNAL: nothing applied");
    quorum_fail(&q, 1, "not connected");
    assert_true(quorum_refusals_may_settle(&q));

    /* A refusal after the replica acknowledged does not count. */
    quorum_init(&q, 3, 2);
    quorum_sent(&q, 0);
    quorum_ack(&q, 0);
    assert_false(quorum_refuse(&q, 0, "late duplicate"));
    quorum_refuse(&q, 1, "INTERNAL: nothing applied");
    quorum_refuse(&q, 2, "INTERNAL: nothing applied");
    assert_int_equal(quorum_failure_status(&q, 1), UNKNOWN);
    quorum_free(&q);
}

static void
test_describe_names_failed(void **state)
{
    (void)state;
    struct quorum q;
    char buf[256];

    quorum_init(&q, 3, 2);
    quorum_ack(&q, 0);
    quorum_fail(&q, 1, "not connected");
    quorum_expire(&q, "timeout");
    quorum_describe(&q, names, buf, sizeof(buf));
    assert_string_equal(buf, "2 of 3 replicas needed; failed: "
                             "node n2 (not connected), node n3 (timeout)");

    /* Truncation is safe and reports the full length. */
    char small[10];
    int n = quorum_describe(&q, names, small, sizeof(small));
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(small, "2 of 3 re");
    assert_int_equal(quorum_describe(&q, names, NULL, 0), n);
    quorum_free(&q);
}

static void
test_read_agree(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp v = mk(1, 5, "n1/c0", 9);

    quorum_init(&q, 3, 2);
    assert_int_equal(quorum_answer(&q, 1, &v), QANS_FIRST);
    assert_int_equal(q.winner_index, 1);
    assert_int_equal(quorum_read_state(&q), QUORUM_WAIT);
    struct stamp same = mk(1, 5, "n1/c0", 9);
    assert_int_equal(quorum_answer(&q, 2, &same), QANS_EQUAL);
    assert_true(q.decided);
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    /* The winner's writer is a copy, not the caller's bytes. */
    assert_ptr_not_equal(q.winner.writer, v.writer);
    assert_memory_equal(q.winner.writer, "n1/c0", 5);
    quorum_free(&q);
}

static void
test_read_all_absent(void **state)
{
    (void)state;
    struct quorum q;

    quorum_init(&q, 3, 2);
    assert_int_equal(quorum_answer(&q, 0, NULL), QANS_EQUAL);
    assert_int_equal(quorum_answer(&q, 2, NULL), QANS_EQUAL);
    assert_false(q.have_winner);
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    quorum_free(&q);
}

static void
test_read_newest_wins_then_repair(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp old = mk(1, 5, "n1/c0", 1);
    struct stamp newer = mk(1, 6, "n2/c0", 1);

    quorum_init(&q, 3, 2);
    assert_int_equal(quorum_answer(&q, 0, &old), QANS_FIRST);
    assert_int_equal(quorum_answer(&q, 1, &newer), QANS_NEWER);
    assert_int_equal(q.winner_index, 1);
    assert_true(q.decided);
    assert_int_equal(q.rep[0], QREP_STALE);
    assert_int_equal(quorum_read_state(&q), QUORUM_REPAIR);

    quorum_repairing(&q, 0);
    assert_int_equal(q.rep[0], QREP_REPAIRING);
    assert_int_equal(quorum_read_state(&q), QUORUM_WAIT);

    /* A late stale answer from the third replica needs repair too. */
    assert_int_equal(quorum_answer(&q, 2, NULL), QANS_OLDER);
    assert_int_equal(q.rep[2], QREP_STALE);
    assert_int_equal(quorum_read_state(&q), QUORUM_REPAIR);
    quorum_repairing(&q, 2);

    assert_true(quorum_ack(&q, 0));
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    quorum_free(&q);
}

static void
test_read_absent_versus_version(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp v = mk(2, 1, "n3/c1", 4);

    /* Absent first, then a version: the absent replica is stale. */
    quorum_init(&q, 3, 2);
    assert_int_equal(quorum_answer(&q, 0, NULL), QANS_EQUAL);
    assert_int_equal(quorum_answer(&q, 2, &v), QANS_FIRST);
    assert_int_equal(q.rep[0], QREP_STALE);
    assert_int_equal(quorum_read_state(&q), QUORUM_REPAIR);
    quorum_free(&q);
}

static void
test_read_tombstone_is_a_version(void **state)
{
    (void)state;
    struct quorum q;
    /* A tombstone is newer than the value it deleted and wins the same
     * way; the caller answers NOT_FOUND but still repairs. */
    struct stamp value = mk(3, 1, "n1/c0", 1);
    struct stamp tomb = mk(3, 2, "n1/c0", 2);

    quorum_init(&q, 3, 2);
    quorum_answer(&q, 0, &tomb);
    quorum_answer(&q, 1, &value);
    assert_int_equal(q.winner_index, 0);
    assert_int_equal(q.rep[1], QREP_STALE);
    assert_int_equal(quorum_read_state(&q), QUORUM_REPAIR);
    quorum_free(&q);
}

static void
test_read_late_newer_counts_as_holding(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp a = mk(1, 1, "x", 1), b = mk(1, 2, "x", 2);

    quorum_init(&q, 3, 2);
    quorum_answer(&q, 0, &a);
    quorum_answer(&q, 1, NULL);
    assert_true(q.decided);
    quorum_repairing(&q, 1);
    /* A concurrent write reached replica 2 after the decision. */
    assert_int_equal(quorum_answer(&q, 2, &b), QANS_NEWER_LATE);
    assert_int_equal(q.winner_index, 0);        /* frozen */
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    quorum_free(&q);
}

static void
test_read_impossible(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp v = mk(1, 1, "x", 1);

    quorum_init(&q, 3, 2);
    quorum_answer(&q, 0, &v);
    quorum_fail(&q, 1, "not connected");
    assert_int_equal(quorum_read_state(&q), QUORUM_WAIT);
    quorum_fail(&q, 2, "timeout");
    assert_int_equal(quorum_read_state(&q), QUORUM_IMPOSSIBLE);
    assert_int_equal(quorum_failure_status(&q, 0), UNAVAILABLE);

    quorum_free(&q);

    /* Decided, but the repair of the only other answer failed. */
    struct stamp old = mk(1, 0, "x", 1);
    quorum_init(&q, 3, 2);
    quorum_answer(&q, 0, &v);
    quorum_answer(&q, 1, &old);
    quorum_fail(&q, 2, "timeout");
    quorum_repairing(&q, 1);
    quorum_fail(&q, 1, "storage error");
    assert_int_equal(quorum_read_state(&q), QUORUM_IMPOSSIBLE);
    quorum_free(&q);
}

static void
test_read_one_and_all(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp v = mk(1, 1, "x", 1);

    quorum_init(&q, 3, quorum_required(QUORUM_CONS_ONE, 3, 0));
    quorum_answer(&q, 2, NULL);
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    /* Late answers after ONE was met still show who is stale. */
    assert_int_equal(quorum_answer(&q, 0, &v), QANS_NEWER_LATE);
    quorum_free(&q);

    quorum_init(&q, 3, quorum_required(QUORUM_CONS_ALL, 3, 0));
    quorum_answer(&q, 0, &v);
    quorum_answer(&q, 1, &v);
    assert_int_equal(quorum_read_state(&q), QUORUM_WAIT);
    quorum_answer(&q, 2, &v);
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    quorum_free(&q);
}

static void
test_ignores_bad_index_and_duplicates(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp v = mk(1, 1, "x", 1);

    quorum_init(&q, 3, 2);
    assert_int_equal(quorum_answer(&q, 7, &v), QANS_IGNORED);
    assert_false(quorum_ack(&q, 3));
    assert_false(quorum_fail(&q, 99, "x"));
    quorum_answer(&q, 0, &v);
    assert_int_equal(quorum_answer(&q, 0, &v), QANS_IGNORED);
    assert_int_equal(quorum_answered(&q), 1);
    quorum_free(&q);

    /* More replicas than the bound are clamped, not overrun. */
    quorum_init(&q, QUORUM_MAX_REPLICAS + 5, 2);
    assert_int_equal(q.n, QUORUM_MAX_REPLICAS);
    quorum_free(&q);
}

static void
test_many_answers_newest_wins(void **state)
{
    (void)state;
    struct quorum q;
    /* Five replicas, ties broken by writer then nonce. */
    struct stamp s[5] = {
        mk(4, 9, "a", 1), mk(4, 9, "b", 0), mk(4, 9, "b", 3),
        mk(4, 8, "z", 9), mk(3, 99, "z", 9),
    };
    quorum_init(&q, 5, 5);
    for (unsigned i = 0; i < 5; i++)
        quorum_answer(&q, i, &s[i]);
    assert_int_equal(q.winner_index, 2);
    assert_int_equal(quorum_count(&q, QREP_HOLDS), 1);
    assert_int_equal(quorum_count(&q, QREP_STALE), 4);
    assert_int_equal(quorum_read_state(&q), QUORUM_REPAIR);
    quorum_free(&q);
}

/*
 * While node "new" joins and "x" leaves, a key's replicas are y and z
 * (both placements), new (after only) and x (before only); QUORUM needs 2
 * of 3 in each placement.
 */
enum { Y, Z, NEW, X };
static const uint8_t joint_in[4] = {
    QUORUM_AFTER | QUORUM_BEFORE, QUORUM_AFTER | QUORUM_BEFORE,
    QUORUM_AFTER, QUORUM_BEFORE,
};

static void
test_joint_write_needs_both_placements(void **state)
{
    (void)state;
    struct quorum q, v;
    quorum_init_joint(&q, 4, joint_in, 2, 2);
    quorum_ack(&q, Z);
    quorum_ack(&q, NEW);
    /* 2 of 3 after the change, but only 1 of 3 before it. */
    assert_int_equal(quorum_write_state(&q), QUORUM_WAIT);
    quorum_ack(&q, X);
    assert_int_equal(quorum_write_state(&q), QUORUM_MET);

    /* The value round keeps the same groups. */
    quorum_init_like(&v, &q);
    assert_int_equal(v.required_before, 2);
    assert_memory_equal(v.in, joint_in, 4);
    quorum_ack(&v, Y);
    quorum_ack(&v, X);
    assert_int_equal(quorum_write_state(&v), QUORUM_WAIT);
    quorum_fail(&v, NEW, "timeout");
    quorum_fail(&v, Z, "timeout");
    /* Before: Y and X hold it; after: only Y can. */
    assert_int_equal(quorum_write_state(&v), QUORUM_IMPOSSIBLE);

    char buf[256];
    const char *const jn[] = { "y", "z", "new", "x" };
    quorum_describe(&v, jn, buf, sizeof(buf));
    assert_string_equal(buf, "2 of 3 replicas after the membership change "
                        "and 2 of 3 before it needed; failed: node z "
                        "(timeout), node new (timeout)");
    quorum_free(&q);
    quorum_free(&v);
}

/*
 * The read a membership change must not get wrong: the latest version is
 * on x and y only (z missed it, new never had it), and y is down.  The
 * placement after the change alone would read z and new, both empty, and
 * answer "not found"; the joint read waits for a second replica of the
 * placement before, finds x's version, and repairs z and new.
 */
static void
test_joint_read_finds_what_before_held(void **state)
{
    (void)state;
    struct quorum q;
    struct stamp v = mk(1, 9, "w", 1);
    quorum_init_joint(&q, 4, joint_in, 2, 2);
    quorum_answer(&q, NEW, NULL);
    quorum_answer(&q, Z, NULL);
    assert_false(q.decided);
    assert_int_equal(quorum_read_state(&q), QUORUM_WAIT);
    quorum_fail(&q, Y, "not connected");
    assert_int_equal(quorum_answer(&q, X, &v), QANS_FIRST);
    assert_true(q.decided);
    assert_int_equal(q.winner_index, X);
    assert_int_equal(quorum_read_state(&q), QUORUM_REPAIR);
    quorum_repairing(&q, Z);
    quorum_repairing(&q, NEW);
    quorum_ack(&q, Z);
    assert_int_equal(quorum_read_state(&q), QUORUM_WAIT);
    quorum_ack(&q, NEW);
    assert_int_equal(quorum_read_state(&q), QUORUM_MET);
    quorum_free(&q);

    /* With x down too, the placement before has one answer left. */
    quorum_init_joint(&q, 4, joint_in, 2, 2);
    quorum_answer(&q, NEW, NULL);
    quorum_answer(&q, Z, NULL);
    quorum_fail(&q, Y, "not connected");
    quorum_fail(&q, X, "not connected");
    assert_int_equal(quorum_read_state(&q), QUORUM_IMPOSSIBLE);
    quorum_free(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_write_met_after_w_acks),
        cmocka_unit_test(test_write_impossible_early),
        cmocka_unit_test(test_unavailable_or_unknown),
        cmocka_unit_test(test_describe_names_failed),
        cmocka_unit_test(test_read_agree),
        cmocka_unit_test(test_read_all_absent),
        cmocka_unit_test(test_read_newest_wins_then_repair),
        cmocka_unit_test(test_read_absent_versus_version),
        cmocka_unit_test(test_read_tombstone_is_a_version),
        cmocka_unit_test(test_read_late_newer_counts_as_holding),
        cmocka_unit_test(test_read_impossible),
        cmocka_unit_test(test_read_one_and_all),
        cmocka_unit_test(test_ignores_bad_index_and_duplicates),
        cmocka_unit_test(test_many_answers_newest_wins),
        cmocka_unit_test(test_joint_write_needs_both_placements),
        cmocka_unit_test(test_joint_read_finds_what_before_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

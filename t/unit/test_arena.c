/*
 * test_arena.c - the unpacking arena (common/arena.c): pieces are aligned
 * and do not overlap, a reset keeps one block and settles on one block
 * the size of what the last message needed, and protobuf-c unpacks into
 * it exactly what it unpacks with malloc.
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "rzkv.pb-c.h"

#ifdef ARENA_POISONS
#include <sanitizer/asan_interface.h>
#endif

static void
test_pieces_aligned_and_apart(void **state)
{
    (void)state;
    struct arena a;
    unsigned char *p[64];
    size_t sizes[64];

    arena_init(&a);
    for (size_t i = 0; i < 64; i++) {
        sizes[i] = (i * 37) % 700;
        p[i] = arena_alloc(&a, sizes[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % alignof(max_align_t), 0);
        memset(p[i], (int)i, sizes[i]);
    }
    /* Every piece still holds what was written to it: none overlap. */
    for (size_t i = 0; i < 64; i++)
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal(p[i][j], (unsigned char)i);
    arena_free(&a);
}

static void
test_reset_reuses_block(void **state)
{
    (void)state;
    struct arena a;

    arena_init(&a);
    void *first = arena_alloc(&a, 100);
    assert_non_null(first);
    arena_reset(&a);
    /* One block, kept: the next message starts where the last one did. */
    assert_ptr_equal(arena_alloc(&a, 100), first);
    arena_free(&a);
}

static void
test_settles_on_one_block(void **state)
{
    (void)state;
    struct arena a;
    enum { PIECES = 40, PIECE = 1000 };
    unsigned char *p[PIECES];

    arena_init(&a);
    /* 40 KB in 1 KB pieces takes several blocks the first time... */
    for (size_t i = 0; i < PIECES; i++)
        assert_non_null(p[i] = arena_alloc(&a, PIECE));
    /* (Pieces of one block are a fixed stride apart: the first two
     * share the first block.) */
    ptrdiff_t stride = p[1] - p[0];
    assert_true(stride >= PIECE);
    int blocks = 1;
    for (size_t i = 1; i < PIECES; i++)
        if (p[i] - p[i - 1] != stride)
            blocks++;
    assert_true(blocks > 1);
    arena_reset(&a);
    /* ...and one block after a reset: every piece follows the last. */
    unsigned char *last = arena_alloc(&a, PIECE);
    assert_non_null(last);
    for (size_t i = 1; i < PIECES; i++) {
        unsigned char *q = arena_alloc(&a, PIECE);
        assert_true(q - last == stride);
        last = q;
    }
    arena_free(&a);
}

static void
test_big_block_not_kept(void **state)
{
    (void)state;
    struct arena a;

    arena_init(&a);
    unsigned char *big = arena_alloc(&a, ARENA_KEEP_MAX * 2);
    assert_non_null(big);
    memset(big, 1, ARENA_KEEP_MAX * 2);
    arena_reset(&a);
    /* Freed: a small message after a huge one holds a small block.  The
     * address may repeat (malloc's choice), so check the arena's own
     * record of what to keep instead. */
    assert_null(a.head);
    assert_int_equal(a.want, 0);
    assert_non_null(arena_alloc(&a, 10));
    arena_free(&a);

    /* A lower keep: the first block (4 KiB) is already over it. */
    arena_init(&a);
    a.keep = 1024;
    assert_non_null(arena_alloc(&a, 100));
    arena_reset(&a);
    assert_null(a.head);
    arena_free(&a);
}

static void
test_zero_and_huge(void **state)
{
    (void)state;
    struct arena a;

    arena_init(&a);
    assert_non_null(arena_alloc(&a, 0));
    assert_null(arena_alloc(&a, SIZE_MAX - 8));
    /* The arena still works after a refusal. */
    assert_non_null(arena_alloc(&a, 64));
    arena_free(&a);
}

#ifdef ARENA_POISONS
/* Under AddressSanitizer, the byte past a piece and the pieces of a
 * reset arena are poisoned, so overruns are caught as between mallocs.
 * (Only in ASan builds: cmocka's skip() reads as a failure to automake's
 * TAP driver.) */
static void
test_overrun_poisoned(void **state)
{
    (void)state;
    struct arena a;

    arena_init(&a);
    unsigned char *p = arena_alloc(&a, 10);
    unsigned char *q = arena_alloc(&a, 32);
    assert_false(__asan_address_is_poisoned(p + 9));
    assert_true(__asan_address_is_poisoned(p + 10));
    assert_true(__asan_address_is_poisoned(q + 32));
    arena_reset(&a);
    assert_true(__asan_address_is_poisoned(p));
    assert_true(__asan_address_is_poisoned(q));
    arena_free(&a);
}
#endif

/* A batch unpacked into an arena equals the same batch unpacked with
 * malloc, field by field, and survives reuse of the arena. */
static void
test_protobuf_unpack(void **state)
{
    (void)state;
    static uint8_t value[3000];
    Rzkv__Stamp st = RZKV__STAMP__INIT;
    Rzkv__Entry e = RZKV__ENTRY__INIT;
    Rzkv__ReplicaSet rs = RZKV__REPLICA_SET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
    Rzkv__NodeOp *ops[20];
    Rzkv__NodeBatch nb = RZKV__NODE_BATCH__INIT;
    Rzkv__Envelope env = RZKV__ENVELOPE__INIT;

    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)(i * 7);
    st.epoch = 5;
    st.counter = 77;
    st.writer.data = (uint8_t *)"writer-id";
    st.writer.len = 9;
    e.key.data = (uint8_t *)"some-key";
    e.key.len = 8;
    e.stamp = &st;
    e.value.data = value;
    e.value.len = sizeof(value);
    rs.entry = &e;
    rs.expires_ms = 123456;
    op.op_case = RZKV__NODE_OP__OP_SET;
    op.set = &rs;
    for (size_t i = 0; i < 20; i++)
        ops[i] = &op;
    nb.n_ops = 20;
    nb.ops = ops;
    env.msg_case = RZKV__ENVELOPE__MSG_NODE;
    env.node = &nb;

    size_t len = rzkv__envelope__get_packed_size(&env);
    uint8_t *packed = malloc(len);
    assert_non_null(packed);
    rzkv__envelope__pack(&env, packed);

    struct arena a;
    arena_init(&a);
    for (int round = 0; round < 3; round++) {
        Rzkv__Envelope *got = rzkv__envelope__unpack(&a.pb, len, packed);
        assert_non_null(got);
        assert_int_equal(got->msg_case, RZKV__ENVELOPE__MSG_NODE);
        assert_int_equal(got->node->n_ops, 20);
        for (size_t i = 0; i < 20; i++) {
            const Rzkv__Entry *ge = got->node->ops[i]->set->entry;
            assert_int_equal(got->node->ops[i]->set->expires_ms, 123456);
            assert_memory_equal(ge->key.data, "some-key", 8);
            assert_int_equal(ge->stamp->counter, 77);
            assert_int_equal(ge->value.len, sizeof(value));
            assert_memory_equal(ge->value.data, value, sizeof(value));
            /* The value is a copy, not a view of the packed bytes. */
            assert_false(ge->value.data >= packed &&
                         ge->value.data < packed + len);
        }
        /* Packing it again gives the same bytes. */
        uint8_t *again = malloc(len);
        assert_non_null(again);
        assert_int_equal(rzkv__envelope__pack(got, again), len);
        assert_memory_equal(again, packed, len);
        free(again);
        arena_reset(&a);
    }
    /* Broken bytes: NULL, and the arena is still usable. */
    assert_null(rzkv__envelope__unpack(&a.pb, len - 100, packed));
    arena_reset(&a);
    assert_non_null(rzkv__envelope__unpack(&a.pb, len, packed));
    arena_free(&a);
    free(packed);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_aligned_and_apart),
        cmocka_unit_test(test_reset_reuses_block),
        cmocka_unit_test(test_settles_on_one_block),
        cmocka_unit_test(test_big_block_not_kept),
        cmocka_unit_test(test_zero_and_huge),
#ifdef ARENA_POISONS
        cmocka_unit_test(test_overrun_poisoned),
#endif
        cmocka_unit_test(test_protobuf_unpack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

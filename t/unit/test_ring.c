/*
 * test_ring.c - rendezvous placement: the original system's vectors,
 * MurmurHash3 check values, balance, and minimal movement on a join.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring.h"

static int
unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return (int)(n / 2);
}

/* Split s in place at sep; returns the number of fields. */
static size_t
split(char *s, char sep, char **fields, size_t cap)
{
    size_t n = 0;
    fields[n++] = s;
    for (char *p = s; *p && n < cap; p++)
        if (*p == sep) {
            *p = '\0';
            fields[n++] = p + 1;
        }
    return n;
}

static void
test_placement_vectors(void **state)
{
    (void)state;
    const char *dir = getenv("RZKV_VECTORS");
    char path[4096];
    snprintf(path, sizeof(path), "%s/placement.tsv",
             dir ? dir : "../shared/vectors");
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        print_message("# no vectors at %s\n", path);
        skip();
    }
    char line[65536];
    int cases = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *col[5];
        assert_int_equal(split(line, '\t', col, 5), 5);
        uint32_t seed = (uint32_t)strtoul(col[0], NULL, 10);
        size_t rf = strtoul(col[1], NULL, 10);
        char *ids[64], *want[64];
        size_t n = split(col[2], ',', ids, 64);
        size_t nwant = split(col[4], ',', want, 64);
        static uint8_t key[16384];
        int klen = unhex(col[3], key, sizeof(key));
        assert_true(klen >= 0);

        struct ring ring;
        assert_int_equal(ring_init(&ring, seed, (const char *const *)ids,
                                   n), 0);
        size_t out[64];
        size_t got = ring_locate(&ring, key, (size_t)klen, rf, out);
        assert_int_equal(got, nwant);
        for (size_t i = 0; i < got; i++) {
            if (strcmp(ring.nodes[out[i]].id, want[i]) != 0)
                fail_msg("vector %d (key %s): replica %zu is %s, want %s",
                         cases + 1, col[3], i, ring.nodes[out[i]].id,
                         want[i]);
        }
        ring_free(&ring);
        cases++;
    }
    fclose(f);
    assert_true(cases >= 200);
}

static void
test_murmur_check_values(void **state)
{
    (void)state;
    /* Reference values of MurmurHash3 (SMHasher). */
    assert_int_equal(ring_node_hash(0, "", 0), 0);
    assert_int_equal(ring_node_hash(1, "", 0), 0x514E28B7u);
    assert_int_equal(ring_node_hash(0xffffffffu, "", 0), 0x81F16F39u);
    assert_int_equal(ring_node_hash(0, "\xff\xff\xff\xff", 4), 0x76293B50u);
    assert_int_equal(ring_node_hash(0x9747b28cu, "Hello, world!", 13),
                     0x24884CBAu);
    assert_int_equal(ring_node_hash(0x9747b28cu, "aaaa", 4), 0x5A97808Au);
    /* x64_128 of "" with seed 0 is all zero; of "hello" seed 0 known. */
    assert_true(ring_score(0, "", 0) == 0);
    assert_true(ring_score(0, "hello", 5) == 0xcbd8a7b341bd9b02ULL);
}

static void
test_balance(void **state)
{
    (void)state;
    const char *ids[] = { "n1", "n2", "n3", "n4", "n5" };
    struct ring ring;
    size_t counts[5] = { 0 };
    assert_int_equal(ring_init(&ring, 0, ids, 5), 0);
    for (int i = 0; i < 100000; i++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "key-%d", i);
        size_t out[1];
        assert_int_equal(ring_locate(&ring, key, (size_t)len, 1, out), 1);
        counts[out[0]]++;
    }
    for (size_t i = 0; i < 5; i++) {
        if (counts[i] < 18000 || counts[i] > 22000)
            fail_msg("node %s is primary for %zu of 100000 keys",
                     ids[i], counts[i]);
    }
    ring_free(&ring);
}

static void
test_join_moves_only_to_new_node(void **state)
{
    (void)state;
    const char *ids[] = { "a", "b", "c", "d", "e" };
    struct ring before, after;
    assert_int_equal(ring_init(&before, 7, ids, 4), 0);
    assert_int_equal(ring_init(&after, 7, ids, 5), 0);
    size_t moved = 0;
    for (int i = 0; i < 20000; i++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "user:%d", i);
        size_t o1[3], o2[3];
        ring_locate(&before, key, (size_t)len, 3, o1);
        ring_locate(&after, key, (size_t)len, 3, o2);
        /* Every replica of the new set is either the new node or was a
         * replica before: no key moves between old nodes. */
        for (size_t r = 0; r < 3; r++) {
            if (o2[r] == 4) {
                moved++;
                continue;
            }
            int found = 0;
            for (size_t s = 0; s < 3; s++)
                found |= o1[s] == o2[r];
            assert_true(found);
        }
    }
    /* The new node takes about 3/5 of keys as one of three replicas. */
    assert_true(moved > 20000 * 50 / 100 && moved < 20000 * 70 / 100);
    ring_free(&before);
    ring_free(&after);
}

static void
test_shard_stable_and_spread(void **state)
{
    (void)state;
    size_t counts[4] = { 0 };
    assert_int_equal(ring_shard("k", 1, 1), 0);
    for (int i = 0; i < 40000; i++) {
        char key[32];
        int len = snprintf(key, sizeof(key), "k%d", i);
        unsigned s = ring_shard(key, (size_t)len, 4);
        assert_true(s < 4);
        assert_int_equal(s, ring_shard(key, (size_t)len, 4));
        counts[s]++;
    }
    for (size_t i = 0; i < 4; i++)
        assert_true(counts[i] > 9000 && counts[i] < 11000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_vectors),
        cmocka_unit_test(test_murmur_check_values),
        cmocka_unit_test(test_balance),
        cmocka_unit_test(test_join_moves_only_to_new_node),
        cmocka_unit_test(test_shard_stable_and_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

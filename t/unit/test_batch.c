/*
 * test_batch.c - raw NodeBatch records (worker/batch.c) against
 * protobuf-c: a batch built from records unpacks as the same operations,
 * a reply packed by protobuf-c scans into the same results, and broken
 * bytes are refused rather than overread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch.h"
#include "rzkv.pb-c.h"

static void
test_varint(void **state)
{
    (void)state;
    uint8_t buf[16];
    const uint64_t vals[] = { 0, 1, 127, 128, 300, 16383, 16384,
                              0xffffffffu, UINT64_MAX };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint8_t *end = batch_put_varint(buf, vals[i]);
        assert_int_equal((size_t)(end - buf), batch_varint_len(vals[i]));
    }
    assert_int_equal(batch_varint_len(UINT64_MAX), 10);
}

/* Ops packed one by one, glued as records, unpack as one Envelope. */
static void
test_batch_matches_protobuf(void **state)
{
    (void)state;
    Rzkv__NodeOp ops[3];
    Rzkv__ReplicaGet g = RZKV__REPLICA_GET__INIT;
    Rzkv__ClockGet cg = RZKV__CLOCK_GET__INIT;
    Rzkv__ReplicaSet rs = RZKV__REPLICA_SET__INIT;
    Rzkv__Entry e = RZKV__ENTRY__INIT;
    Rzkv__Stamp st = RZKV__STAMP__INIT;
    static uint8_t big[1000];
    uint8_t packed[3][1200];
    size_t len[3], body = 0;

    memset(big, 0xab, sizeof(big));
    g.key.data = (uint8_t *)"alpha";
    g.key.len = 5;
    cg.key.data = (uint8_t *)"beta";
    cg.key.len = 4;
    st.epoch = 3;
    st.counter = 9;
    e.key.data = (uint8_t *)"gamma";
    e.key.len = 5;
    e.stamp = &st;
    e.value.data = big;
    e.value.len = sizeof(big);
    rs.entry = &e;
    for (int i = 0; i < 3; i++)
        rzkv__node_op__init(&ops[i]);
    ops[0].op_case = RZKV__NODE_OP__OP_GET;
    ops[0].get = &g;
    ops[1].op_case = RZKV__NODE_OP__OP_CLOCK_GET;
    ops[1].clock_get = &cg;
    ops[2].op_case = RZKV__NODE_OP__OP_SET;
    ops[2].set = &rs;
    for (int i = 0; i < 3; i++) {
        len[i] = rzkv__node_op__pack(&ops[i], packed[i]);
        body += batch_record_len(BATCH_OPS, len[i]);
    }
    size_t total = batch_record_len(BATCH_ENVELOPE_NODE, body);
    uint8_t *msg = malloc(total);
    uint8_t *p = batch_put_header(msg, BATCH_ENVELOPE_NODE, body);
    for (int i = 0; i < 3; i++)
        p = batch_put_record(p, BATCH_OPS, packed[i], len[i]);
    assert_int_equal((size_t)(p - msg), total);

    Rzkv__Envelope *env = rzkv__envelope__unpack(NULL, total, msg);
    assert_non_null(env);
    assert_int_equal(env->msg_case, RZKV__ENVELOPE__MSG_NODE);
    assert_int_equal(env->node->n_ops, 3);
    assert_memory_equal(env->node->ops[0]->get->key.data, "alpha", 5);
    assert_memory_equal(env->node->ops[1]->clock_get->key.data, "beta", 4);
    assert_int_equal(env->node->ops[2]->set->entry->stamp->counter, 9);
    assert_int_equal(env->node->ops[2]->set->entry->value.len, 1000);
    rzkv__envelope__free_unpacked(env, NULL);
    free(msg);
}

static size_t
pack_reply(uint8_t *buf, Rzkv__Status status, const char *message,
           size_t nresults)
{
    Rzkv__Reply r = RZKV__REPLY__INIT;
    Rzkv__NodeBatchReply br = RZKV__NODE_BATCH_REPLY__INIT;
    Rzkv__NodeResult res[4], *rp[4];
    Rzkv__Clock clk = RZKV__CLOCK__INIT;

    clk.epoch = 7;
    for (size_t i = 0; i < nresults; i++) {
        rzkv__node_result__init(&res[i]);
        res[i].status = i == 1 ? RZKV__STATUS__NOT_FOUND : RZKV__STATUS__OK;
        res[i].clock = i == 2 ? &clk : NULL;
        rp[i] = &res[i];
    }
    br.n_results = nresults;
    br.results = rp;
    r.status = status;
    r.message = (char *)message;
    if (status == RZKV__STATUS__OK) {
        r.body_case = RZKV__REPLY__BODY_NODE;
        r.node = &br;
    }
    return rzkv__reply__pack(&r, buf);
}

static void
test_scan_reply(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct batch_reply br;
    size_t n = pack_reply(buf, RZKV__STATUS__OK, "", 3);

    assert_int_equal(batch_scan_reply(buf, n, &br), 0);
    assert_int_equal(br.status, 0);
    assert_non_null(br.results);
    const uint8_t *p = br.results, *end = br.results + br.results_len;
    const uint8_t *rec;
    size_t len;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(batch_next_result(&p, end, &rec, &len), 1);
        Rzkv__NodeResult *r = rzkv__node_result__unpack(NULL, len, rec);
        assert_non_null(r);
        assert_int_equal(r->status, i == 1 ? RZKV__STATUS__NOT_FOUND
                                           : RZKV__STATUS__OK);
        if (i == 2)
            assert_int_equal(r->clock->epoch, 7);
        rzkv__node_result__free_unpacked(r, NULL);
    }
    assert_int_equal(batch_next_result(&p, end, &rec, &len), 0);
}

static void
test_scan_error_reply(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct batch_reply br;
    size_t n = pack_reply(buf, RZKV__STATUS__INVALID, "too many", 0);

    assert_int_equal(batch_scan_reply(buf, n, &br), 0);
    assert_int_equal(br.status, RZKV__STATUS__INVALID);
    assert_int_equal(br.message_len, 8);
    assert_memory_equal(br.message, "too many", 8);
    assert_null(br.results);
    /* An empty reply is all defaults: OK, no results. */
    assert_int_equal(batch_scan_reply(buf, 0, &br), 0);
    assert_int_equal(br.status, 0);
}

static void
test_scan_refuses_broken(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct batch_reply br;
    size_t n = pack_reply(buf, RZKV__STATUS__OK, "", 3);

    /* Every truncation is either refused or scans without overreading
     * (the results body then ends early, which the caller sees as
     * fewer results). */
    for (size_t cut = 0; cut < n; cut++) {
        if (batch_scan_reply(buf, cut, &br) != 0)
            continue;
        if (br.results != NULL)
            assert_true(br.results + br.results_len <= buf + cut);
    }
    /* A length running past the end. */
    const uint8_t longlen[] = { 0x5a, 0x7f, 0x01 };
    assert_int_equal(batch_scan_reply(longlen, sizeof(longlen), &br), -1);
    /* A varint that never ends. */
    uint8_t endless[12];
    memset(endless, 0xff, sizeof(endless));
    assert_int_equal(batch_scan_reply(endless, sizeof(endless), &br), -1);
    /* Wire types 3, 4 (groups), 6 and 7 are not protobuf 3. */
    const uint8_t group[] = { 0x0b, 0x00 };
    assert_int_equal(batch_scan_reply(group, sizeof(group), &br), -1);
    /* Field number 0 is invalid. */
    const uint8_t zero[] = { 0x00, 0x00 };
    assert_int_equal(batch_scan_reply(zero, sizeof(zero), &br), -1);
    /* Two NodeBatchReply pieces are refused, not half-read. */
    const uint8_t twice[] = { 0x5a, 0x00, 0x5a, 0x00 };
    assert_int_equal(batch_scan_reply(twice, sizeof(twice), &br), -1);
}

static void
test_results_skip_unknown_fields(void **state)
{
    (void)state;
    /* NodeBatchReply with an unknown varint field 9 between results. */
    const uint8_t body[] = { 0x0a, 0x00, 0x48, 0x05, 0x0a, 0x02, 0x08, 0x01 };
    const uint8_t *p = body, *end = body + sizeof(body), *rec;
    size_t len;
    assert_int_equal(batch_next_result(&p, end, &rec, &len), 1);
    assert_int_equal(len, 0);
    assert_int_equal(batch_next_result(&p, end, &rec, &len), 1);
    assert_int_equal(len, 2);
    assert_int_equal(batch_next_result(&p, end, &rec, &len), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint),
        cmocka_unit_test(test_batch_matches_protobuf),
        cmocka_unit_test(test_scan_reply),
        cmocka_unit_test(test_scan_error_reply),
        cmocka_unit_test(test_scan_refuses_broken),
        cmocka_unit_test(test_results_skip_unknown_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

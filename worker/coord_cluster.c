/*
 * coord_cluster.c - the Cluster API: quorum reads and writes of one key.
 *
 * Write (set, and delete = a tombstone), the ABD register with quorum
 * clocks (DESIGN.md section 2):
 *   CLOCK  ClockGet to every replica, wait for W answers, mint a stamp
 *          (clock_next of the answers, this coordinator as writer, a
 *          fresh nonce) so no two writes share one;
 *   VALUE  ReplicaSet of the stamped entry to every replica; answer OK
 *          after W acks (applied or not: either way the replica holds
 *          something at least as new).
 * Read:
 *   READ   ReplicaGet to every replica, merge newest-wins until R
 *          answered (absent is an answer); if they disagree, write the
 *          winner back to the stale ones and answer once R replicas hold
 *          it.  Stale replicas that answer later are repaired in the
 *          background.
 *
 * A cluster operation (struct cop) lives until its last replica request
 * completes, which may be after the client got its answer: it holds one
 * reference per request in flight plus one until it is answered.  The
 * decisions themselves are quorum.c's.  Everything here runs under
 * coord.lock, called from the loop thread (sp_loop.c) or the tick.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "log.h"
#include "metrics.h"
#include "wire.h"

enum cop_kind { COP_GET, COP_SET, COP_DEL };
_Static_assert((int)COP_GET == (int)MOP_GET &&
               (int)COP_SET == (int)MOP_SET &&
               (int)COP_DEL == (int)MOP_DEL, "cop_kind indexes metrics");
enum cop_phase { PH_READ, PH_CLOCK, PH_VALUE };

struct cop {
    TAILQ_ENTRY(cop) link;      /* coord.by_deadline, while unanswered */
    unsigned refs;
    struct srv *srv;            /* NULL once answered */
    nng_msg *msg;               /* the request; becomes the reply */
    struct req *rq;             /* owns key and value, and this cop and
                                 * its buffers: all in rq->arena */
    struct topo *topo;
    enum cop_kind kind;
    enum cop_phase phase;
    nng_time deadline;
    unsigned timeout_ms;
    uint64_t expires_ms;        /* its ReplicaSets' (wall clock) */
    const uint8_t *key;
    size_t key_len;
    unsigned n;                 /* replicas */
    size_t node[QUORUM_MAX_REPLICAS];       /* ring index of replica i */
    const char *names[QUORUM_MAX_REPLICAS];
    struct quorum q;            /* READ, or CLOCK */
    struct quorum qv;           /* VALUE */
    struct clock clk[QUORUM_MAX_REPLICAS];  /* CLOCK answers */
    Rzkv__Stamp stamp;          /* minted; writer is coord.writer */
    Rzkv__NodeResult *best;     /* READ: the winner's answer */
    uint8_t *getbuf;            /* packed ReplicaGet or ClockGet */
    size_t getlen;
    uint8_t *setbuf;            /* packed ReplicaSet: value or repair */
    size_t setlen;
    struct dest_op dop[];       /* 2n: [0,n) first round, [n,2n) sets */
};

static void read_progress(struct cop *c);
static void write_progress(struct cop *c);

/* ---- life cycle ----------------------------------------------------------- */

static void
cop_unref(struct cop *c)
{
    if (--c->refs > 0)
        return;
    coord.cluster_ops--;
    if (c->best != NULL)
        rzkv__node_result__free_unpacked(c->best, NULL);
    if (c->msg != NULL)
        nng_msg_free(c->msg);
    quorum_free(&c->q);
    quorum_free(&c->qv);
    topo_unref(c->topo);
    req_free(c->rq);            /* c itself, last */
}

/* Send the packed reply in c->msg and drop the "unanswered" reference. */
static void
cop_answer(struct cop *c)
{
    srv_reply(c->srv, c->msg);
    c->msg = NULL;
    c->srv = NULL;
    TAILQ_REMOVE(&coord.by_deadline, c, link);
    coord.pending_replies--;
    coord.cluster_waiting--;
    cop_unref(c);
}

static void
cop_answer_error(struct cop *c, Rzkv__Status status, const char *text)
{
    if (status == RZKV__STATUS__UNAVAILABLE)
        coord.stats.unavailable++;
    else if (status == RZKV__STATUS__UNKNOWN)
        coord.stats.unknown++;
    if (wire_pack_error(c->msg, status, "%s", text) != 0)
        nng_msg_clear(c->msg);
    cop_answer(c);
}

/* Tell the value round which replicas its value left for. */
static void
value_mark_sent(struct cop *c)
{
    for (unsigned i = 0; i < c->n; i++)
        if (c->dop[c->n + i].sent)
            quorum_sent(&c->qv, i);
}

/*
 * UNAVAILABLE or UNKNOWN, naming the replicas that failed and why.  A
 * value that left this node may still be stored however its replica
 * answered: a peer's storage worker can be late (its UNAVAILABLE), a
 * message can be lost after delivery.  So once any value request left,
 * the outcome is UNKNOWN, never UNAVAILABLE, which a client may retry
 * elsewhere, unless every replica it reached refused it for good (a
 * storage worker's own answer: expired, invalid, or rolled back with
 * nothing written, as on a full disk).
 */
static void
cop_answer_failure(struct cop *c, struct quorum *q, int value_phase,
                   int timed_out)
{
    char why[400], text[512];

    if (value_phase)
        value_mark_sent(c);
    int status = quorum_failure_status(q, value_phase);

    metrics_add(&metrics->u.coord.quorum_failures[c->kind], 1);
    quorum_describe(q, c->names, why, sizeof(why));
    snprintf(text, sizeof(text), "%s%s: %s",
             status == RZKV__STATUS__UNKNOWN
                 ? "outcome unknown (the write may still take effect)"
                 : "quorum not reached",
             timed_out ? " before the timeout" : "", why);
    cop_answer_error(c, (Rzkv__Status)status, text);
}

/* op packed into c's arena, for as long as c lives. */
static uint8_t *
pack_op(struct cop *c, const Rzkv__NodeOp *op, size_t *len)
{
    *len = rzkv__node_op__get_packed_size(op);
    uint8_t *buf = arena_alloc(&c->rq->arena, *len);
    if (buf != NULL)
        rzkv__node_op__pack(op, buf);
    return buf;
}

/* Which dest serves replica i: a local storage worker or a peer. */
static struct dest *
replica_dest(const struct cop *c, unsigned i)
{
    if ((int)c->node[i] == c->topo->self)
        return coord.shard[ring_shard(c->key, c->key_len, coord.shards)];
    return c->topo->dest[c->node[i]];
}

/* Send one replica request; on refusal replica i fails in q. */
static void
send_one(struct cop *c, unsigned slot, unsigned i, const uint8_t *buf,
         size_t len, dest_done_fn done, struct quorum *q)
{
    struct dest_op *op = &c->dop[slot * c->n + i];
    const char *why;

    op->op = buf;
    op->op_len = len;
    op->deadline = c->deadline;
    op->done = done;
    op->arg = c;
    op->alone = 0;
    if (dest_submit(replica_dest(c, i), op, &why) != 0) {
        quorum_fail(q, i, why);
        return;
    }
    c->refs++;
}

/* The replica index of a completed request, and its parsed result or an
 * error phrase in errbuf. */
static Rzkv__NodeResult *
op_result(struct dest_op *op, const uint8_t *rec, size_t len,
          const char *err, unsigned *index, char *errbuf, size_t errlen)
{
    struct cop *c = op->arg;
    *index = (unsigned)(op - c->dop) % c->n;
    if (err != NULL) {
        snprintf(errbuf, errlen, "%s", err);
        return NULL;
    }
    Rzkv__NodeResult *res = rzkv__node_result__unpack(NULL, len, rec);
    if (res == NULL)
        snprintf(errbuf, errlen, "malformed result");
    return res;
}

/* ---- reads ---------------------------------------------------------------- */

static void
read_done(struct dest_op *op, const uint8_t *rec, size_t len,
          const char *err)
{
    struct cop *c = op->arg;
    char why[48];
    unsigned i;
    Rzkv__NodeResult *res = op_result(op, rec, len, err, &i, why,
                                      sizeof(why));

    if (res != NULL && res->status == RZKV__STATUS__TOO_LARGE &&
        !op->alone) {
        /* It didn't fit in the peer's batch reply: ask for it alone,
         * keeping this request's reference. */
        const char *no;
        rzkv__node_result__free_unpacked(res, NULL);
        op->alone = 1;
        if (dest_submit(replica_dest(c, i), op, &no) == 0)
            return;
        quorum_fail(&c->q, i, no);
        read_progress(c);
        cop_unref(c);
        return;
    }
    if (res != NULL && res->status != RZKV__STATUS__OK &&
        res->status != RZKV__STATUS__NOT_FOUND) {
        snprintf(why, sizeof(why), "%s: %s", wire_status_str(res->status),
                 res->message);
        rzkv__node_result__free_unpacked(res, NULL);
        res = NULL;
    }
    if (res == NULL) {
        quorum_fail(&c->q, i, why);
    } else {
        const Rzkv__Entry *e = res->entry;
        struct stamp v = wire_stamp_view(e ? e->stamp : NULL);
        int has = e != NULL && e->stamp != NULL;
        enum quorum_answer a = quorum_answer(&c->q, i, has ? &v : NULL);
        if (a == QANS_FIRST || a == QANS_NEWER) {
            if (c->best != NULL)
                rzkv__node_result__free_unpacked(c->best, NULL);
            c->best = res;
            res = NULL;
        }
        if (res != NULL)
            rzkv__node_result__free_unpacked(res, NULL);
    }
    read_progress(c);
    cop_unref(c);
}

static void
repair_done(struct dest_op *op, const uint8_t *rec, size_t len,
            const char *err)
{
    struct cop *c = op->arg;
    char why[48];
    unsigned i;
    Rzkv__NodeResult *res = op_result(op, rec, len, err, &i, why,
                                      sizeof(why));

    if (res != NULL && res->status == RZKV__STATUS__OK)
        quorum_ack(&c->q, i);
    else {
        if (res != NULL)
            snprintf(why, sizeof(why), "%s: %s",
                     wire_status_str(res->status), res->message);
        quorum_fail(&c->q, i, why);
    }
    if (res != NULL)
        rzkv__node_result__free_unpacked(res, NULL);
    read_progress(c);
    cop_unref(c);
}

/* Pack ReplicaSet(the winner) once, for every repair of this read. */
static int
pack_repair(struct cop *c)
{
    if (c->setbuf != NULL)
        return 0;
    Rzkv__ReplicaSet rs = RZKV__REPLICA_SET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT;
    rs.entry = c->best->entry;
    rs.expires_ms = c->expires_ms;
    op.op_case = RZKV__NODE_OP__OP_SET;
    op.set = &rs;
    c->setbuf = pack_op(c, &op, &c->setlen);
    return c->setbuf != NULL ? 0 : -1;
}

static void
read_answer(struct cop *c)
{
    const Rzkv__Entry *e = c->best ? c->best->entry : NULL;

    if (e == NULL || e->tombstone) {
        cop_answer_error(c, RZKV__STATUS__NOT_FOUND, "not found");
        return;
    }
    Rzkv__Reply reply = RZKV__REPLY__INIT;
    Rzkv__ClusterReply cr = RZKV__CLUSTER_REPLY__INIT;
    cr.value = e->value;
    cr.stamp = e->stamp;
    reply.body_case = RZKV__REPLY__BODY_CLUSTER;
    reply.cluster = &cr;
    if (wire_pack_into(c->msg, &reply.base) != 0) {
        cop_answer_error(c, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    cop_answer(c);
}

static void
read_progress(struct cop *c)
{
    /* Write the winner back to every replica seen stale: before the
     * answer that is read repair, after it background repair. */
    if (c->q.decided && c->best != NULL) {
        for (unsigned i = 0; i < c->n; i++) {
            if (c->q.rep[i] != QREP_STALE)
                continue;
            quorum_repairing(&c->q, i);
            if (pack_repair(c) != 0) {
                quorum_fail(&c->q, i, "out of memory");
                continue;
            }
            coord.stats.repairs++;
            metrics_add(&metrics->u.coord.read_repairs, 1);
            send_one(c, 1, i, c->setbuf, c->setlen, repair_done, &c->q);
        }
    }
    if (c->srv == NULL)
        return;
    switch (quorum_read_state(&c->q)) {
    case QUORUM_MET:
        read_answer(c);
        break;
    case QUORUM_IMPOSSIBLE:
        cop_answer_failure(c, &c->q, 0, 0);
        break;
    default:
        break;
    }
}

/*
 * The first round of a read or a write: pack op (which names only the key)
 * into c->getbuf and send it to every replica, answers counted in c->q.
 * -1 if it could not be packed (the client has been answered).
 */
static int
send_to_all(struct cop *c, const Rzkv__NodeOp *op, dest_done_fn done)
{
    if ((c->getbuf = pack_op(c, op, &c->getlen)) == NULL) {
        cop_answer_error(c, RZKV__STATUS__INTERNAL, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < c->n; i++)
        send_one(c, 0, i, c->getbuf, c->getlen, done, &c->q);
    return 0;
}

static void
read_start(struct cop *c)
{
    Rzkv__ReplicaGet g = RZKV__REPLICA_GET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT;

    g.key.data = (uint8_t *)c->key;
    g.key.len = c->key_len;
    op.op_case = RZKV__NODE_OP__OP_GET;
    op.get = &g;
    c->phase = PH_READ;
    if (send_to_all(c, &op, read_done) == 0)
        read_progress(c);
}

/* ---- writes --------------------------------------------------------------- */

static void
clock_done(struct dest_op *op, const uint8_t *rec, size_t len,
           const char *err)
{
    struct cop *c = op->arg;
    char why[48];
    unsigned i;
    Rzkv__NodeResult *res = op_result(op, rec, len, err, &i, why,
                                      sizeof(why));

    if (res != NULL && res->status == RZKV__STATUS__OK) {
        c->clk[i] = wire_clock_view(res->clock);
        quorum_ack(&c->q, i);
    } else {
        if (res != NULL)
            snprintf(why, sizeof(why), "%s: %s",
                     wire_status_str(res->status), res->message);
        quorum_fail(&c->q, i, why);
    }
    if (res != NULL)
        rzkv__node_result__free_unpacked(res, NULL);
    write_progress(c);
    cop_unref(c);
}

static void
value_done(struct dest_op *op, const uint8_t *rec, size_t len,
           const char *err)
{
    struct cop *c = op->arg;
    char why[48];
    unsigned i;
    Rzkv__NodeResult *res = op_result(op, rec, len, err, &i, why,
                                      sizeof(why));

    if (res != NULL && res->status == RZKV__STATUS__OK)
        quorum_ack(&c->qv, i);
    else if (res != NULL) {
        snprintf(why, sizeof(why), "%s: %s",
                 wire_status_str(res->status), res->message);
        if (res->refused)
            quorum_refuse(&c->qv, i, why);
        else
            quorum_fail(&c->qv, i, why);
    } else {
        quorum_fail(&c->qv, i, why);
    }
    if (res != NULL)
        rzkv__node_result__free_unpacked(res, NULL);
    write_progress(c);
    cop_unref(c);
}

/* The stamp of this write: newer than every clock of a write quorum. */
static void
mint(struct cop *c)
{
    struct clock seen[QUORUM_MAX_REPLICAS];
    size_t k = 0;

    for (unsigned i = 0; i < c->n; i++)
        if (c->q.rep[i] == QREP_HOLDS)
            seen[k++] = c->clk[i];
    struct clock next = clock_next(seen, k);
    rzkv__stamp__init(&c->stamp);
    c->stamp.epoch = next.epoch;
    c->stamp.counter = next.counter;
    c->stamp.writer.data = (uint8_t *)coord.writer;
    c->stamp.writer.len = coord.writer_len;
    c->stamp.nonce = ++coord.nonce;
}

static void
value_start(struct cop *c)
{
    Rzkv__Entry e = RZKV__ENTRY__INIT;
    Rzkv__ReplicaSet rs = RZKV__REPLICA_SET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT;

    mint(c);
    e.key.data = (uint8_t *)c->key;
    e.key.len = c->key_len;
    e.stamp = &c->stamp;
    if (c->kind == COP_DEL)
        e.tombstone = 1;
    else
        e.value = c->rq->env->cluster->set->value;
    rs.entry = &e;
    rs.expires_ms = c->expires_ms;
    op.op_case = RZKV__NODE_OP__OP_SET;
    op.set = &rs;
    c->phase = PH_VALUE;
    quorum_init_like(&c->qv, &c->q);
    if ((c->setbuf = pack_op(c, &op, &c->setlen)) == NULL) {
        cop_answer_error(c, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    for (unsigned i = 0; i < c->n; i++)
        send_one(c, 1, i, c->setbuf, c->setlen, value_done, &c->qv);
}

static void
write_answer(struct cop *c)
{
    Rzkv__Reply reply = RZKV__REPLY__INIT;
    Rzkv__ClusterReply cr = RZKV__CLUSTER_REPLY__INIT;

    cr.stamp = &c->stamp;
    reply.body_case = RZKV__REPLY__BODY_CLUSTER;
    reply.cluster = &cr;
    if (wire_pack_into(c->msg, &reply.base) != 0) {
        cop_answer_error(c, RZKV__STATUS__UNKNOWN,
                         "out of memory after the write was sent");
        return;
    }
    cop_answer(c);
}

static void
write_progress(struct cop *c)
{
    if (c->srv == NULL)
        return;                 /* answered; late answers change nothing */
    if (c->phase == PH_CLOCK) {
        switch (quorum_write_state(&c->q)) {
        case QUORUM_MET:
            value_start(c);
            if (c->srv == NULL)
                return;
            break;
        case QUORUM_IMPOSSIBLE:
            cop_answer_failure(c, &c->q, 0, 0);
            return;
        default:
            return;
        }
    }
    switch (quorum_write_state(&c->qv)) {
    case QUORUM_MET:
        write_answer(c);
        break;
    case QUORUM_IMPOSSIBLE:
        /* If the replicas that failed all refused the value for good,
         * the rest may too: then the answer is UNAVAILABLE, not UNKNOWN
         * (a full disk everywhere).  Wait for them, up to the deadline. */
        value_mark_sent(c);
        if (quorum_refusals_may_settle(&c->qv))
            break;
        cop_answer_failure(c, &c->qv, 1, 0);
        break;
    default:
        break;
    }
}

static void
write_start(struct cop *c)
{
    Rzkv__ClockGet g = RZKV__CLOCK_GET__INIT;
    Rzkv__NodeOp op = RZKV__NODE_OP__INIT;

    g.key.data = (uint8_t *)c->key;
    g.key.len = c->key_len;
    op.op_case = RZKV__NODE_OP__OP_CLOCK_GET;
    op.clock_get = &g;
    c->phase = PH_CLOCK;
    if (send_to_all(c, &op, clock_done) == 0)
        write_progress(c);
}

/* ---- deadlines ------------------------------------------------------------ */

static void
cop_expire(struct cop *c)
{
    if (c->phase == PH_VALUE) {
        quorum_expire(&c->qv, "timeout");
        cop_answer_failure(c, &c->qv, 1, 1);
    } else {
        quorum_expire(&c->q, "timeout");
        cop_answer_failure(c, &c->q, 0, 1);
    }
}

void
cluster_tick(nng_time now)
{
    struct cop *c;
    while ((c = TAILQ_FIRST(&coord.by_deadline)) != NULL &&
           c->deadline <= now) {
        c->refs++;              /* answering drops a reference */
        cop_expire(c);
        cop_unref(c);
    }
}

/* Keep coord.by_deadline ordered; most requests share one timeout, so
 * the new one almost always goes last. */
static void
deadline_insert(struct cop *c)
{
    struct cop *p;
    TAILQ_FOREACH_REVERSE(p, &coord.by_deadline, cop_list, link)
        if (p->deadline <= c->deadline)
            break;
    if (p == NULL)
        TAILQ_INSERT_HEAD(&coord.by_deadline, c, link);
    else
        TAILQ_INSERT_AFTER(&coord.by_deadline, p, c, link);
}

/* ---- requests ------------------------------------------------------------- */

static void
cluster_info(struct srv *s, nng_msg *m)
{
    const struct topo *t = coord.topo;
    const struct cluster_conf *cc = t->conf;
    Rzkv__Reply reply = RZKV__REPLY__INIT;
    Rzkv__ClusterReply cr = RZKV__CLUSTER_REPLY__INIT;
    Rzkv__ClusterInfoReply info = RZKV__CLUSTER_INFO_REPLY__INIT;
    Rzkv__PeerInfo *peers = calloc(cc->node_count, sizeof(*peers));
    Rzkv__PeerInfo **pp = calloc(cc->node_count, sizeof(*pp));
    nng_time now = nng_clock();
    unsigned n = (unsigned)cc->replica_count;

    if (peers == NULL || pp == NULL) {
        free(peers);
        free(pp);
        srv_reply_error(s, m, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    info.node_id = coord.node->id;
    info.replica_count = n;
    info.read_quorum = quorum_required(QUORUM_CONS_QUORUM, n,
                                       (unsigned)cc->read_quorum);
    info.write_quorum = quorum_required(QUORUM_CONS_QUORUM, n,
                                        (unsigned)cc->write_quorum);
    info.seed = cc->seed;
    for (size_t i = 0; i < cc->node_count; i++) {
        Rzkv__PeerInfo *p = &peers[i];
        rzkv__peer_info__init(p);
        p->id = cc->nodes[i].id;
        p->address = cc->nodes[i].remote_address;
        const char *down = (int)i == t->self ? NULL
                         : dest_down_reason(t->dest[i], now);
        p->reachable = down == NULL;
        if (down != NULL)
            p->error = (char *)down;
        if (cc->nodes[i].state == MEMBER_JOINING)
            p->state = (char *)"joining";
        else if (cc->nodes[i].state == MEMBER_LEAVING)
            p->state = (char *)"leaving";
        pp[i] = p;
    }
    info.n_nodes = cc->node_count;
    info.nodes = pp;
    cr.info = &info;
    reply.body_case = RZKV__REPLY__BODY_CLUSTER;
    reply.cluster = &cr;
    if (wire_pack_into(m, &reply.base) != 0)
        wire_pack_error(m, RZKV__STATUS__INTERNAL, "out of memory");
    free(peers);
    free(pp);
    srv_reply(s, m);
}

/* The key of a get/set/del, or NULL for info or nothing. */
static const ProtobufCBinaryData *
request_key(const Rzkv__ClusterRequest *r)
{
    switch (r->op_case) {
    case RZKV__CLUSTER_REQUEST__OP_GET: return &r->get->key;
    case RZKV__CLUSTER_REQUEST__OP_SET: return &r->set->key;
    case RZKV__CLUSTER_REQUEST__OP_DEL: return &r->del->key;
    default: return NULL;
    }
}

/* Refuse a malformed request; 0 if it may go on. */
static int
validate(struct srv *s, nng_msg *m, const Rzkv__ClusterRequest *r)
{
    const ProtobufCBinaryData *key = request_key(r);

    if (r->op_case == RZKV__CLUSTER_REQUEST__OP_INFO)
        return 0;
    if (key == NULL) {
        srv_reply_error(s, m, RZKV__STATUS__INVALID,
                        "cluster request without an operation");
        return -1;
    }
    if (key->len == 0 || key->len > RZKV_MAX_KEY) {
        srv_reply_error(s, m, RZKV__STATUS__INVALID,
                        "key of %zu bytes: keys are 1..%d bytes",
                        key->len, RZKV_MAX_KEY);
        return -1;
    }
    if (r->op_case == RZKV__CLUSTER_REQUEST__OP_SET &&
        r->set->value.len > coord.node->max_value_size) {
        srv_reply_error(s, m, RZKV__STATUS__TOO_LARGE,
                        "value of %zu bytes: the maximum is %llu",
                        r->set->value.len,
                        (unsigned long long)coord.node->max_value_size);
        return -1;
    }
    if (quorum_required((int)r->consistency, 1, 0) == 0) {
        srv_reply_error(s, m, RZKV__STATUS__INVALID,
                        "unknown consistency %d", (int)r->consistency);
        return -1;
    }
    return 0;
}

/*
 * The first round's quorum: R or W of the key's replicas; while nodes join
 * or leave, R or W of those after the change and of those before it.
 */
static void
quorum_for(struct cop *c, int consistency, const uint8_t *in)
{
    const struct cluster_conf *cc = c->topo->conf;
    unsigned configured = (unsigned)(c->kind == COP_GET ? cc->read_quorum
                                                        : cc->write_quorum);
    if (!c->topo->place.changing) {
        quorum_init(&c->q, c->n, quorum_required(consistency, c->n,
                                                 configured));
        return;
    }
    unsigned after = 0, before = 0;
    for (unsigned i = 0; i < c->n; i++) {
        after += (in[i] & QUORUM_AFTER) != 0;
        before += (in[i] & QUORUM_BEFORE) != 0;
    }
    quorum_init_joint(&c->q, c->n, in,
                      quorum_required(consistency, after, configured),
                      quorum_required(consistency, before, configured));
}

/* Under the lock: set up and start one operation. */
static void
cop_start(struct srv *s, nng_msg *m, struct req *rq)
{
    const Rzkv__ClusterRequest *r = rq->env->cluster;
    struct topo *t = coord.topo;
    const ProtobufCBinaryData *key = request_key(r);
    /* While nodes join or leave, a key has the replicas of two placements. */
    unsigned want = (unsigned)t->conf->replica_count *
                    (t->place.changing ? 2 : 1);
    size_t size = sizeof(struct cop) + 2 * want * sizeof(struct dest_op);
    struct cop *c = arena_alloc(&rq->arena, size);

    if (c == NULL) {
        req_free(rq);
        srv_reply_error(s, m, RZKV__STATUS__INTERNAL, "out of memory");
        return;
    }
    memset(c, 0, size);
    topo_ref(t);
    c->topo = t;
    c->srv = s;
    c->msg = m;
    c->rq = rq;
    c->refs = 1;
    c->key = key->data;
    c->key_len = key->len;
    c->kind = r->op_case == RZKV__CLUSTER_REQUEST__OP_GET ? COP_GET
            : r->op_case == RZKV__CLUSTER_REQUEST__OP_SET ? COP_SET : COP_DEL;
    uint8_t in[QUORUM_MAX_REPLICAS];
    c->n = topo_replicas(t, c->key, c->key_len, c->node, in);
    for (unsigned i = 0; i < c->n; i++)
        c->names[i] = t->names[c->node[i]];
    quorum_for(c, (int)r->consistency, in);
    c->timeout_ms = r->timeout_ms ? r->timeout_ms
                                  : (unsigned)t->conf->timeout_ms;
    if (c->timeout_ms > COORD_MAX_TIMEOUT_MS)
        c->timeout_ms = COORD_MAX_TIMEOUT_MS;
    c->deadline = nng_clock() + c->timeout_ms;
    c->expires_ms = topo_write_expiry(t, c->timeout_ms);
    coord.cluster_ops++;
    coord.cluster_waiting++;
    coord.pending_replies++;
    deadline_insert(c);

    c->refs++;                  /* hold it while starting */
    if (c->kind == COP_GET) {
        coord.stats.gets++;
        read_start(c);
    } else {
        if (c->kind == COP_SET)
            coord.stats.sets++;
        else
            coord.stats.dels++;
        write_start(c);
    }
    cop_unref(c);
}

void
cluster_request(struct srv *s, nng_msg *m, struct req *rq)
{
    const Rzkv__ClusterRequest *r = rq->env->cluster;

    if (validate(s, m, r) != 0) {
        req_free(rq);
        return;
    }
    nng_mtx_lock(coord.lock);
    if (coord.stopping) {
        nng_mtx_unlock(coord.lock);
        req_free(rq);
        srv_reply_error(s, m, RZKV__STATUS__STOPPING,
                        "node %s is shutting down; try another node",
                        coord.node->id);
        return;
    }
    if (r->op_case == RZKV__CLUSTER_REQUEST__OP_INFO) {
        req_free(rq);
        cluster_info(s, m);
        nng_mtx_unlock(coord.lock);
        return;
    }
    if (coord.cluster_waiting >= COORD_MAX_CLUSTER) {
        nng_mtx_unlock(coord.lock);
        req_free(rq);
        srv_reply_error(s, m, RZKV__STATUS__UNAVAILABLE,
                        "coordinator overloaded: %d operations in flight",
                        COORD_MAX_CLUSTER);
        return;
    }
    cop_start(s, m, rq);
    nng_mtx_unlock(coord.lock);
}

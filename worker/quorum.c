/*
 * quorum.c - collecting replica answers and deciding a quorum round.
 *
 * The coordinator (worker/coord_cluster.c) feeds every answer, failure
 * and timeout of a round in here and asks what to do next; all the rules
 * of DESIGN.md section 2 that don't need a socket live in this file, so
 * t/unit/test_quorum.c can check them one event at a time.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quorum.h"

unsigned
quorum_majority(unsigned n)
{
    return n / 2 + 1;
}

unsigned
quorum_required(int consistency, unsigned n, unsigned configured)
{
    switch (consistency) {
    case QUORUM_CONS_QUORUM:
        if (configured == 0 || configured > n)
            return quorum_majority(n);
        return configured;
    case QUORUM_CONS_ONE:
        return n > 0 ? 1 : 0;
    case QUORUM_CONS_ALL:
        return n;
    default:
        return 0;
    }
}

void
quorum_init(struct quorum *q, unsigned n, unsigned required)
{
    memset(q, 0, sizeof(*q));
    q->n = n > QUORUM_MAX_REPLICAS ? QUORUM_MAX_REPLICAS : n;
    q->required = required;
    q->winner_index = -1;
    memset(q->in, QUORUM_AFTER, q->n);
}

void
quorum_init_joint(struct quorum *q, unsigned n, const uint8_t *in,
                  unsigned required_after, unsigned required_before)
{
    quorum_init(q, n, required_after);
    q->required_before = required_before;
    memcpy(q->in, in, q->n);
}

void
quorum_init_like(struct quorum *q, const struct quorum *like)
{
    quorum_init_joint(q, like->n, like->in, like->required,
                      like->required_before);
}

/*
 * The two groups a round counts in: the replicas after a membership
 * change (all of them, when there is none) and those before it.  Every
 * replica is in one of them at least.
 */
#define S(state) (1u << (state))
#define EVERY_GROUP (QUORUM_AFTER | QUORUM_BEFORE)
#define ANSWERED (S(QREP_HOLDS) | S(QREP_STALE) | S(QREP_REPAIRING))
static unsigned
count_in(const struct quorum *q, uint8_t group, unsigned states)
{
    unsigned k = 0;
    for (unsigned i = 0; i < q->n; i++)
        k += (q->in[i] & group) && (states & S(q->rep[i]));
    return k;
}

/* Do the replicas in `states` reach the requirement of every group? */
static int
every_group_has(const struct quorum *q, unsigned states)
{
    return count_in(q, QUORUM_AFTER, states) >= q->required &&
           (q->required_before == 0 ||
            count_in(q, QUORUM_BEFORE, states) >= q->required_before);
}

void
quorum_free(struct quorum *q)
{
    free((void *)q->winner.writer);
    q->winner.writer = NULL;
    q->winner.writer_len = 0;
}

void
quorum_sent(struct quorum *q, unsigned i)
{
    if (i < q->n)
        q->sent[i] = 1;
}

int
quorum_ack(struct quorum *q, unsigned i)
{
    if (i >= q->n)
        return 0;
    if (q->rep[i] != QREP_PENDING && q->rep[i] != QREP_REPAIRING)
        return 0;
    q->rep[i] = QREP_HOLDS;
    q->sent[i] = 1;
    return 1;
}

int
quorum_fail(struct quorum *q, unsigned i, const char *why)
{
    if (i >= q->n)
        return 0;
    if (q->rep[i] != QREP_PENDING && q->rep[i] != QREP_REPAIRING)
        return 0;
    q->rep[i] = QREP_FAILED;
    snprintf(q->why[i], sizeof(q->why[i]), "%s", why ? why : "failed");
    return 1;
}

int
quorum_refuse(struct quorum *q, unsigned i, const char *why)
{
    if (!quorum_fail(q, i, why))
        return 0;
    q->refused[i] = 1;
    return 1;
}

void
quorum_expire(struct quorum *q, const char *why)
{
    for (unsigned i = 0; i < q->n; i++)
        quorum_fail(q, i, why);
}

/* Take version as the winner: copy its writer, since answers die. */
static int
set_winner(struct quorum *q, unsigned i, const struct stamp *v)
{
    uint8_t *w = malloc(v->writer_len ? v->writer_len : 1);
    if (w == NULL)
        return -1;
    if (v->writer_len)
        memcpy(w, v->writer, v->writer_len);
    free((void *)q->winner.writer);
    q->winner = *v;
    q->winner.writer = w;
    q->have_winner = 1;
    q->winner_index = (int)i;
    return 0;
}

/* Compare an answer with the winner: absent is older than any version. */
static int
cmp_winner(const struct quorum *q, const struct stamp *v)
{
    if (!q->have_winner)
        return v == NULL ? 0 : 1;
    if (v == NULL)
        return -1;
    return stamp_cmp(v, &q->winner);
}

enum quorum_answer
quorum_answer(struct quorum *q, unsigned i, const struct stamp *version)
{
    enum quorum_answer what;

    if (i >= q->n || q->rep[i] != QREP_PENDING)
        return QANS_IGNORED;
    q->sent[i] = 1;
    int c = cmp_winner(q, version);
    if (q->decided) {
        /* The winner is frozen: newer means a concurrent write, which
         * holds at least the winner; older or absent needs repair. */
        q->rep[i] = c >= 0 ? QREP_HOLDS : QREP_STALE;
        what = c > 0 ? QANS_NEWER_LATE : c == 0 ? QANS_EQUAL : QANS_OLDER;
    } else if (c > 0) {
        int first = !q->have_winner;
        if (set_winner(q, i, version) != 0) {
            quorum_fail(q, i, "out of memory");
            return QANS_IGNORED;
        }
        /* Everyone who held the old winner is now behind. */
        for (unsigned j = 0; j < q->n; j++)
            if (q->rep[j] == QREP_HOLDS)
                q->rep[j] = QREP_STALE;
        q->rep[i] = QREP_HOLDS;
        what = first ? QANS_FIRST : QANS_NEWER;
    } else {
        q->rep[i] = c == 0 ? QREP_HOLDS : QREP_STALE;
        what = c == 0 ? QANS_EQUAL : QANS_OLDER;
    }
    if (!q->decided && every_group_has(q, ANSWERED))
        q->decided = 1;
    return what;
}

void
quorum_repairing(struct quorum *q, unsigned i)
{
    if (i < q->n && q->rep[i] == QREP_STALE)
        q->rep[i] = QREP_REPAIRING;
}

unsigned
quorum_count(const struct quorum *q, enum quorum_rep state)
{
    return count_in(q, EVERY_GROUP, S(state));
}

unsigned
quorum_answered(const struct quorum *q)
{
    return count_in(q, EVERY_GROUP, ANSWERED);
}

enum quorum_state
quorum_write_state(const struct quorum *q)
{
    if (every_group_has(q, S(QREP_HOLDS)))
        return QUORUM_MET;
    return every_group_has(q, S(QREP_HOLDS) | S(QREP_PENDING) |
                              S(QREP_REPAIRING))
        ? QUORUM_WAIT : QUORUM_IMPOSSIBLE;
}

enum quorum_state
quorum_read_state(const struct quorum *q)
{
    unsigned alive = ANSWERED | S(QREP_PENDING);
    if (!q->decided)
        return every_group_has(q, alive) ? QUORUM_WAIT : QUORUM_IMPOSSIBLE;
    if (every_group_has(q, S(QREP_HOLDS)))
        return QUORUM_MET;
    if (!every_group_has(q, alive))
        return QUORUM_IMPOSSIBLE;
    return quorum_count(q, QREP_STALE) > 0 ? QUORUM_REPAIR : QUORUM_WAIT;
}
#undef ANSWERED
#undef EVERY_GROUP
#undef S

int
quorum_failure_status(const struct quorum *q, int value_phase)
{
    if (value_phase)
        for (unsigned i = 0; i < q->n; i++)
            if (q->sent[i] && !q->refused[i])
                return 3;       /* rzkv.Status UNKNOWN */
    return 2;                   /* rzkv.Status UNAVAILABLE */
}

int
quorum_refusals_may_settle(const struct quorum *q)
{
    unsigned pending = 0;

    for (unsigned i = 0; i < q->n; i++) {
        if (q->rep[i] == QREP_PENDING)
            pending++;
        else if (q->rep[i] != QREP_FAILED || (q->sent[i] && !q->refused[i]))
            return 0;
    }
    return pending > 0;
}

int
quorum_describe(const struct quorum *q, const char *const *names,
                char *buf, size_t len)
{
    size_t off = 0;
    int total = 0;
    int n;

#define APPEND(...) do {                                            \
        n = snprintf(off < len ? buf + off : NULL,                  \
                     off < len ? len - off : 0, __VA_ARGS__);       \
        if (n > 0) {                                                \
            total += n;                                             \
            off += (size_t)n;                                       \
        }                                                           \
    } while (0)

    if (len > 0)
        buf[0] = '\0';
    if (q->required_before == 0)
        APPEND("%u of %u replicas needed", q->required, q->n);
    else
        APPEND("%u of %u replicas after the membership change and %u of %u "
               "before it needed", q->required,
               count_in(q, QUORUM_AFTER, ~0u), q->required_before,
               count_in(q, QUORUM_BEFORE, ~0u));
    const char *sep = "; failed: ";
    for (unsigned i = 0; i < q->n; i++) {
        if (q->rep[i] != QREP_FAILED)
            continue;
        APPEND("%snode %s (%s)", sep, names && names[i] ? names[i] : "?",
               q->why[i]);
        sep = ", ";
    }
#undef APPEND
    return total;
}

/*
 * quorum.h - the pure part of a quorum operation: who answered, who
 * failed and why, which version wins, who needs repair, and what to tell
 * the client.  No I/O, no locks, no clocks (dynomite's dyn_response_mgr
 * kept apart from its connections in the same way).
 *
 * One struct quorum tracks one round over a key's n replicas.  Each
 * replica moves through:
 *
 *   PENDING --answer--> HOLDS        has the winning version (or newer)
 *           \--answer--> STALE       answered with something older/absent
 *           \--fail----> FAILED      error, not connected, timeout
 *   STALE --quorum_repairing--> REPAIRING --ack--> HOLDS
 *                                         \--fail--> FAILED
 *
 * Writes use the same states: a replica that acknowledged is HOLDS.
 *
 * Reads (DESIGN.md section 2): answers are merged newest-wins with
 * quorum_answer() until `required` replicas answered; then the winner is
 * frozen (quorum_decide()).  If some of those disagree, the caller writes
 * the winner back to the STALE ones and the read completes once
 * `required` replicas are known to hold the winner or something newer.
 */
#ifndef RZKV_QUORUM_H
#define RZKV_QUORUM_H

#include <stddef.h>
#include <stdint.h>

#include "stamp.h"

/* The most replicas one key can have (cluster.replica_count bound). */
#define QUORUM_MAX_REPLICAS 32

enum quorum_consistency {       /* the values of rzkv.Consistency */
    QUORUM_CONS_QUORUM = 0,
    QUORUM_CONS_ONE = 1,
    QUORUM_CONS_ALL = 2,
};

enum quorum_rep {
    QREP_PENDING = 0,
    QREP_HOLDS,
    QREP_STALE,
    QREP_REPAIRING,
    QREP_FAILED,
};

enum quorum_state {
    QUORUM_WAIT = 0,            /* more answers may come and are needed */
    QUORUM_MET,                 /* enough replicas hold the result */
    QUORUM_REPAIR,              /* read decided; stale answers need repair */
    QUORUM_IMPOSSIBLE,          /* too many failed: the quorum can't be met */
};

/* What a read answer was, next to the version known so far. */
enum quorum_answer {
    QANS_FIRST = 0,             /* first version seen: it is the winner */
    QANS_NEWER,                 /* replaced the winner (before decide) */
    QANS_EQUAL,                 /* same version as the winner */
    QANS_OLDER,                 /* older or absent: the replica is stale */
    QANS_NEWER_LATE,            /* newer than a frozen winner: counts as
                                 * holding it, never repaired */
    QANS_IGNORED,               /* not PENDING (duplicate, late failure) */
};

/* Which placement a replica belongs to while the cluster's membership
 * changes (ring.h's PLACE_AFTER and PLACE_BEFORE). */
#define QUORUM_AFTER    1u
#define QUORUM_BEFORE   2u

struct quorum {
    unsigned n;                 /* replicas in the round */
    unsigned required;          /* answers/acks needed (after the change) */
    unsigned required_before;   /* and among the replicas before it; 0 if
                                 * the membership is not changing */
    uint8_t in[QUORUM_MAX_REPLICAS];        /* QUORUM_AFTER | _BEFORE */
    unsigned decided;           /* read: winner frozen */
    unsigned have_winner;       /* read: some replica had a version */
    struct stamp winner;        /* read: newest version; writer is owned */
    int winner_index;           /* replica whose answer is the winner */
    uint8_t rep[QUORUM_MAX_REPLICAS];
    uint8_t sent[QUORUM_MAX_REPLICAS];      /* request left this node */
    uint8_t refused[QUORUM_MAX_REPLICAS];   /* and the replica says it
                                             * never applied it */
    char why[QUORUM_MAX_REPLICAS][48];      /* why it failed: a short
                                             * phrase ("timeout") */
};

/*
 * Replicas a request needs: QUORUM -> the configured quorum (0 or out of
 * range: majority of n), ONE -> 1, ALL -> n.  Unknown consistency: 0.
 */
unsigned quorum_required(int consistency, unsigned n, unsigned configured);
unsigned quorum_majority(unsigned n);

void quorum_init(struct quorum *q, unsigned n, unsigned required);
/*
 * A round while nodes join or leave (DESIGN.md section 2, joint quorums):
 * in[i] says whether replica i is one by the placement after the change,
 * before it, or both, and every count that decides the round (answers,
 * acks) must reach required_after among the first and required_before
 * among the second.
 */
void quorum_init_joint(struct quorum *q, unsigned n, const uint8_t *in,
                       unsigned required_after, unsigned required_before);
/* A new round over the same replicas and requirements as q. */
void quorum_init_like(struct quorum *q, const struct quorum *like);
/* Frees the owned copy of the winner's writer. */
void quorum_free(struct quorum *q);

/* The request to replica i has been handed to the network. */
void quorum_sent(struct quorum *q, unsigned i);
/* Replica i acknowledged (write phases, repair). Returns 1 if it counted. */
int quorum_ack(struct quorum *q, unsigned i);
/* Replica i failed; why is copied (truncated). Returns 1 if it counted. */
int quorum_fail(struct quorum *q, unsigned i, const char *why);
/*
 * Replica i failed and said it did not apply the write and never will
 * (NodeResult.refused): as quorum_fail(), and the write does not count as
 * sent there for quorum_failure_status().
 */
int quorum_refuse(struct quorum *q, unsigned i, const char *why);
/* Every PENDING or REPAIRING replica fails with why ("timeout"). */
void quorum_expire(struct quorum *q, const char *why);

/*
 * A read answer from replica i: its version, or NULL if it holds nothing
 * (absent counts as an answer).  Returns what it was; on QANS_FIRST or
 * QANS_NEWER the caller keeps this answer's value as the winner's.  The
 * answer that brings the count to `required` freezes the winner
 * (q->decided); later answers are judged against it.  On allocation
 * failure replica i is marked FAILED and QANS_IGNORED returned.
 */
enum quorum_answer quorum_answer(struct quorum *q, unsigned i,
                                 const struct stamp *version);
/* The STALE replica i is being sent the winner. */
void quorum_repairing(struct quorum *q, unsigned i);

unsigned quorum_count(const struct quorum *q, enum quorum_rep state);
/* Answers so far: HOLDS + STALE + REPAIRING. */
unsigned quorum_answered(const struct quorum *q);

/* Where a write round (or an ack-only round) stands. */
enum quorum_state quorum_write_state(const struct quorum *q);
/*
 * Where a read stands.  Before the winner is frozen: WAIT, or IMPOSSIBLE
 * if `required` answers can no longer come.  After: MET once `required`
 * replicas hold the winner (or newer), else REPAIR while some answered
 * replicas are STALE (the caller writes the winner back to each and marks
 * it with quorum_repairing()), WAIT while repairs are in flight,
 * IMPOSSIBLE if too few replicas are left to reach `required`.
 */
enum quorum_state quorum_read_state(const struct quorum *q);

/*
 * The status a failed round reports: a read or a write's clock phase
 * failed before anything was written -> UNAVAILABLE (2); a write whose
 * value was sent to at least one replica that did not refuse it ->
 * UNKNOWN (3): it may still take effect and must never be reported as
 * failed.  A write every replica it reached refused -> UNAVAILABLE.
 */
int quorum_failure_status(const struct quorum *q, int value_phase);

/*
 * A write round that can no longer meet its quorum: could waiting for the
 * replicas still pending turn its UNKNOWN into UNAVAILABLE?  Yes while no
 * replica acknowledged the write and every one it reached that failed
 * refused it (quorum_refuse); the caller then waits for the others, up to
 * its deadline.
 */
int quorum_refusals_may_settle(const struct quorum *q);

/*
 * "2 of 3 replicas needed; failed: node 2 (not connected), node 3
 * (timeout)".  names[i] names replica i.  Returns snprintf's length.
 */
int quorum_describe(const struct quorum *q, const char *const *names,
                    char *buf, size_t len);

#endif

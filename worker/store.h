/*
 * store.h - one storage worker's SQLite database (a shard of the node).
 *
 * The file holds the shard's versions of keys and the worker's clock:
 *
 *   meta  one row: magic, format version, shard index, the node's storage
 *         worker count, the epoch of the current start, the clock (its
 *         epoch kept current; its counter only as of the epoch's rise)
 *   kv    rowid table, one row per key: key (UNIQUE), ring_key_hash(key),
 *         stamp (epoch, counter, writer, nonce), tombstone flag, value,
 *         and for a tombstone deleted_ms, the wall-clock time this worker
 *         stored it (format 2; store_purge() waits on it)
 *
 * A rowid table with a UNIQUE key index and WAL: measured ~5x faster to
 * write than WITHOUT ROWID for rows of ~1 KiB (DESIGN.md 4).
 *
 * Page size 4 KiB, not the 16 KiB DESIGN.md measured as ~20% faster: that
 * held for new rows appended in order.  Keys of a shard arrive in random
 * order, and a write dirties whole pages: with 16 KiB pages an update of a
 * random 1 KiB value wrote ~33 KB to disk (WAL frame plus checkpoint) and
 * cost the worker ~64 us of CPU in batches of 16; with 4 KiB pages ~8.5 KB
 * and ~28 us (storage_bench, 100k keys; inserts into a young table were
 * equal, ~4 KB either way; reads within noise).
 * 64-bit unsigned numbers are stored as SQLite's signed integers with the
 * same bits; every comparison of stamps happens in C (stamp.h).
 *
 * Threads: one writer thread calls store_begin/apply/clock_raise/commit
 * (the group commit); any thread may take a reader (its own WAL read
 * connection) from the pool for gets and listings, and read the clock and
 * counters.  No nng in here: store.c is tested on its own.
 */
#ifndef RZKV_STORE_H
#define RZKV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "stamp.h"

#define STORE_FORMAT_VERSION    2   /* 1 is upgraded at open */
#define STORE_PAGE_SIZE         4096        /* set when the file is made */
#define STORE_APPLICATION_ID    0x727a6b76  /* "rzkv" in PRAGMA application_id */

/*
 * Why store_open refused a database.  All but STORE_E_ENV mean: don't
 * restart, an operator must act; STORE_E_ENV may pass by itself.
 */
enum store_status {
    STORE_OK = 0,
    STORE_E_OPEN,           /* can't create or open the file */
    STORE_E_NOT_RZKV,       /* not SQLite, or SQLite but not an rzkv shard */
    STORE_E_CORRUPT,        /* PRAGMA quick_check failed */
    STORE_E_VERSION,        /* written by another format version */
    STORE_E_SHARD,          /* belongs to another shard index */
    STORE_E_WORKERS,        /* written with another storage worker count */
    STORE_E_SQL,            /* any other SQLite failure while opening */
    STORE_E_ENV,            /* the disk is full or fails, memory ran out,
                             * or the file is locked: try again later */
};

struct store_config {
    const char *path;
    int shard;              /* this worker's instance */
    int shard_count;        /* node.storage_workers */
    int sync_full;          /* 1: synchronous=FULL (fsync each commit) */
    size_t checkpoint_bytes;/* WAL bytes in a checkpoint cycle (0: 2 MiB);
                             * the WAL usually starts over after one */
};

/* One version of a key.  Pointers are not owned. */
struct store_entry {
    const uint8_t *key;
    size_t key_len;
    struct stamp stamp;
    int tombstone;
    const uint8_t *value;
    size_t value_len;
    uint64_t tombstone_age_ms;  /* listings: ms since it was stored */
};

/* A version read from the database, with its own copy of the bytes. */
struct store_item {
    struct store_entry e;   /* points into buf */
    void *buf;              /* owned; store_item_free() */
};

struct store_stats {
    uint64_t entries;       /* rows, tombstones included */
    uint64_t commits;       /* committed write transactions */
    uint64_t fsyncs;        /* WAL fsyncs by commits (0 in NORMAL mode) */
    uint64_t ops_committed; /* operations in those transactions */
    uint64_t checkpoints;   /* WAL checkpoints completed */
    uint64_t wal_restarts;  /* commits that wrote the WAL from its start */
    uint64_t purged;        /* tombstones removed by store_purge() */
    uint64_t upgraded_from; /* format the file had at open, if older */
    uint64_t epoch;         /* epoch of this start */
    struct clock clock;     /* committed clock */
};

struct store;
struct store_reader;

/*
 * Open or create the database, check it (quick_check, meta against cfg)
 * and start a new epoch: clock = (stored clock epoch + 1, 0), committed
 * before this returns.  Returns STORE_OK, or a status with a message naming
 * the file in err.
 */
enum store_status store_open(const struct store_config *cfg,
                             struct store **out, char *err, size_t errlen);
/* Close every connection; all readers must have been released. */
void store_close(struct store *s);
const char *store_status_str(enum store_status st);

/* ---- writer thread only ---------------------------------------------- */

/* BEGIN IMMEDIATE; 0 or -1. */
int store_begin(struct store *s);
/*
 * Apply-if-newer: store e if its stamp is newer than the held version.
 * *applied says whether it was stored.  Raises the pending clock to the
 * stamp in the same transaction.  0, or -1 (the transaction must be
 * rolled back).
 */
int store_apply(struct store *s, const struct store_entry *e, int *applied);
/*
 * Remove key's row if it is a tombstone with exactly this stamp, stored
 * min_age_ms or more ago by the wall clock.  *purged says whether it was.
 * 0, or -1 (the transaction must be rolled back).
 */
int store_purge(struct store *s, const void *key, size_t len,
                const struct stamp *stamp, uint64_t min_age_ms, int *purged);
/* Raise the pending clock (never lowers it). */
void store_clock_raise(struct store *s, const struct clock *c);
/* Get inside the write transaction: 1 found, 0 absent, -1 error. */
int store_get_tx(struct store *s, const void *key, size_t len,
                 struct store_item *out);
/*
 * Record the pending clock if its epoch rose, and COMMIT (fsynced in FULL
 * mode); ops is how many operations the transaction carried.  Only then
 * does the committed clock move.  0; or, after rolling back, -1 when
 * nothing of the transaction reached the log (it failed before COMMIT,
 * or COMMIT found the disk full), or STORE_IN_DOUBT when COMMIT failed
 * otherwise (an I/O error): its commit record may be in the log, and
 * although readers never see it, recovery after a restart may.
 */
#define STORE_IN_DOUBT (-2)
int store_commit(struct store *s, size_t ops);
void store_rollback(struct store *s);
/* The last SQLite error of the writer connection. */
const char *store_errmsg(struct store *s);

/* ---- any thread ------------------------------------------------------- */

/* The committed clock: never ahead of what is durable. */
struct clock store_clock(struct store *s);
void store_stats(struct store *s, struct store_stats *out);
/* page_count * page_size of the main file plus the size of its WAL. */
uint64_t store_bytes_on_disk(struct store *s, struct store_reader *r);

/* A read connection of the pool (waits if all are busy); NULL on error. */
struct store_reader *store_reader_get(struct store *s);
void store_reader_put(struct store *s, struct store_reader *r);

/* 1 found, 0 absent, -1 error. */
int store_get(struct store_reader *r, const void *key, size_t len,
              struct store_item *out);
/* Read the gets between these two from one snapshot (one read
 * transaction); a failed begin leaves each get a transaction of its own. */
void store_read_begin(struct store_reader *r);
void store_read_end(struct store_reader *r);
void store_item_free(struct store_item *it);

/*
 * A listing in key order: keys in [start, end) (end_len 0: no upper
 * bound) whose ring_key_hash lies in [hash_start, hash_end] (any_hash:
 * every hash; hash_start > hash_end wraps around 2^64).
 */
struct store_list_query {
    const uint8_t *start;
    size_t start_len;
    const uint8_t *end;
    size_t end_len;
    int any_hash;
    uint64_t hash_start;
    uint64_t hash_end;
    int include_tombstones;
    size_t limit;           /* entries to return */
    size_t scan_budget;     /* rows to examine at most (0: no bound) */
    size_t byte_budget;     /* key bytes to return at most (0: no bound) */
};

/* Called for each listed entry (value unset); nonzero stops with error. */
typedef int (*store_list_fn)(void *arg, const struct store_entry *e);

/*
 * List per the query.  When it stops before the end of the range, *next
 * (malloc'd, *next_len bytes) is the key to start the next page at;
 * otherwise *next is NULL.  Returns the number of entries listed, or -1.
 */
long store_list(struct store_reader *r, const struct store_list_query *q,
                store_list_fn fn, void *arg, uint8_t **next, size_t *next_len);

#endif

/*
 * store.c - a storage worker's SQLite shard: apply-if-newer versions,
 * the durable clock, group-committed write transactions, pooled WAL
 * readers.  See store.h for the file layout and the threading rules.
 *
 * Why it is shaped this way:
 *  - Writes go through one connection in one thread, a whole group of
 *    requests per BEGIN IMMEDIATE..COMMIT, so one WAL fsync covers them all.
 *  - Reads use other connections: in WAL mode a reader sees every committed
 *    transaction and never waits behind the writer's fsync.  Because a
 *    write is acknowledged only after its COMMIT returns, a read that
 *    arrives after the acknowledgement sees it.
 *  - The clock others can see (store_clock) moves only after the commit
 *    that raised it, and a commit that raises the clock's epoch writes
 *    the new epoch; the epoch bump at open then makes every later clock
 *    larger than any clock of an earlier run, so no clock is ever handed
 *    out that a crash could take back.  A rise of the counter alone is
 *    not written: the bump outranks it anyway, and writing it cost every
 *    commit one more page (sets at c = 1 ran 7-24% faster without it).
 *  - Checkpoints (copying the WAL back into the main file) run in a
 *    thread of their own, on their own connection: done in the commit
 *    path, as SQLite does by default, they took ~25% of the writer's time
 *    under random writes (~20 ms each, every ~100 ms).  But SQLite starts
 *    the WAL over only when a write transaction begins with every frame
 *    already copied, which a writer that never waits (a saturated node)
 *    never sees: the WAL grew to tens of MiB, a checkpoint ran after
 *    nearly every commit, each with two fsyncs and a sort of the WAL's
 *    last 4,096-frame index segment: half the engine's CPU a write
 *    (bench/engine_bench: 36 -> 20 us a 1 KiB write, 51 -> 35 at 10 KiB,
 *    230 -> 71 at one write a commit).  So the WAL goes in cycles of
 *    STORE_WAL_CHECKPOINT_BYTES: the checkpointer copies an eighth of a
 *    cycle at a time, and once the WAL holds a cycle and the checkpointer
 *    is at most a sixteenth behind, the writer copies the rest before its
 *    next transaction (~1 ms, after its commit's writes are answered),
 *    which starts the WAL over.  Only if the WAL outgrows
 *    STORE_WAL_FORCE_BYTES (a reader held an old snapshot, or the
 *    checkpointer can't keep up) does the writer copy everything, so
 *    writers slow down instead of the WAL growing without bound.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "ring.h"
#include "store.h"

#define STORE_MAGIC         "rzkv-storage"
#define STORE_READERS_MAX   8
#define STORE_BUSY_MS       10000
#define STORE_READER_MMAP   "1073741824"    /* bytes of the file mapped */
#define STORE_WAL_CHECKPOINT_BYTES  (2u << 20)    /* a WAL cycle */
#define STORE_WAL_FORCE_BYTES       (256u << 20)  /* the writer checkpoints */

struct store_reader {
    struct store_reader *next_free;
    sqlite3 *db;
    sqlite3_stmt *get;
    sqlite3_stmt *list_from;        /* key >= ?1 */
    sqlite3_stmt *list_range;       /* key >= ?1 AND key < ?2 */
    sqlite3_stmt *page_count;
    sqlite3_stmt *begin, *commit;   /* one snapshot for several gets */
};

struct store {
    char *path;
    int sync_full;
    uint64_t page_size;

    /* The writer connection and its state: writer thread only. */
    sqlite3 *db;
    sqlite3_stmt *w_get;
    sqlite3_stmt *w_find;
    sqlite3_stmt *w_insert;
    sqlite3_stmt *w_update;
    sqlite3_stmt *w_clock;
    sqlite3_stmt *w_begin;
    sqlite3_stmt *w_commit;
    sqlite3_stmt *w_rollback;
    sqlite3_stmt *w_find_tombstone; /* w_find, and what a purge checks */
    sqlite3_stmt *w_delete;
    struct clock pending;           /* clock inside the open transaction */
    int64_t pending_rows;           /* rows added less rows purged */
    uint64_t pending_purged;
    uint64_t tx_now_ms;             /* wall clock at store_begin */
    uint64_t tx_epoch;              /* clock epoch at store_begin: the
                                     * commit writes the clock if pending
                                     * has a newer one */

    /* The checkpointer: its thread and connection. */
    sqlite3 *ck_db;
    pthread_t ck_thread;
    int ck_started;
    int ck_frames;                  /* WAL frames in a cycle */
    int ck_step;                    /* new frames that wake it */
    int ck_rest;                    /* frames it may be behind when the
                                     * writer finishes a cycle */
    int force_frames;               /* the writer copies all, whatever */
    int copy_pending;               /* the writer copies before its next
                                     * transaction (writer thread only) */
    int wal_frames;                 /* WAL size after the last commit */

    pthread_mutex_t lock;           /* everything below */
    pthread_cond_t reader_freed;
    pthread_cond_t ck_wake;
    int ck_busy;                    /* woken, until its run ends */
    int ck_log;                     /* WAL frames at the checkpointer's
                                     * last run in this cycle, or 0 */
    int ck_quit;
    struct clock clock;             /* committed */
    struct store_stats stats;
    struct store_reader *free_readers;
    struct store_reader *readers[STORE_READERS_MAX];
    int nreaders;
};

static const char *const schema_sql =
    "CREATE TABLE meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " magic TEXT NOT NULL,"
    " format INTEGER NOT NULL,"
    " shard INTEGER NOT NULL,"
    " shard_count INTEGER NOT NULL,"
    " epoch INTEGER NOT NULL,"
    " clock_epoch INTEGER NOT NULL,"
    " clock_counter INTEGER NOT NULL);"    /* as of clock_epoch's last rise */
    /* value after what listing reads, so it never reads its overflow
     * pages; deleted_ms after it only because format 1 lacked it (ALTER
     * TABLE appends), and it is NULL, so free to skip, unless there is
     * no value. */
    "CREATE TABLE kv ("
    " id INTEGER PRIMARY KEY,"
    " key BLOB NOT NULL UNIQUE,"
    " hash INTEGER NOT NULL,"
    " epoch INTEGER NOT NULL,"
    " counter INTEGER NOT NULL,"
    " writer BLOB NOT NULL,"
    " nonce INTEGER NOT NULL,"
    " tombstone INTEGER NOT NULL,"
    " value BLOB,"
    " deleted_ms INTEGER);";

/* Wall-clock milliseconds: when a tombstone was stored, and its age. */
static uint64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A non-NULL pointer for empty blobs: SQLite binds (NULL, 0) as NULL. */
static const uint8_t empty_blob[1];

const char *
store_status_str(enum store_status st)
{
    switch (st) {
    case STORE_OK: return "ok";
    case STORE_E_OPEN: return "cannot open";
    case STORE_E_NOT_RZKV: return "not an rzkv database";
    case STORE_E_CORRUPT: return "corrupt";
    case STORE_E_VERSION: return "unsupported format version";
    case STORE_E_SHARD: return "belongs to another shard";
    case STORE_E_WORKERS: return "wrong storage worker count";
    case STORE_E_SQL: return "SQLite error";
    case STORE_E_ENV: return "disk full, failing, or busy";
    }
    return "?";
}

static enum store_status
fail(char *err, size_t errlen, enum store_status st, const char *path,
     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static enum store_status
fail(char *err, size_t errlen, enum store_status st, const char *path,
     const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s: %s", path, store_status_str(st), msg);
    return st;
}

/* Map an SQLite error met while opening to a status. */
static enum store_status
open_status(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB: return STORE_E_NOT_RZKV;
    case SQLITE_CORRUPT: return STORE_E_CORRUPT;
    case SQLITE_CANTOPEN: case SQLITE_PERM: case SQLITE_READONLY:
        return STORE_E_OPEN;
    case SQLITE_FULL: case SQLITE_IOERR: case SQLITE_NOMEM: case SQLITE_BUSY:
        return STORE_E_ENV;
    default: return STORE_E_SQL;
    }
}

static void
bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
    sqlite3_bind_blob64(st, i, len ? p : empty_blob, len, SQLITE_STATIC);
}

static void
bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
    sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static uint64_t
column_u64(sqlite3_stmt *st, int i)
{
    return (uint64_t)sqlite3_column_int64(st, i);
}

static void
finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Run one statement that returns at most one integer; -1 rc on error. */
static int
query_int(sqlite3 *db, const char *sql, sqlite3_int64 *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/*
 * Run a statement returning text (e.g. a PRAGMA) into buf: its first rows
 * joined by "; " (quick_check reports a problem over several rows).
 */
static int
query_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *st;
    size_t used = 0;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    buf[0] = '\0';
    for (int row = 0; row < 3 && (rc = sqlite3_step(st)) == SQLITE_ROW;
         row++) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        int n = snprintf(buf + used, len - used, "%s%s", row ? "; " : "",
                         t ? (const char *)t : "");
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    sqlite3_finalize(st);
    return rc;
}

static int
prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
                              NULL);
}

/* ---- open ----------------------------------------------------------- */

static enum store_status
create_schema(struct store *s, const struct store_config *cfg, char *err,
              size_t errlen)
{
    char sql[256];
    int rc;

    /* The page size must be set before the first table exists. */
    snprintf(sql, sizeof(sql), "PRAGMA page_size=%d", STORE_PAGE_SIZE);
    if ((rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL,
                           NULL)) != SQLITE_OK ||
        (rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
            != SQLITE_OK)
        goto bad;
    if ((rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL)) != SQLITE_OK)
        goto bad_tx;
    snprintf(sql, sizeof(sql),
             "INSERT INTO meta VALUES (1, '%s', %d, %d, %d, 0, 0, 0);"
             "PRAGMA application_id=%d; PRAGMA user_version=%d;",
             STORE_MAGIC, STORE_FORMAT_VERSION, cfg->shard, cfg->shard_count,
             STORE_APPLICATION_ID, STORE_FORMAT_VERSION);
    if ((rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto bad_tx;
    return STORE_OK;
bad_tx:
    {
        enum store_status st = fail(err, errlen, open_status(rc), s->path,
                                    "creating tables: %s",
                                    sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
bad:
    return fail(err, errlen, open_status(rc), s->path, "creating: %s",
                sqlite3_errmsg(s->db));
}

/* Is this file one of ours, sound, and this worker's shard?  *format
 * is the format version it was written in. */
static enum store_status
check_existing(struct store *s, const struct store_config *cfg,
               sqlite3_int64 *format, char *err, size_t errlen)
{
    sqlite3_int64 app_id, version;
    char text[256];
    int rc;

    if ((rc = query_int(s->db, "PRAGMA application_id", &app_id)) != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    if (app_id != STORE_APPLICATION_ID)
        return fail(err, errlen, STORE_E_NOT_RZKV, s->path,
                    "SQLite database with application_id %lld, not an rzkv "
                    "shard", (long long)app_id);
    if ((rc = query_int(s->db, "PRAGMA user_version", &version)) != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    if (version < 1 || version > STORE_FORMAT_VERSION)
        return fail(err, errlen, STORE_E_VERSION, s->path,
                    "format version %lld, this rzkvd reads 1..%d",
                    (long long)version, STORE_FORMAT_VERSION);
    *format = version;
    if ((rc = query_text(s->db, "PRAGMA quick_check", text, sizeof(text)))
            != SQLITE_OK)
        return fail(err, errlen, open_status(rc) == STORE_E_SQL
                    ? STORE_E_CORRUPT : open_status(rc), s->path,
                    "quick_check: %s", sqlite3_errmsg(s->db));
    if (strcmp(text, "ok") != 0)
        return fail(err, errlen, STORE_E_CORRUPT, s->path, "quick_check: %s",
                    text);

    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(s->db, "SELECT magic, shard, shard_count "
                            "FROM meta WHERE id = 1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(err, errlen, STORE_E_NOT_RZKV, s->path, "no meta: %s",
                    sqlite3_errmsg(s->db));
    enum store_status status = STORE_OK;
    if (sqlite3_step(st) != SQLITE_ROW) {
        status = fail(err, errlen, STORE_E_NOT_RZKV, s->path, "empty meta");
    } else {
        const unsigned char *magic = sqlite3_column_text(st, 0);
        int shard = sqlite3_column_int(st, 1);
        int count = sqlite3_column_int(st, 2);
        if (magic == NULL || strcmp((const char *)magic, STORE_MAGIC) != 0)
            status = fail(err, errlen, STORE_E_NOT_RZKV, s->path,
                          "bad magic");
        else if (count != cfg->shard_count)
            status = fail(err, errlen, STORE_E_WORKERS, s->path,
                          "written by a node with %d storage workers, "
                          "node.storage_workers is %d (resharding is not "
                          "supported)", count, cfg->shard_count);
        else if (shard != cfg->shard)
            status = fail(err, errlen, STORE_E_SHARD, s->path,
                          "holds shard %d, this worker is shard %d", shard,
                          cfg->shard);
    }
    sqlite3_finalize(st);
    return status;
}

static enum store_status
set_pragmas(struct store *s, char *err, size_t errlen)
{
    char mode[32];
    sqlite3_int64 page_size;
    int rc;

    if ((rc = query_text(s->db, "PRAGMA journal_mode=WAL", mode,
                         sizeof(mode))) != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "WAL: %s",
                    sqlite3_errmsg(s->db));
    if (strcmp(mode, "wal") != 0)
        return fail(err, errlen, STORE_E_SQL, s->path,
                    "journal_mode is %s, not wal", mode);
    /*
     * synchronous FULL: in WAL mode it fsyncs the WAL at every commit,
     * NORMAL only at checkpoints (a power loss may lose the last commits).
     * FULL until the epoch bump is committed, whatever node.durability
     * says: a lost bump would let the next start hand out this run's
     * clocks again (store_open() lowers it afterwards).
     *
     * cache_size 8 MiB, not more: a B-tree rebalance gives a page a
     * temporary number past the end of the file, and the COMMIT that
     * follows walks every page in the cache to drop it.  With 64 MiB
     * (16,384 pages) that walk was 17% of a storage worker's CPU under
     * random 1 KiB sets, and the pages a larger cache saves come from the
     * OS page cache for ~2 us each (measured: 250 -> 217 us of storage
     * CPU a set).
     *
     * secure_delete FAST: zero deleted content only inside pages written
     * anyway.  Debian builds SQLite with it ON, which also rewrites every
     * overflow page freed by updating a large value (measured: -7% of
     * storage CPU for 10 KiB sets).  Freed overflow pages keep their old
     * bytes until reused, as rzkv(7) says.
     *
     * journal_size_limit: the WAL file is truncated back to 64 MiB after
     * a checkpoint that reset it, should a burst have grown it further.
     */
    static const char pragmas[] =
        "PRAGMA synchronous=FULL;"
        "PRAGMA cache_size=-8192;"
        "PRAGMA secure_delete=FAST;"
        "PRAGMA journal_size_limit=67108864;";
    if ((rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL)) != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    if ((rc = query_int(s->db, "PRAGMA page_size", &page_size)) != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    s->page_size = (uint64_t)page_size;
    return STORE_OK;
}

/*
 * Bring a file of an older format up to this one, in one transaction.
 * 1 -> 2: kv.deleted_ms, when each tombstone was stored.  Format 1 never
 * recorded it, so its tombstones count from the upgrade: a purge may
 * come later than it could have, never sooner.
 */
static enum store_status
upgrade_format(struct store *s, sqlite3_int64 from, char *err, size_t errlen)
{
    char sql[256];
    int rc;

    if ((rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
            != SQLITE_OK)
        goto bad;
    if (from < 2) {
        snprintf(sql, sizeof(sql),
                 "ALTER TABLE kv ADD COLUMN deleted_ms INTEGER;"
                 "UPDATE kv SET deleted_ms = %llu WHERE tombstone = 1;",
                 (unsigned long long)wall_ms());
        if ((rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
            goto bad_tx;
    }
    snprintf(sql, sizeof(sql), "UPDATE meta SET format = %d WHERE id = 1;"
             "PRAGMA user_version=%d;", STORE_FORMAT_VERSION,
             STORE_FORMAT_VERSION);
    if ((rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto bad_tx;
    s->stats.upgraded_from = (uint64_t)from;
    return STORE_OK;
bad_tx:
    {
        enum store_status st = fail(err, errlen, open_status(rc), s->path,
                                    "upgrading from format %lld: %s",
                                    (long long)from, sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return st;
    }
bad:
    return fail(err, errlen, open_status(rc), s->path,
                "upgrading from format %lld: %s", (long long)from,
                sqlite3_errmsg(s->db));
}

/* Start a new epoch, durably, before anything is answered. */
static enum store_status
bump_epoch(struct store *s, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
            != SQLITE_OK)
        goto bad;
    rc = sqlite3_prepare_v2(s->db, "SELECT epoch, clock_epoch FROM meta "
                            "WHERE id = 1", -1, &st, NULL);
    if (rc != SQLITE_OK || (rc = sqlite3_step(st)) != SQLITE_ROW)
        goto bad_tx;
    uint64_t epoch = column_u64(st, 0), clock_epoch = column_u64(st, 1);
    sqlite3_finalize(st);
    st = NULL;
    if (clock_epoch > epoch)
        epoch = clock_epoch;
    if (epoch == UINT64_MAX) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return fail(err, errlen, STORE_E_SQL, s->path, "epoch exhausted");
    }
    epoch++;
    rc = sqlite3_prepare_v2(s->db, "UPDATE meta SET epoch = ?1, "
                            "clock_epoch = ?1, clock_counter = 0 "
                            "WHERE id = 1", -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto bad_tx;
    bind_u64(st, 1, epoch);
    if ((rc = sqlite3_step(st)) != SQLITE_DONE)
        goto bad_tx;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto bad_tx;
    s->stats.epoch = epoch;
    s->clock.epoch = epoch;
    s->clock.counter = 0;
    return STORE_OK;
bad_tx:
    {
        enum store_status status = fail(err, errlen, open_status(rc), s->path,
                                        "new epoch: %s",
                                        sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return status;
    }
bad:
    return fail(err, errlen, open_status(rc), s->path, "new epoch: %s",
                sqlite3_errmsg(s->db));
}

static enum store_status
prepare_writer(struct store *s, char *err, size_t errlen)
{
    static const struct {
        size_t off;
        const char *sql;
    } stmts[] = {
        { offsetof(struct store, w_get),
          "SELECT epoch, counter, writer, nonce, tombstone, value "
          "FROM kv WHERE key = ?1" },
        { offsetof(struct store, w_find),
          "SELECT id, epoch, counter, writer, nonce FROM kv WHERE key = ?1" },
        { offsetof(struct store, w_find_tombstone),
          "SELECT id, epoch, counter, writer, nonce, tombstone, deleted_ms "
          "FROM kv WHERE key = ?1" },
        { offsetof(struct store, w_insert),
          "INSERT INTO kv (key, hash, epoch, counter, writer, nonce, "
          "tombstone, value, deleted_ms) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)" },
        { offsetof(struct store, w_update),
          "UPDATE kv SET epoch = ?2, counter = ?3, writer = ?4, nonce = ?5, "
          "tombstone = ?6, value = ?7, deleted_ms = ?8 WHERE id = ?1" },
        { offsetof(struct store, w_delete), "DELETE FROM kv WHERE id = ?1" },
        { offsetof(struct store, w_clock),
          "UPDATE meta SET clock_epoch = ?1, clock_counter = ?2 "
          "WHERE id = 1" },
        { offsetof(struct store, w_begin), "BEGIN IMMEDIATE" },
        { offsetof(struct store, w_commit), "COMMIT" },
        { offsetof(struct store, w_rollback), "ROLLBACK" },
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
        sqlite3_stmt **st = (sqlite3_stmt **)((char *)s + stmts[i].off);
        int rc = prepare(s->db, stmts[i].sql, st);
        if (rc != SQLITE_OK)
            return fail(err, errlen, STORE_E_NOT_RZKV, s->path,
                        "preparing \"%s\": %s", stmts[i].sql,
                        sqlite3_errmsg(s->db));
    }
    return STORE_OK;
}

static enum store_status
open_writer(struct store *s, const struct store_config *cfg, char *err,
            size_t errlen)
{
    sqlite3_int64 tables, entries, format = STORE_FORMAT_VERSION;
    enum store_status st;
    int rc;

    rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE |
                         SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return fail(err, errlen, STORE_E_OPEN, s->path, "%s",
                    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);

    /* The first read of the file tells SQLite from anything else. */
    rc = query_int(s->db, "SELECT count(*) FROM sqlite_master", &tables);
    if (rc != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    sqlite3_int64 app_id = 0;
    if ((rc = query_int(s->db, "PRAGMA application_id", &app_id))
            != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    if (tables == 0 && app_id == 0)
        st = create_schema(s, cfg, err, errlen);
    else
        st = check_existing(s, cfg, &format, err, errlen);
    if (st == STORE_OK)
        st = set_pragmas(s, err, errlen);
    if (st == STORE_OK && format < STORE_FORMAT_VERSION)
        st = upgrade_format(s, format, err, errlen);
    if (st == STORE_OK)
        st = bump_epoch(s, err, errlen);
    if (st == STORE_OK && !s->sync_full &&
        (rc = sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL,
                           NULL)) != SQLITE_OK)
        st = fail(err, errlen, STORE_E_SQL, s->path, "%s",
                  sqlite3_errmsg(s->db));
    if (st == STORE_OK)
        st = prepare_writer(s, err, errlen);
    if (st != STORE_OK)
        return st;
    if ((rc = query_int(s->db, "SELECT count(*) FROM kv", &entries))
            != SQLITE_OK)
        return fail(err, errlen, open_status(rc), s->path, "%s",
                    sqlite3_errmsg(s->db));
    s->stats.entries = (uint64_t)entries;
    return STORE_OK;
}

/* ---- checkpoints -------------------------------------------------------- */

/*
 * Called by SQLite on the writer connection after each commit; frames is
 * the WAL's size.  The checkpointer copies frames in the background, woken
 * once ck_step have come since its last run.  Once the WAL holds a cycle
 * (ck_frames) and the checkpointer is at most ck_rest frames behind (or,
 * should it never get that close, once the WAL holds two cycles), the
 * writer copies the rest itself before its next transaction, after this
 * commit's writes are answered; that transaction then finds every frame
 * copied and starts the WAL over.  (ck_log > frames: the checkpointer's
 * last run saw a WAL that has since started over by itself.)
 */
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct store *s = arg;
    int copy = 0;

    (void)db;
    (void)name;
    if (frames < s->wal_frames) {       /* this commit started it over */
        pthread_mutex_lock(&s->lock);
        s->stats.wal_restarts++;
        pthread_mutex_unlock(&s->lock);
    }
    s->wal_frames = frames;
    if (frames < s->ck_step)
        return SQLITE_OK;
    pthread_mutex_lock(&s->lock);
    if (frames >= s->force_frames) {
        copy = 1;               /* backpressure: the checkpointer is behind */
    } else if (!s->ck_busy) {
        int copied = s->ck_log <= frames ? s->ck_log : 0;
        if (frames >= s->ck_frames && copied > 0 &&
            (frames - copied <= s->ck_rest || frames >= 2 * s->ck_frames))
            copy = 1;
        else if (frames - copied >= s->ck_step) {
            s->ck_busy = 1;
            pthread_cond_signal(&s->ck_wake);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (copy)
        s->copy_pending = 1;
    return SQLITE_OK;
}

/* Before a write transaction: the copy wal_hook asked for. */
static void
copy_rest(struct store *s)
{
    if (!s->copy_pending)
        return;
    s->copy_pending = 0;
    if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                  NULL, NULL) == SQLITE_OK) {
        pthread_mutex_lock(&s->lock);
        s->stats.checkpoints++;
        s->ck_log = 0;          /* the next cycle */
        pthread_mutex_unlock(&s->lock);
    }
}

static void *
checkpointer_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->ck_busy && !s->ck_quit)
            pthread_cond_wait(&s->ck_wake, &s->lock);
        if (s->ck_quit)
            break;
        pthread_mutex_unlock(&s->lock);
        /* PASSIVE: never blocks the writer or readers; what it can't copy
         * now is copied next time. */
        int log = 0;
        int rc = sqlite3_wal_checkpoint_v2(s->ck_db, NULL,
                                           SQLITE_CHECKPOINT_PASSIVE, &log,
                                           NULL);
        pthread_mutex_lock(&s->lock);
        s->ck_busy = 0;
        if (rc == SQLITE_OK) {
            s->stats.checkpoints++;
            s->ck_log = log;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static enum store_status
start_checkpointer(struct store *s, const struct store_config *cfg,
                   char *err, size_t errlen)
{
    char sql[64];
    size_t bytes = cfg->checkpoint_bytes ? cfg->checkpoint_bytes
                                         : STORE_WAL_CHECKPOINT_BYTES;
    size_t force = STORE_WAL_FORCE_BYTES > 4 * bytes ? STORE_WAL_FORCE_BYTES
                                                     : 4 * bytes;
    s->ck_frames = (int)(bytes / s->page_size) + 1;
    s->ck_step = s->ck_frames / 8 + 1;
    s->ck_rest = s->ck_frames / 16 + 1;
    s->force_frames = (int)(force / s->page_size) + 1;

    if (sqlite3_open_v2(s->path, &s->ck_db, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return fail(err, errlen, STORE_E_OPEN, s->path, "checkpointer: %s",
                    s->ck_db ? sqlite3_errmsg(s->ck_db) : "out of memory");
    /* A checkpoint syncs the WAL before and the main file after copying,
     * at the same level as the writer's commits. */
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s",
             s->sync_full ? "FULL" : "NORMAL");
    if (sqlite3_exec(s->ck_db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail(err, errlen, STORE_E_SQL, s->path, "checkpointer: %s",
                    sqlite3_errmsg(s->ck_db));
    if (pthread_create(&s->ck_thread, NULL, checkpointer_main, s) != 0)
        return fail(err, errlen, STORE_E_SQL, s->path,
                    "cannot start the checkpoint thread");
    s->ck_started = 1;
    /* Replaces SQLite's own checkpoint-in-commit hook. */
    sqlite3_wal_hook(s->db, wal_hook, s);
    return STORE_OK;
}

static void
stop_checkpointer(struct store *s)
{
    if (s->ck_started) {
        pthread_mutex_lock(&s->lock);
        s->ck_quit = 1;
        pthread_cond_signal(&s->ck_wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->ck_thread, NULL);
        s->ck_started = 0;
    }
    sqlite3_close(s->ck_db);
    s->ck_db = NULL;
}

static void
close_reader(struct store_reader *r)
{
    if (r == NULL)
        return;
    sqlite3_finalize(r->get);
    sqlite3_finalize(r->list_from);
    sqlite3_finalize(r->list_range);
    sqlite3_finalize(r->page_count);
    sqlite3_finalize(r->begin);
    sqlite3_finalize(r->commit);
    sqlite3_close(r->db);
    free(r);
}

static struct store_reader *
open_reader(const char *path)
{
    struct store_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        goto bad;
    sqlite3_busy_timeout(r->db, STORE_BUSY_MS);
    /* Reads through mmap: ~25% less CPU per get than read(2) copies
     * (measured; for the writer it cost more, so it has none). */
    if (sqlite3_exec(r->db, "PRAGMA query_only=1; PRAGMA cache_size=-16384;"
                     "PRAGMA mmap_size=" STORE_READER_MMAP ";",
                     NULL, NULL, NULL) != SQLITE_OK)
        goto bad;
    if (prepare(r->db, "SELECT epoch, counter, writer, nonce, tombstone, "
                "value FROM kv WHERE key = ?1", &r->get) != SQLITE_OK ||
        prepare(r->db, "SELECT key, hash, epoch, counter, writer, nonce, "
                "tombstone, deleted_ms FROM kv WHERE key >= ?1 ORDER BY key",
                &r->list_from) != SQLITE_OK ||
        prepare(r->db, "SELECT key, hash, epoch, counter, writer, nonce, "
                "tombstone, deleted_ms FROM kv WHERE key >= ?1 AND key < ?2 "
                "ORDER BY key", &r->list_range) != SQLITE_OK ||
        prepare(r->db, "PRAGMA page_count", &r->page_count) != SQLITE_OK ||
        prepare(r->db, "BEGIN", &r->begin) != SQLITE_OK ||
        prepare(r->db, "COMMIT", &r->commit) != SQLITE_OK)
        goto bad;
    return r;
bad:
    close_reader(r);
    return NULL;
}

enum store_status
store_open(const struct store_config *cfg, struct store **out, char *err,
           size_t errlen)
{
    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->path = strdup(cfg->path)) == NULL) {
        free(s);
        return fail(err, errlen, STORE_E_OPEN, cfg->path, "out of memory");
    }
    s->sync_full = cfg->sync_full;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->reader_freed, NULL);
    pthread_cond_init(&s->ck_wake, NULL);

    enum store_status st = open_writer(s, cfg, err, errlen);
    if (st == STORE_OK)
        st = start_checkpointer(s, cfg, err, errlen);
    if (st == STORE_OK) {
        /* One reader now, so a file a reader can't open fails here. */
        struct store_reader *r = store_reader_get(s);
        if (r == NULL)
            st = fail(err, errlen, STORE_E_OPEN, s->path,
                      "cannot open a read connection");
        else
            store_reader_put(s, r);
    }
    if (st != STORE_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return STORE_OK;
}

void
store_close(struct store *s)
{
    if (s == NULL)
        return;
    stop_checkpointer(s);
    for (int i = 0; i < s->nreaders; i++)
        close_reader(s->readers[i]);
    sqlite3_stmt *stmts[] = {
        s->w_get, s->w_find, s->w_find_tombstone, s->w_insert, s->w_update,
        s->w_delete, s->w_clock, s->w_begin, s->w_commit, s->w_rollback,
    };
    for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
        sqlite3_finalize(stmts[i]);
    /* The last connection to close checkpoints and removes the WAL. */
    sqlite3_close(s->db);
    pthread_cond_destroy(&s->reader_freed);
    pthread_cond_destroy(&s->ck_wake);
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

/* ---- writer ----------------------------------------------------------- */

const char *
store_errmsg(struct store *s)
{
    return sqlite3_errmsg(s->db);
}

int
store_begin(struct store *s)
{
    copy_rest(s);
    int rc = sqlite3_step(s->w_begin);
    sqlite3_reset(s->w_begin);
    pthread_mutex_lock(&s->lock);
    s->pending = s->clock;
    pthread_mutex_unlock(&s->lock);
    s->tx_epoch = s->pending.epoch;
    s->pending_rows = 0;
    s->pending_purged = 0;
    s->tx_now_ms = wall_ms();
    return rc == SQLITE_DONE ? 0 : -1;
}

void
store_clock_raise(struct store *s, const struct clock *c)
{
    clock_raise(&s->pending, c->epoch, c->counter);
}

static int
write_version(struct store *s, sqlite3_int64 rowid, int exists,
              const struct store_entry *e)
{
    sqlite3_stmt *st;
    int rc;

    if (exists) {
        st = s->w_update;
        sqlite3_bind_int64(st, 1, rowid);
    } else {
        st = s->w_insert;
        bind_blob(st, 1, e->key, e->key_len);
        bind_u64(st, 2, ring_key_hash(e->key, e->key_len));
    }
    bind_u64(st, 3 - exists, e->stamp.epoch);
    bind_u64(st, 4 - exists, e->stamp.counter);
    bind_blob(st, 5 - exists, e->stamp.writer, e->stamp.writer_len);
    bind_u64(st, 6 - exists, e->stamp.nonce);
    sqlite3_bind_int(st, 7 - exists, e->tombstone != 0);
    if (e->tombstone) {
        sqlite3_bind_null(st, 8 - exists);
        bind_u64(st, 9 - exists, s->tx_now_ms);
    } else {
        bind_blob(st, 8 - exists, e->value, e->value_len);
        sqlite3_bind_null(st, 9 - exists);
    }
    rc = sqlite3_step(st);
    finish(st);
    if (rc != SQLITE_DONE)
        return -1;
    if (!exists)
        s->pending_rows++;
    return 0;
}

/* The stamp of a w_find or w_find_tombstone row (columns 1-4), pointing
 * into the row. */
static struct stamp
found_stamp(sqlite3_stmt *st)
{
    struct stamp held = {
        .epoch = column_u64(st, 1),
        .counter = column_u64(st, 2),
        .writer = sqlite3_column_blob(st, 3),
        .writer_len = (size_t)sqlite3_column_bytes(st, 3),
        .nonce = column_u64(st, 4),
    };
    return held;
}

int
store_apply(struct store *s, const struct store_entry *e, int *applied)
{
    sqlite3_stmt *st = s->w_find;
    sqlite3_int64 rowid = 0;
    int exists = 0, apply;

    *applied = 0;
    bind_blob(st, 1, e->key, e->key_len);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        struct stamp held = found_stamp(st);
        rowid = sqlite3_column_int64(st, 0);
        exists = 1;
        apply = stamp_should_apply(&held, &e->stamp);
    } else if (rc == SQLITE_DONE) {
        apply = 1;
    } else {
        finish(st);
        return -1;
    }
    finish(st);

    /* An older version can't raise the clock: the held one already did. */
    struct clock c = { e->stamp.epoch, e->stamp.counter };
    store_clock_raise(s, &c);
    if (!apply)
        return 0;
    if (write_version(s, rowid, exists, e) != 0)
        return -1;
    *applied = 1;
    return 0;
}

int
store_purge(struct store *s, const void *key, size_t len,
            const struct stamp *stamp, uint64_t min_age_ms, int *purged)
{
    sqlite3_stmt *st = s->w_find_tombstone;
    int rc, match = 0;
    sqlite3_int64 rowid = 0;

    *purged = 0;
    bind_blob(st, 1, key, len);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct stamp held = found_stamp(st);
        uint64_t deleted = column_u64(st, 6);
        rowid = sqlite3_column_int64(st, 0);
        /* A clock set back leaves the tombstone for later, not sooner. */
        match = sqlite3_column_int(st, 5) &&
                sqlite3_column_type(st, 6) == SQLITE_INTEGER &&
                stamp_cmp(&held, stamp) == 0 &&
                deleted <= s->tx_now_ms &&
                s->tx_now_ms - deleted >= min_age_ms;
    }
    finish(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    if (!match)
        return 0;
    sqlite3_bind_int64(s->w_delete, 1, rowid);
    rc = sqlite3_step(s->w_delete);
    finish(s->w_delete);
    if (rc != SQLITE_DONE)
        return -1;
    s->pending_rows--;
    s->pending_purged++;
    *purged = 1;
    return 0;
}

int
store_commit(struct store *s, size_t ops)
{
    int rc;

    /* Only a new epoch needs writing (see the top of this file). */
    if (s->pending.epoch != s->tx_epoch) {
        bind_u64(s->w_clock, 1, s->pending.epoch);
        bind_u64(s->w_clock, 2, s->pending.counter);
        rc = sqlite3_step(s->w_clock);
        finish(s->w_clock);
        if (rc != SQLITE_DONE) {
            store_rollback(s);
            return -1;
        }
    }
    rc = sqlite3_step(s->w_commit);
    sqlite3_reset(s->w_commit);
    if (rc != SQLITE_DONE) {
        /* The WAL's frames are written in order, the commit record last
         * (and with powersafe overwrite, the default, nothing after it):
         * a full disk stops them before it.  An fsync that failed did not. */
        int full = (rc & 0xff) == SQLITE_FULL;
        store_rollback(s);
        return full ? -1 : STORE_IN_DOUBT;
    }
    pthread_mutex_lock(&s->lock);
    s->clock = s->pending;
    s->stats.commits++;
    if (s->sync_full)
        s->stats.fsyncs++;
    s->stats.ops_committed += ops;
    s->stats.entries += (uint64_t)s->pending_rows;
    s->stats.purged += s->pending_purged;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void
store_rollback(struct store *s)
{
    /* Some errors (disk full, I/O) have already rolled back. */
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->w_rollback);
        sqlite3_reset(s->w_rollback);
    }
    s->tx_epoch = s->pending.epoch;     /* nothing left to write */
    s->pending_rows = 0;
    s->pending_purged = 0;
}

/* ---- reads ------------------------------------------------------------ */

/* Copy the current row of a get statement into out. */
static int
copy_item(sqlite3_stmt *st, const void *key, size_t key_len,
          struct store_item *out)
{
    const void *writer = sqlite3_column_blob(st, 2);
    size_t writer_len = (size_t)sqlite3_column_bytes(st, 2);
    const void *value = sqlite3_column_blob(st, 5);
    size_t value_len = (size_t)sqlite3_column_bytes(st, 5);
    uint8_t *buf = malloc(key_len + writer_len + value_len + 1);
    if (buf == NULL)
        return -1;
    memcpy(buf, key, key_len);
    if (writer_len)
        memcpy(buf + key_len, writer, writer_len);
    if (value_len)
        memcpy(buf + key_len + writer_len, value, value_len);
    out->buf = buf;
    out->e.key = buf;
    out->e.key_len = key_len;
    out->e.stamp.epoch = column_u64(st, 0);
    out->e.stamp.counter = column_u64(st, 1);
    out->e.stamp.writer = buf + key_len;
    out->e.stamp.writer_len = writer_len;
    out->e.stamp.nonce = column_u64(st, 3);
    out->e.tombstone = sqlite3_column_int(st, 4);
    out->e.value = buf + key_len + writer_len;
    out->e.value_len = value_len;
    return 0;
}

static int
get_with(sqlite3_stmt *st, const void *key, size_t len,
         struct store_item *out)
{
    memset(out, 0, sizeof(*out));
    bind_blob(st, 1, key, len);
    int rc = sqlite3_step(st), found;
    if (rc == SQLITE_ROW)
        found = copy_item(st, key, len, out) == 0 ? 1 : -1;
    else
        found = rc == SQLITE_DONE ? 0 : -1;
    finish(st);
    return found;
}

int
store_get_tx(struct store *s, const void *key, size_t len,
             struct store_item *out)
{
    return get_with(s->w_get, key, len, out);
}

int
store_get(struct store_reader *r, const void *key, size_t len,
          struct store_item *out)
{
    return get_with(r->get, key, len, out);
}

/*
 * Every statement outside a transaction is a read transaction of its
 * own, and starting one takes and drops POSIX locks on the WAL index
 * (fcntl: ~10% of a storage worker's CPU under gets, one get a
 * transaction).  A batch of gets shares one.
 */
void
store_read_begin(struct store_reader *r)
{
    sqlite3_step(r->begin);
    sqlite3_reset(r->begin);
}

void
store_read_end(struct store_reader *r)
{
    if (!sqlite3_get_autocommit(r->db)) {
        sqlite3_step(r->commit);
        sqlite3_reset(r->commit);
    }
}

void
store_item_free(struct store_item *it)
{
    free(it->buf);
    it->buf = NULL;
}

static int
hash_in_range(const struct store_list_query *q, uint64_t h)
{
    if (q->any_hash)
        return 1;
    if (q->hash_start <= q->hash_end)
        return h >= q->hash_start && h <= q->hash_end;
    return h >= q->hash_start || h <= q->hash_end;     /* wraps */
}

static int
copy_next_key(sqlite3_stmt *st, uint8_t **next, size_t *next_len)
{
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    const void *key = sqlite3_column_blob(st, 0);
    if ((*next = malloc(len ? len : 1)) == NULL)
        return -1;
    if (len)
        memcpy(*next, key, len);
    *next_len = len;
    return 0;
}

long
store_list(struct store_reader *r, const struct store_list_query *q,
           store_list_fn fn, void *arg, uint8_t **next, size_t *next_len)
{
    sqlite3_stmt *st = q->end_len ? r->list_range : r->list_from;
    size_t listed = 0, scanned = 0, bytes = 0;
    uint64_t now = wall_ms();
    long result = 0;
    int rc;

    *next = NULL;
    *next_len = 0;
    bind_blob(st, 1, q->start, q->start_len);
    if (q->end_len)
        bind_blob(st, 2, q->end, q->end_len);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (listed >= q->limit ||
            (q->scan_budget && scanned >= q->scan_budget) ||
            (q->byte_budget && bytes >= q->byte_budget)) {
            /* Stop here: this row is the first of the next page. */
            if (copy_next_key(st, next, next_len) != 0)
                result = -1;
            break;
        }
        scanned++;
        uint64_t h = column_u64(st, 1);
        int tomb = sqlite3_column_int(st, 6);
        if (!hash_in_range(q, h) || (tomb && !q->include_tombstones))
            continue;
        struct store_entry e = {
            .key = sqlite3_column_blob(st, 0),
            .key_len = (size_t)sqlite3_column_bytes(st, 0),
            .stamp = {
                .epoch = column_u64(st, 2),
                .counter = column_u64(st, 3),
                .writer = sqlite3_column_blob(st, 4),
                .writer_len = (size_t)sqlite3_column_bytes(st, 4),
                .nonce = column_u64(st, 5),
            },
            .tombstone = tomb,
        };
        if (tomb && sqlite3_column_type(st, 7) == SQLITE_INTEGER) {
            uint64_t deleted = column_u64(st, 7);
            e.tombstone_age_ms = deleted < now ? now - deleted : 0;
        }
        if (fn(arg, &e) != 0) {
            result = -1;
            break;
        }
        listed++;
        bytes += e.key_len;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = -1;
    finish(st);
    if (result < 0) {
        free(*next);
        *next = NULL;
        *next_len = 0;
        return -1;
    }
    return (long)listed;
}

/* ---- pool, clock, counters ------------------------------------------ */

struct store_reader *
store_reader_get(struct store *s)
{
    struct store_reader *r;

    pthread_mutex_lock(&s->lock);
    while (s->free_readers == NULL && s->nreaders >= STORE_READERS_MAX)
        pthread_cond_wait(&s->reader_freed, &s->lock);
    if ((r = s->free_readers) != NULL) {
        s->free_readers = r->next_free;
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    /* Opening is rare (at most STORE_READERS_MAX times): hold the lock. */
    r = open_reader(s->path);
    if (r != NULL)
        s->readers[s->nreaders++] = r;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void
store_reader_put(struct store *s, struct store_reader *r)
{
    pthread_mutex_lock(&s->lock);
    r->next_free = s->free_readers;
    s->free_readers = r;
    pthread_cond_signal(&s->reader_freed);
    pthread_mutex_unlock(&s->lock);
}

struct clock
store_clock(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    struct clock c = s->clock;
    pthread_mutex_unlock(&s->lock);
    return c;
}

void
store_stats(struct store *s, struct store_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    out->clock = s->clock;
    pthread_mutex_unlock(&s->lock);
}

uint64_t
store_bytes_on_disk(struct store *s, struct store_reader *r)
{
    uint64_t bytes = 0;
    if (sqlite3_step(r->page_count) == SQLITE_ROW)
        bytes = column_u64(r->page_count, 0) * s->page_size;
    sqlite3_reset(r->page_count);

    char wal[4096];
    struct stat st;
    snprintf(wal, sizeof(wal), "%s-wal", s->path);
    if (stat(wal, &st) == 0)
        bytes += (uint64_t)st.st_size;
    return bytes;
}

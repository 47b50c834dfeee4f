/*
 * test_store.c - the storage worker's SQLite layer (worker/store.c) on its
 * own, in a temporary directory: apply-if-newer, the durable clock and
 * epoch, refusing databases that are not this shard's, listings,
 * purging tombstones, upgrading format 1 files.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ring.h"
#include "store.h"

struct fixture {
    char dir[64];
    char path[128];
    char err[512];
};

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/rzkv-store.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/shard-0.db", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static struct store *
open_ok(struct fixture *f, int shard, int count)
{
    struct store_config cfg = { f->path, shard, count, 1, 0 };
    struct store *s = NULL;
    enum store_status st = store_open(&cfg, &s, f->err, sizeof(f->err));
    if (st != STORE_OK)
        print_error("store_open: %s\n", f->err);
    assert_int_equal(st, STORE_OK);
    return s;
}

static enum store_status
open_status(struct fixture *f, int shard, int count)
{
    struct store_config cfg = { f->path, shard, count, 1, 0 };
    struct store *s = NULL;
    enum store_status st = store_open(&cfg, &s, f->err, sizeof(f->err));
    if (st == STORE_OK)
        store_close(s);
    return st;
}

static struct store_entry
entry(const char *key, uint64_t e, uint64_t c, const char *writer,
      uint64_t nonce, const char *value)
{
    struct store_entry en = {
        .key = (const uint8_t *)key, .key_len = strlen(key),
        .stamp = { e, c, (const uint8_t *)writer, strlen(writer), nonce },
        .tombstone = value == NULL,
        .value = (const uint8_t *)value, .value_len = value ? strlen(value) : 0,
    };
    return en;
}

/* Apply one entry in its own transaction; returns applied. */
static int
put(struct store *s, struct store_entry e)
{
    int applied = -1;
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_apply(s, &e, &applied), 0);
    assert_int_equal(store_commit(s, 1), 0);
    return applied;
}

/* The held version of key through a reader: "E.C writer value|-". */
static const char *
held(struct store *s, const char *key)
{
    static char buf[256];
    struct store_reader *r = store_reader_get(s);
    struct store_item it;
    assert_non_null(r);
    int found = store_get(r, key, strlen(key), &it);
    store_reader_put(s, r);
    assert_true(found >= 0);
    if (!found)
        return "absent";
    snprintf(buf, sizeof(buf), "%llu.%llu %.*s %s%.*s",
             (unsigned long long)it.e.stamp.epoch,
             (unsigned long long)it.e.stamp.counter,
             (int)it.e.stamp.writer_len, it.e.stamp.writer,
             it.e.tombstone ? "tomb" : "", (int)it.e.value_len, it.e.value);
    store_item_free(&it);
    return buf;
}

/* The first column of the first row of text, by a connection of our own. */
static int64_t
query_one(const char *path, const char *text)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, text, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* The clock as recorded in the file. */
static struct clock
file_clock(struct fixture *f)
{
    struct clock c = {
        (uint64_t)query_one(f->path, "SELECT clock_epoch FROM meta"),
        (uint64_t)query_one(f->path, "SELECT clock_counter FROM meta"),
    };
    return c;
}

static void
assert_clock(struct clock c, uint64_t e, uint64_t n)
{
    assert_int_equal(c.epoch, e);
    assert_int_equal(c.counter, n);
}

static void
test_apply_if_newer(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);

    assert_string_equal(held(s, "k"), "absent");
    assert_int_equal(put(s, entry("k", 5, 5, "w", 1, "v1")), 1);
    assert_string_equal(held(s, "k"), "5.5 w v1");
    /* older: counter, then writer, then nonce */
    assert_int_equal(put(s, entry("k", 5, 4, "z", 9, "old")), 0);
    assert_int_equal(put(s, entry("k", 5, 5, "v", 9, "old")), 0);
    assert_int_equal(put(s, entry("k", 5, 5, "w", 0, "old")), 0);
    /* equal: acknowledged, not applied */
    assert_int_equal(put(s, entry("k", 5, 5, "w", 1, "same")), 0);
    assert_string_equal(held(s, "k"), "5.5 w v1");
    /* newer by nonce, then by epoch */
    assert_int_equal(put(s, entry("k", 5, 5, "w", 2, "v2")), 1);
    assert_string_equal(held(s, "k"), "5.5 w v2");
    /* tombstone over a value, an older value under it, value over it */
    assert_int_equal(put(s, entry("k", 6, 0, "w", 0, NULL)), 1);
    assert_string_equal(held(s, "k"), "6.0 w tomb");
    assert_int_equal(put(s, entry("k", 5, 9, "w", 0, "zombie")), 0);
    assert_string_equal(held(s, "k"), "6.0 w tomb");
    assert_int_equal(put(s, entry("k", 6, 1, "w", 0, "back")), 1);
    assert_string_equal(held(s, "k"), "6.1 w back");
    /* an empty value is a value, not a tombstone */
    assert_int_equal(put(s, entry("k", 7, 0, "w", 0, "")), 1);
    assert_string_equal(held(s, "k"), "7.0 w ");

    struct store_stats st;
    store_stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.commits, 10);
    assert_int_equal(st.fsyncs, 10);
    assert_int_equal(st.ops_committed, 10);
    store_close(s);
}

/* A batch of gets reads one snapshot, and the next batch a newer one. */
static void
test_read_snapshot(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);
    struct store_item it;

    assert_int_equal(put(s, entry("a", 1, 1, "w", 1, "a1")), 1);
    assert_int_equal(put(s, entry("b", 1, 1, "w", 1, "b1")), 1);
    struct store_reader *r = store_reader_get(s);
    assert_non_null(r);
    store_read_begin(r);
    assert_int_equal(store_get(r, "a", 1, &it), 1);
    store_item_free(&it);
    /* committed while the batch reads: not in its snapshot */
    assert_int_equal(put(s, entry("b", 1, 2, "w", 1, "b2")), 1);
    assert_int_equal(store_get(r, "b", 1, &it), 1);
    assert_int_equal(it.e.value_len, 2);
    assert_memory_equal(it.e.value, "b1", 2);
    store_item_free(&it);
    store_read_end(r);
    /* the next batch on the same connection sees it */
    store_read_begin(r);
    assert_int_equal(store_get(r, "b", 1, &it), 1);
    assert_memory_equal(it.e.value, "b2", 2);
    store_item_free(&it);
    store_read_end(r);
    store_reader_put(s, r);
    assert_string_equal(held(s, "b"), "1.2 w b2");
    store_close(s);
}

static void
test_clock_same_transaction(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);
    struct store_entry e = entry("a", 9, 9, "w", 0, "x");
    int applied;

    assert_clock(store_clock(s), 1, 0);
    assert_clock(file_clock(f), 1, 0);

    /* Rolled back: neither the entry nor the clock stays. */
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_apply(s, &e, &applied), 0);
    assert_clock(store_clock(s), 1, 0);     /* not visible before commit */
    store_rollback(s);
    assert_clock(store_clock(s), 1, 0);
    assert_clock(file_clock(f), 1, 0);
    assert_string_equal(held(s, "a"), "absent");

    /* Committed: both, in the file. */
    assert_int_equal(put(s, e), 1);
    assert_clock(store_clock(s), 9, 9);
    assert_clock(file_clock(f), 9, 9);

    /* Never lowered: an older entry (applied to a new key) or clock set. */
    assert_int_equal(put(s, entry("b", 3, 1, "w", 0, "y")), 1);
    struct clock low = { 8, 100 }, high = { 9, 12 };
    assert_int_equal(store_begin(s), 0);
    store_clock_raise(s, &low);
    assert_int_equal(store_commit(s, 1), 0);
    assert_clock(store_clock(s), 9, 9);
    assert_int_equal(store_begin(s), 0);
    store_clock_raise(s, &high);
    assert_int_equal(store_commit(s, 1), 0);
    assert_clock(store_clock(s), 9, 12);
    /* A rise of the counter alone is not written: the epoch bump at the
     * next open outranks every clock of epoch 9 anyway. */
    assert_clock(file_clock(f), 9, 9);
    store_close(s);
    s = open_ok(f, 0, 1);
    assert_clock(store_clock(s), 10, 0);
    assert_clock(file_clock(f), 10, 0);
    store_close(s);
}

static void
test_epoch_bumps(void **state)
{
    struct fixture *f = *state;
    struct store_stats st;
    struct clock handed_out = { 0, 0 };

    for (uint64_t run = 1; run <= 3; run++) {
        struct store *s = open_ok(f, 0, 1);
        store_stats(s, &st);
        assert_int_equal(st.epoch, run);
        struct clock now = store_clock(s);
        assert_true(clock_cmp(&now, &handed_out) > 0);
        assert_clock(now, run, 0);
        /* Hand out clocks within this epoch. */
        char key[16];
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)run);
        put(s, entry(key, run, 40 + run, "w", 0, "v"));
        handed_out = store_clock(s);
        assert_clock(handed_out, run, 40 + run);
        store_close(s);
    }

    /* A clock raised to a far epoch: the next start is beyond it. */
    struct store *s = open_ok(f, 0, 1);
    struct clock far = { 50, 3 };
    assert_int_equal(store_begin(s), 0);
    store_clock_raise(s, &far);
    assert_int_equal(store_commit(s, 1), 0);
    store_close(s);
    s = open_ok(f, 0, 1);
    store_stats(s, &st);
    assert_int_equal(st.epoch, 51);
    assert_clock(store_clock(s), 51, 0);
    assert_int_equal(st.entries, 3);
    store_close(s);

    /* The file is WAL with the page size chosen in store.h. */
    assert_int_equal(query_one(f->path, "PRAGMA page_size"), STORE_PAGE_SIZE);
    sqlite3 *db;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* Purge key in a transaction of its own; returns purged. */
static int
purge(struct store *s, const char *key, uint64_t e, uint64_t c,
      const char *writer, uint64_t nonce, uint64_t min_age_ms)
{
    struct stamp st = { e, c, (const uint8_t *)writer, strlen(writer),
                        nonce };
    int purged = -1;
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_purge(s, key, strlen(key), &st, min_age_ms,
                                 &purged), 0);
    assert_int_equal(store_commit(s, 1), 0);
    return purged;
}

/* A purge removes exactly the tombstone named, and only once it is old. */
static void
test_purge(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);

    assert_int_equal(put(s, entry("v", 3, 1, "w", 0, "value")), 1);
    assert_int_equal(put(s, entry("t", 3, 2, "w", 0, NULL)), 1);
    /* too young, other stamps, a value, an absent key: all kept */
    assert_int_equal(purge(s, "t", 3, 2, "w", 0, 60000), 0);
    assert_int_equal(purge(s, "t", 3, 2, "w", 1, 1), 0);
    assert_int_equal(purge(s, "t", 3, 1, "w", 0, 1), 0);
    assert_int_equal(purge(s, "t", 3, 2, "x", 0, 1), 0);
    assert_int_equal(purge(s, "v", 3, 1, "w", 0, 1), 0);
    assert_int_equal(purge(s, "nothing", 3, 1, "w", 0, 1), 0);
    assert_string_equal(held(s, "t"), "3.2 w tomb");
    assert_string_equal(held(s, "v"), "3.1 w value");

    usleep(20 * 1000);
    assert_int_equal(purge(s, "t", 3, 2, "w", 0, 10), 1);
    assert_string_equal(held(s, "t"), "absent");
    assert_int_equal(purge(s, "t", 3, 2, "w", 0, 10), 0);

    /* The clock keeps what the tombstone raised it to. */
    struct store_stats st;
    store_stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.purged, 1);
    assert_int_equal(st.clock.counter, 2);

    /* A tombstone overwritten by a value is the value's now. */
    assert_int_equal(put(s, entry("t", 3, 3, "w", 0, NULL)), 1);
    assert_int_equal(put(s, entry("t", 3, 4, "w", 0, "again")), 1);
    usleep(20 * 1000);
    assert_int_equal(purge(s, "t", 3, 3, "w", 0, 10), 0);
    assert_string_equal(held(s, "t"), "3.4 w again");
    /* and one rewritten with a newer tombstone ages from then */
    assert_int_equal(put(s, entry("t", 3, 5, "w", 0, NULL)), 1);
    assert_int_equal(purge(s, "t", 3, 5, "w", 0, 60000), 0);
    usleep(20 * 1000);
    assert_int_equal(purge(s, "t", 3, 5, "w", 0, 10), 1);
    store_close(s);

    /* A purge is durable. */
    s = open_ok(f, 0, 1);
    assert_string_equal(held(s, "t"), "absent");
    assert_string_equal(held(s, "v"), "3.1 w value");
    store_stats(s, &st);
    assert_int_equal(st.entries, 1);
    store_close(s);
}

static void
write_file(const char *path, const void *data, size_t len, long offset)
{
    FILE *fp = fopen(path, offset < 0 ? "w" : "r+");
    assert_non_null(fp);
    if (offset > 0)
        assert_int_equal(fseek(fp, offset, SEEK_SET), 0);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

static void
sql(const char *path, const char *text)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void
test_refuses_foreign_databases(void **state)
{
    struct fixture *f = *state;

    store_close(open_ok(f, 1, 3));
    assert_int_equal(open_status(f, 2, 3), STORE_E_SHARD);
    assert_non_null(strstr(f->err, f->path));
    assert_int_equal(open_status(f, 1, 4), STORE_E_WORKERS);
    assert_non_null(strstr(f->err, "storage workers"));
    assert_int_equal(open_status(f, 1, 3), STORE_OK);

    sql(f->path, "PRAGMA user_version=7");
    assert_int_equal(open_status(f, 1, 3), STORE_E_VERSION);

    unlink(f->path);
    write_file(f->path, "hello, this is not a database at all\n", 37, -1);
    assert_int_equal(open_status(f, 0, 1), STORE_E_NOT_RZKV);

    unlink(f->path);
    sql(f->path, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    assert_int_equal(open_status(f, 0, 1), STORE_E_NOT_RZKV);

    char bad[256];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/shard-0.db", f->dir);
    struct store_config cfg = { bad, 0, 1, 1, 0 };
    struct store *s = NULL;
    assert_int_equal(store_open(&cfg, &s, f->err, sizeof(f->err)),
                     STORE_E_OPEN);
    assert_null(s);
}

/* A listed tombstone's age, via store_list's callback. */
static int
age_of_tombstone(void *arg, const struct store_entry *e)
{
    if (e->tombstone)
        *(uint64_t *)arg = e->tombstone_age_ms;
    return 0;
}

/* A format 1 file (no kv.deleted_ms) is upgraded in place at open; its
 * tombstones count their age from the upgrade. */
static void
test_upgrade_from_format_1(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);
    assert_int_equal(put(s, entry("v", 1, 1, "w", 0, "kept")), 1);
    assert_int_equal(put(s, entry("t", 1, 2, "w", 0, NULL)), 1);
    store_close(s);
    sql(f->path, "ALTER TABLE kv DROP COLUMN deleted_ms;"
        "UPDATE meta SET format = 1; PRAGMA user_version=1;");

    s = open_ok(f, 0, 1);
    struct store_stats st;
    store_stats(s, &st);
    assert_int_equal(st.upgraded_from, 1);
    assert_string_equal(held(s, "v"), "1.1 w kept");
    assert_string_equal(held(s, "t"), "1.2 w tomb");
    uint64_t age = UINT64_MAX;
    struct store_list_query q = { .start = (const uint8_t *)"",
                                  .any_hash = 1, .include_tombstones = 1,
                                  .limit = 10 };
    uint8_t *next;
    size_t next_len;
    struct store_reader *r = store_reader_get(s);
    assert_int_equal(store_list(r, &q, age_of_tombstone, &age, &next,
                                &next_len), 2);
    store_reader_put(s, r);
    assert_true(age < 60000);
    usleep(20 * 1000);
    assert_int_equal(purge(s, "t", 1, 2, "w", 0, 10), 1);
    store_close(s);

    assert_int_equal(query_one(f->path, "PRAGMA user_version"),
                     STORE_FORMAT_VERSION);
    assert_int_equal(query_one(f->path, "SELECT format FROM meta"),
                     STORE_FORMAT_VERSION);
    s = open_ok(f, 0, 1);
    store_stats(s, &st);
    assert_int_equal(st.upgraded_from, 0);
    store_close(s);
}

static void
test_refuses_corrupt(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);
    char key[16], value[1024];

    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    assert_int_equal(store_begin(s), 0);
    for (int i = 0; i < 300; i++) {
        int applied;
        snprintf(key, sizeof(key), "key%04d", i);
        struct store_entry e = entry(key, 1, 1, "w", 0, value);
        assert_int_equal(store_apply(s, &e, &applied), 0);
    }
    assert_int_equal(store_commit(s, 300), 0);
    store_close(s);     /* checkpoints: the data is in the main file */

    /* Scribble over a b-tree page in the middle of the file. */
    char junk[2048];
    memset(junk, 0xa5, sizeof(junk));
    write_file(f->path, junk, sizeof(junk), 6L * STORE_PAGE_SIZE);
    assert_int_equal(open_status(f, 0, 1), STORE_E_CORRUPT);
    assert_non_null(strstr(f->err, "quick_check"));
}

/* rounds transactions of per writes of value, to keys "<prefix>NNN" in
 * turn over keyspace of them; round t writes counter t + 1. */
static void
write_rounds(struct store *s, const char *prefix, int rounds, int per,
             int keyspace, const char *value, useconds_t pause)
{
    char key[16];
    int applied;

    for (int t = 0; t < rounds; t++) {
        assert_int_equal(store_begin(s), 0);
        for (int i = 0; i < per; i++) {
            snprintf(key, sizeof(key), "%s%03d", prefix,
                     (t * per + i) % keyspace);
            struct store_entry e = entry(key, 1, (uint64_t)t + 1, "w", 0,
                                         value);
            assert_int_equal(store_apply(s, &e, &applied), 0);
        }
        assert_int_equal(store_commit(s, (uint64_t)per), 0);
        if (pause > 0)
            usleep(pause);
    }
}

/* key holds counter and value (values too long for held()). */
static void
assert_holds(struct store *s, const char *key, uint64_t counter,
             const char *value)
{
    struct store_reader *r = store_reader_get(s);
    struct store_item it;
    assert_int_equal(store_get(r, key, strlen(key), &it), 1);
    assert_int_equal(it.e.stamp.counter, counter);
    assert_int_equal(it.e.value_len, strlen(value));
    assert_memory_equal(it.e.value, value, strlen(value));
    store_item_free(&it);
    store_reader_put(s, r);
}

/* Back-to-back commits, as on a saturated node: the WAL still starts
 * over every cycle instead of growing until the writer is forced to
 * checkpoint (before: several MiB here, every checkpoint sorting it). */
static void
test_wal_starts_over(void **state)
{
    struct fixture *f = *state;
    struct store_config cfg = { f->path, 0, 1, 1, 64 * 1024 };
    struct store *s = NULL;
    char value[1024], wal[sizeof(f->path) + 8];
    struct store_stats st;
    struct stat sb;

    assert_int_equal(store_open(&cfg, &s, f->err, sizeof(f->err)), STORE_OK);
    memset(value, 'w', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    write_rounds(s, "w", 600, 4, 200, value, 0);
    store_stats(s, &st);
    assert_true(st.wal_restarts >= 10);     /* 2,400 frames, 17 a cycle */
    /* The file keeps the size of the WAL at its largest. */
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(stat(wal, &sb), 0);
    assert_true(sb.st_size < 1024 * 1024);
    store_close(s);

    s = open_ok(f, 0, 1);
    assert_holds(s, "w199", 600, value);
    store_close(s);
}

/* A small checkpoint size: the background checkpointer runs, and the data
 * it copied into the main file reads back after a reopen. */
static void
test_background_checkpoints(void **state)
{
    struct fixture *f = *state;
    struct store_config cfg = { f->path, 0, 1, 1, 64 * 1024 };
    struct store *s = NULL;
    struct store_stats st;
    char value[1024];

    assert_int_equal(store_open(&cfg, &s, f->err, sizeof(f->err)), STORE_OK);
    memset(value, 'c', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    write_rounds(s, "ck", 40, 10, 400, value, 2000);
    for (int i = 0; i < 200; i++) {
        store_stats(s, &st);
        if (st.checkpoints > 0)
            break;
        usleep(10000);
    }
    assert_true(st.checkpoints > 0);
    store_close(s);

    s = open_ok(f, 0, 1);
    store_stats(s, &st);
    assert_int_equal(st.entries, 400);
    assert_holds(s, "ck399", 40, value);
    store_close(s);
}

struct listing {
    char keys[64][16];
    int tomb[64];
    size_t n;
};

static int
collect(void *arg, const struct store_entry *e)
{
    struct listing *l = arg;
    assert_true(l->n < 64);
    snprintf(l->keys[l->n], sizeof(l->keys[0]), "%.*s", (int)e->key_len,
             e->key);
    l->tomb[l->n] = e->tombstone;
    assert_null(e->value);
    l->n++;
    return 0;
}

/* Page through a whole query; returns entries and pages. */
static size_t
list_all(struct store_reader *r, struct store_list_query q,
         struct listing *l, int *pages)
{
    uint8_t *next = NULL;
    size_t next_len;
    *pages = 0;
    l->n = 0;
    for (;;) {
        long n = store_list(r, &q, collect, l, &next, &next_len);
        assert_true(n >= 0);
        (*pages)++;
        assert_true(*pages < 100);
        if (next == NULL)
            break;
        static uint8_t start[64];
        memcpy(start, next, next_len);
        free(next);
        q.start = start;
        q.start_len = next_len;
    }
    return l->n;
}

static void
test_listing(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_ok(f, 0, 1);
    char key[16];
    int applied;

    /* key00..key39; every fifth a tombstone */
    assert_int_equal(store_begin(s), 0);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "key%02d", i);
        struct store_entry e = entry(key, 2, (uint64_t)i + 1, "w", 0,
                                     i % 5 == 0 ? NULL : "v");
        assert_int_equal(store_apply(s, &e, &applied), 0);
    }
    assert_int_equal(store_commit(s, 40), 0);

    struct store_reader *r = store_reader_get(s);
    struct listing l;
    uint8_t *next;
    size_t next_len;

    /* [key10, key20), 4 a page, tombstones included */
    struct store_list_query q = {
        .start = (const uint8_t *)"key10", .start_len = 5,
        .end = (const uint8_t *)"key20", .end_len = 5,
        .any_hash = 1, .include_tombstones = 1, .limit = 4,
    };
    l.n = 0;
    assert_int_equal(store_list(r, &q, collect, &l, &next, &next_len), 4);
    assert_string_equal(l.keys[0], "key10");
    assert_int_equal(l.tomb[0], 1);
    assert_string_equal(l.keys[3], "key13");
    assert_non_null(next);
    assert_int_equal(next_len, 5);
    assert_memory_equal(next, "key14", 5);
    free(next);
    int pages;
    assert_int_equal(list_all(r, q, &l, &pages), 10);
    assert_int_equal(pages, 3);
    assert_string_equal(l.keys[9], "key19");

    /* Without tombstones, to the end of the table. */
    q.end_len = 0;
    q.include_tombstones = 0;
    assert_int_equal(list_all(r, q, &l, &pages), 24);  /* 30 keys - 6 */
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.tomb[i], 0);

    /* A hash range (and its wrapped complement) partitions the keys. */
    uint64_t mid = UINT64_MAX / 3;
    int expect_low = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "key%02d", i);
        if (ring_key_hash(key, strlen(key)) <= mid)
            expect_low++;
    }
    assert_true(expect_low > 0 && expect_low < 40);
    struct store_list_query hq = {
        .start = (const uint8_t *)"", .any_hash = 0, .hash_start = 0,
        .hash_end = mid, .include_tombstones = 1, .limit = 3,
    };
    assert_int_equal(list_all(r, hq, &l, &pages), (size_t)expect_low);
    for (size_t i = 0; i < l.n; i++)
        assert_true(ring_key_hash(l.keys[i], strlen(l.keys[i])) <= mid);
    for (size_t i = 1; i < l.n; i++)
        assert_true(strcmp(l.keys[i - 1], l.keys[i]) < 0);
    hq.hash_start = mid + 1;
    hq.hash_end = 0;        /* wraps: [mid+1, 2^64) and [0, 0] */
    size_t high = list_all(r, hq, &l, &pages);
    size_t zero = 0;
    for (size_t i = 0; i < l.n; i++)
        zero += ring_key_hash(l.keys[i], strlen(l.keys[i])) == 0;
    assert_int_equal(high - zero, 40 - (size_t)expect_low);

    /* A scan budget ends a page early but paging still sees every key. */
    struct store_list_query bq = {
        .start = (const uint8_t *)"", .any_hash = 0, .hash_start = 0,
        .hash_end = mid, .include_tombstones = 1, .limit = 1000,
        .scan_budget = 7,
    };
    l.n = 0;
    long n = store_list(r, &bq, collect, &l, &next, &next_len);
    assert_true(n >= 0 && n <= 7);
    assert_non_null(next);
    assert_memory_equal(next, "key07", 5);
    free(next);
    assert_int_equal(list_all(r, bq, &l, &pages), (size_t)expect_low);
    assert_int_equal(pages, 6);

    store_reader_put(s, r);
    store_close(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apply_if_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clock_same_transaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_epoch_bumps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_foreign_databases, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refuses_corrupt, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_format_1, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_starts_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_background_checkpoints, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

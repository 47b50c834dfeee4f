/*
 * powerloss.c - LD_PRELOAD shim that lets the fault suite lose, at a
 * crash, every write that was not yet fsynced: a power-loss model.
 *
 * A process crash loses nothing the kernel has accepted; a power loss
 * loses what was not fsynced.  rzkv acknowledges a write only after its
 * group commit is fsynced, so after a power loss every acknowledged write
 * must still be there.  To test that on a machine that keeps its power,
 * this shim keeps an undo log beside each data file it watches:
 *
 *   before pwrite(64)/ftruncate(64) on a watched file, the bytes about to
 *   be overwritten (and the file size) are appended to FILE.plundo;
 *   fsync/fdatasync of the file empties FILE.plundo (all of it durable).
 *
 * After kill -9 of every process of a node, `powerloss --revert DIR`
 * (the same source built as a program) applies each undo log backwards,
 * which leaves every data file as it was at its last fsync, and removes
 * SQLite's -shm files (shared memory, rebuilt on open).
 *
 * Watched files: paths under $RZKV_POWERLOSS_DIR ending in ".db" or
 * ".db-wal".  Nothing else is touched, so the shim may be preloaded into
 * every process of a node (rzkvd and its workers).
 *
 * A failing disk: while the file $RZKV_POWERLOSS_FAIL_SYNC exists, fsync
 * and fdatasync of a watched file fail with EIO and make nothing durable
 * (t/integ/sync_failure.sh).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FDS     1024
#define UNDO_SUFFIX ".plundo"

/* One undo record, followed by len old bytes. */
struct undo_rec {
    uint64_t offset;
    uint64_t len;           /* bytes saved (those that existed) */
    uint64_t old_size;      /* file size before the change */
};

static int
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

#ifndef POWERLOSS_PROGRAM

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static signed char watched[MAX_FDS];    /* 0 unknown, 1 yes, -1 no */
static int undo_fd[MAX_FDS];

__attribute__((constructor)) static void
init(void)
{
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
}

/* Is fd a watched data file?  Opens its undo log the first time.  With
 * lock held. */
static int
watch(int fd)
{
    if (fd < 0 || fd >= MAX_FDS)
        return 0;
    if (watched[fd] != 0)
        return watched[fd] > 0;
    watched[fd] = -1;
    const char *root = getenv("RZKV_POWERLOSS_DIR");
    char link[64], path[PATH_MAX], undo[PATH_MAX + 16];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (root == NULL || root[0] == '\0' || n <= 0)
        return 0;
    path[n] = '\0';
    if (strncmp(path, root, strlen(root)) != 0 ||
        !(ends_with(path, ".db") || ends_with(path, ".db-wal")))
        return 0;
    snprintf(undo, sizeof(undo), "%s%s", path, UNDO_SUFFIX);
    int u = open(undo, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (u < 0)
        return 0;
    undo_fd[fd] = u;
    watched[fd] = 1;
    return 1;
}

static void
write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            abort();        /* an undo log we cannot keep: stop loudly */
        p += w;
        len -= (size_t)w;
    }
}

/* Save what [offset, offset+len) holds now, and the size, before a
 * change.  With lock held. */
static void
save_old(int fd, uint64_t offset, uint64_t len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        abort();
    uint64_t size = (uint64_t)st.st_size;
    uint64_t have = offset >= size ? 0
        : (offset + len > size ? size - offset : len);
    char *old = malloc(have ? have : 1);
    if (old == NULL)
        abort();
    for (uint64_t got = 0; got < have;) {
        ssize_t r = pread(fd, old + got, have - got, (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            abort();
        got += (uint64_t)r;
    }
    struct undo_rec rec = { offset, have, size };
    write_all(undo_fd[fd], &rec, sizeof(rec));
    write_all(undo_fd[fd], old, have);
    free(old);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
    pthread_mutex_lock(&lock);
    if (watch(fd))
        save_old(fd, (uint64_t)off, n);
    ssize_t r = real_pwrite(fd, buf, n, off);
    pthread_mutex_unlock(&lock);
    return r;
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    pthread_mutex_lock(&lock);
    if (watch(fd))
        save_old(fd, (uint64_t)off, n);
    ssize_t r = real_pwrite64(fd, buf, n, off);
    pthread_mutex_unlock(&lock);
    return r;
}

static void
save_tail(int fd, uint64_t len)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > len)
        save_old(fd, len, (uint64_t)st.st_size - len);
    else
        save_old(fd, len, 0);
}

int
ftruncate(int fd, off_t len)
{
    pthread_mutex_lock(&lock);
    if (watch(fd))
        save_tail(fd, (uint64_t)len);
    int r = real_ftruncate(fd, len);
    pthread_mutex_unlock(&lock);
    return r;
}

int
ftruncate64(int fd, off64_t len)
{
    pthread_mutex_lock(&lock);
    if (watch(fd))
        save_tail(fd, (uint64_t)len);
    int r = real_ftruncate64(fd, len);
    pthread_mutex_unlock(&lock);
    return r;
}

/* Everything written so far is durable: forget how to undo it. */
static void
synced(int fd)
{
    pthread_mutex_lock(&lock);
    if (watch(fd) && real_ftruncate(undo_fd[fd], 0) != 0)
        abort();
    pthread_mutex_unlock(&lock);
}

/* Should this sync fail, as a failing disk's would? */
static int
sync_fails(int fd)
{
    const char *trigger = getenv("RZKV_POWERLOSS_FAIL_SYNC");
    if (trigger == NULL || trigger[0] == '\0' || access(trigger, F_OK) != 0)
        return 0;
    pthread_mutex_lock(&lock);
    int w = watch(fd);
    pthread_mutex_unlock(&lock);
    if (w)
        errno = EIO;
    return w;
}

int
fsync(int fd)
{
    if (sync_fails(fd))
        return -1;
    int r = real_fsync(fd);
    if (r == 0)
        synced(fd);
    return r;
}

int
fdatasync(int fd)
{
    if (sync_fails(fd))
        return -1;
    int r = real_fdatasync(fd);
    if (r == 0)
        synced(fd);
    return r;
}

int
close(int fd)
{
    pthread_mutex_lock(&lock);
    if (fd >= 0 && fd < MAX_FDS) {
        if (watched[fd] > 0)
            real_close(undo_fd[fd]);
        watched[fd] = 0;
    }
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

#else /* POWERLOSS_PROGRAM: powerloss --revert DIR */

static int reverted, records;

/* Apply one undo log backwards to its data file. */
static int
revert_file(const char *undo_path)
{
    char data_path[PATH_MAX];
    size_t n = strlen(undo_path) - strlen(UNDO_SUFFIX);
    snprintf(data_path, sizeof(data_path), "%.*s", (int)n, undo_path);
    FILE *u = fopen(undo_path, "rb");
    if (u == NULL)
        return -1;
    /* Read the records, then apply them last first. */
    struct { struct undo_rec rec; char *old; } *recs = NULL;
    size_t count = 0, cap = 0;
    struct undo_rec rec;
    while (fread(&rec, sizeof(rec), 1, u) == 1) {
        char *old = malloc(rec.len ? rec.len : 1);
        if (old == NULL || fread(old, 1, rec.len, u) != rec.len) {
            free(old);
            break;          /* a torn last record: its write never ran */
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            recs = realloc(recs, cap * sizeof(*recs));
        }
        recs[count].rec = rec;
        recs[count].old = old;
        count++;
    }
    fclose(u);
    int fd = open(data_path, O_WRONLY);
    if (fd < 0 && count > 0) {
        fprintf(stderr, "powerloss: %s: %s\n", data_path, strerror(errno));
        return -1;
    }
    for (size_t i = count; i-- > 0;) {
        if (recs[i].rec.len > 0 &&
            pwrite(fd, recs[i].old, recs[i].rec.len,
                   (off_t)recs[i].rec.offset) != (ssize_t)recs[i].rec.len)
            return -1;
        if (ftruncate(fd, (off_t)recs[i].rec.old_size) != 0)
            return -1;
        free(recs[i].old);
    }
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(recs);
    unlink(undo_path);
    records += (int)count;
    if (count > 0)
        reverted++;
    return 0;
}

static int
walk(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc |= walk(path);
        else if (ends_with(path, UNDO_SUFFIX))
            rc |= revert_file(path);
        else if (ends_with(path, ".db-shm"))
            unlink(path);
    }
    closedir(d);
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--revert") != 0) {
        fprintf(stderr, "usage: powerloss --revert DATA_DIR\n");
        return 64;
    }
    int rc = walk(argv[2]);
    printf("powerloss: %d files reverted to their last fsync "
           "(%d unsynced writes lost)\n", reverted, records);
    return rc == 0 ? 0 : 1;
}

#endif

/*
 * sup_setup.c - what the supervisor does once, before its event loop.
 *
 * NAME
 *	sup_setup - check the configuration, lock the data directory,
 *	prepare the run directory, open the log, detach
 * DESCRIPTION
 *	These steps run in the order sup_main() calls them, while rzkvd still
 *	has the terminal (or rzkvctl's pipe) on stderr, so their errors are
 *	seen: a configuration error exits 78 (RZKV_EXIT_CONFIG), an
 *	environment error 1.
 *
 *	The data directory lock is a flock(2) on DATA_DIR/RZKV_LOCKFILE.  Its
 *	descriptor is deliberately inherited by the workers (no close-on-exec):
 *	the lock stays held until the last process of the node is gone, so a
 *	new rzkvd can never open the SQLite files while a worker of the old
 *	one still has them.  flock locks, unlike fcntl locks, survive the
 *	forks of sup_daemonize().
 *
 *	The files a previous rzkvd may have left in the run directory (it was
 *	killed) are removed here: holding the lock proves they are stale.
 * SEE ALSO
 *	sup_main.c, common/contract.h
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

/* Load and validate both files; print every error (rzkvd -t). */
int
sup_check_config(const struct sup_options *opts)
{
    char err[CONF_ERR_MAX];
    struct node_conf *node = NULL;
    struct cluster_conf *cluster = NULL;
    int bad = 0;

    if (conf_load_node(opts->node_path, &node, err, sizeof(err)) != 0) {
        fprintf(stderr, "rzkvd: %s\n", err);
        bad = 1;
    }
    if (conf_load_cluster(opts->cluster_path, &cluster, err,
                          sizeof(err)) != 0) {
        fprintf(stderr, "rzkvd: %s\n", err);
        bad = 1;
    }
    if (!bad && sup_cross_check(node, cluster, err, sizeof(err)) != 0) {
        fprintf(stderr, "rzkvd: %s\n", err);
        bad = 1;
    }
    if (!bad)
        printf("configuration OK\n");
    if (node != NULL)
        conf_node_free(node);
    if (cluster != NULL)
        conf_cluster_free(cluster);
    return bad ? RZKV_EXIT_CONFIG : RZKV_EXIT_OK;
}

static _Noreturn void
die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Before detaching, errors go to stderr as "rzkvd: ..." lines. */
static _Noreturn void
die(int status, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "rzkvd: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(status);
}

/*
 * Read both files once and parse what was read, so what the workers get
 * (the active copy) is byte for byte what was validated.
 */
void
sup_free_config(struct sup *s)
{
    conf_node_free(s->node);
    conf_cluster_free(s->cluster);
    free(s->node_text);
    free(s->cluster_text);
    s->node = NULL;
    s->cluster = NULL;
    s->node_text = s->cluster_text = NULL;
}

void
sup_load_config(struct sup *s)
{
    const struct sup_options *opts = s->opts;
    char err[CONF_ERR_MAX];
    ssize_t n;

    n = readlink("/proc/self/exe", s->self_exe, sizeof(s->self_exe) - 1);
    if (n <= 0 || (size_t)n >= sizeof(s->self_exe) - 1)
        die(RZKV_EXIT_FATAL, "cannot read /proc/self/exe: %s",
            strerror(errno));
    s->self_exe[n] = '\0';
    if (realpath(opts->node_path, s->node_path) == NULL)
        die(RZKV_EXIT_CONFIG, "%s: %s", opts->node_path, strerror(errno));

    s->node_text = sup_read_file(opts->node_path, &s->node_text_len,
                                 err, sizeof(err));
    if (s->node_text == NULL)
        die(RZKV_EXIT_CONFIG, "%s", err);
    s->cluster_text = sup_read_file(opts->cluster_path, &s->cluster_text_len,
                                    err, sizeof(err));
    if (s->cluster_text == NULL)
        die(RZKV_EXIT_CONFIG, "%s", err);
    if (conf_parse_node(opts->node_path, s->node_text, s->node_text_len,
                        &s->node, err, sizeof(err)) != 0)
        die(RZKV_EXIT_CONFIG, "%s", err);
    if (conf_parse_cluster(opts->cluster_path, s->cluster_text,
                           s->cluster_text_len, &s->cluster,
                           err, sizeof(err)) != 0)
        die(RZKV_EXIT_CONFIG, "%s", err);
    if (sup_cross_check(s->node, s->cluster, err, sizeof(err)) != 0)
        die(RZKV_EXIT_CONFIG, "%s", err);
    if (opts->verbose)
        s->node->log_level = LOG_LEVEL_DEBUG;
    log_set_level((enum log_level)s->node->log_level);
}

/* mkdir -p with mode for every directory it creates. */
static int
mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = saved;
        if (saved == '\0')
            break;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static void
write_pid(int fd)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n)
        log_warn("cannot write the pid into the lock file");
}

void
sup_lock_data_dir(struct sup *s)
{
    const char *dir = s->node->data_dir;
    char path[PATH_MAX];

    if (mkdir_p(dir, 0700) != 0)
        die(RZKV_EXIT_FATAL, "cannot create data directory %s: %s", dir,
            strerror(errno));
    snprintf(path, sizeof(path), "%s/%s", dir, RZKV_LOCKFILE);
    /* No O_CLOEXEC: the workers inherit the lock (see the top).  Moved
     * above the low descriptors, so that the dup2() onto RZKV_STATUS_FD
     * in a new worker can't be what closes it. */
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        die(RZKV_EXIT_FATAL, "cannot open %s: %s", path, strerror(errno));
    s->lock_fd = fcntl(fd, F_DUPFD, 10);
    if (s->lock_fd < 0)
        die(RZKV_EXIT_FATAL, "cannot move %s: %s", path, strerror(errno));
    close(fd);
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            die(RZKV_EXIT_FATAL, "cannot lock %s: %s", path,
                strerror(errno));
        char line[32] = "";
        ssize_t n = pread(s->lock_fd, line, sizeof(line) - 1, 0);
        long pid = n > 0 ? strtol(line, NULL, 10) : 0;
        if (pid > 0)
            die(RZKV_EXIT_FATAL, "data directory %s is in use by pid %ld",
                dir, pid);
        die(RZKV_EXIT_FATAL, "data directory %s is in use by another rzkvd",
            dir);
    }
    write_pid(s->lock_fd);
}

/* Is something answering on this Unix socket? */
static int
socket_alive(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path))
        return 0;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int alive = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    close(fd);
    return alive;
}

static void
remove_ipc_files(struct sup *s)
{
    char url[PATH_MAX + 16];
    for (int i = 0; i < s->node->storage_workers; i++) {
        snprintf(url, sizeof(url), RZKV_STORAGE_IPC_FMT, s->node->run_dir, i);
        unlink(url + strlen("ipc://"));
    }
}

void
sup_prepare_run_dir(struct sup *s)
{
    const char *dir = s->node->run_dir;

    if (mkdir_p(dir, 0700) != 0)
        die(RZKV_EXIT_FATAL, "cannot create run directory %s: %s", dir,
            strerror(errno));
    snprintf(s->control_path, sizeof(s->control_path), "%s/%s", dir,
             RZKV_CONTROL_SOCK);
    snprintf(s->pidfile, sizeof(s->pidfile), "%s/%s", dir, RZKV_PIDFILE);
    snprintf(s->active_cluster, sizeof(s->active_cluster), "%s/%s", dir,
             RZKV_ACTIVE_CLUSTER);
    /* conf_load_node() refused a run_dir too long for the sockets under
     * it (node_check_run_dir in common/conf.c). */
    /* Another node with its own data directory but this run directory
     * would lose its sockets below: refuse instead. */
    if (socket_alive(s->control_path))
        die(RZKV_EXIT_FATAL, "run directory %s is in use by another "
            "running rzkvd", dir);
    unlink(s->control_path);
    unlink(s->pidfile);
    remove_ipc_files(s);
    if (sup_write_active_cluster(s, s->cluster_text,
                                 s->cluster_text_len) != 0)
        die(RZKV_EXIT_FATAL, "cannot write %s", s->active_cluster);
}

/*
 * Write CLUSTER.yml's validated bytes to the active copy the workers read:
 * temp file, fsync, rename, so a worker (re)starting at any moment reads
 * either the old file or the new one, never half of one.
 */
int
sup_write_active_cluster(struct sup *s, const char *text, size_t len)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->active_cluster);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_warn("cannot create %s", tmp);
        return -1;
    }
    for (size_t off = 0; off < len; ) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_warn("cannot write %s", tmp);
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        log_warn("cannot write %s", tmp);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, s->active_cluster) != 0) {
        log_warn("cannot rename %s to %s", tmp, s->active_cluster);
        unlink(tmp);
        return -1;
    }
    return 0;
}

/*
 * Logging: with -f, stderr.  With a log file, the file is opened now (so
 * an unwritable path is reported) and later becomes our stderr, which the
 * workers inherit: every line of the node, and anything a library prints,
 * ends up in one file.  "syslog", or no file for a daemon, means syslog,
 * and the workers are told to use it too.
 */
void
sup_open_log(struct sup *s)
{
    const char *file = s->node->log_file;
    if (s->opts->foreground)
        return;
    if (file[0] == '\0' || strcmp(file, "syslog") == 0) {
        s->log_syslog = 1;
        return;
    }
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        die(RZKV_EXIT_FATAL, "cannot open log file %s: %s", file,
            strerror(errno));
    if (dup2(fd, STDERR_FILENO) < 0)
        die(RZKV_EXIT_FATAL, "dup2: %s", strerror(errno));
    close(fd);
}

/*
 * Detach: fork, setsid, fork again (never a session leader, so never a
 * controlling terminal).  The first process waits on a pipe until the
 * daemon has opened its control socket (sup_announce), so whoever started
 * rzkvd can talk to it as soon as rzkvd returns, and a daemon that dies on
 * the way turns into a non-zero exit.  This runs before any thread exists:
 * libevent's base and nng come later.
 */
void
sup_daemonize(struct sup *s)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        die(RZKV_EXIT_FATAL, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die(RZKV_EXIT_FATAL, "fork: %s", strerror(errno));
    if (pid > 0) {
        char byte;
        ssize_t n;
        close(p[1]);
        do
            n = read(p[0], &byte, 1);
        while (n < 0 && errno == EINTR);
        waitpid(pid, NULL, 0);      /* the intermediate process */
        if (n == 1)
            _exit(RZKV_EXIT_OK);
        fprintf(stderr, "rzkvd: the daemon exited while starting; see %s\n",
                s->log_syslog ? "syslog" : s->node->log_file);
        _exit(RZKV_EXIT_FATAL);
    }
    close(p[0]);
    if (setsid() < 0)
        fatal("setsid");
    pid = fork();
    if (pid < 0)
        fatal("fork");
    if (pid > 0)
        _exit(RZKV_EXIT_OK);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        close(null);
    }
    if (s->log_syslog)
        log_open("syslog");
    s->notify_fd = p[1];
    write_pid(s->lock_fd);
}

/* The node is reachable: pidfile, then tell the starting parent. */
void
sup_announce(struct sup *s)
{
    char tmp[PATH_MAX + 8], line[32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->pidfile);
    int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n ||
        rename(tmp, s->pidfile) != 0)
        log_warn("cannot write pidfile %s", s->pidfile);
    if (fd >= 0)
        close(fd);
    if (s->notify_fd >= 0) {
        if (write(s->notify_fd, "1", 1) != 1)
            log_warn("cannot notify the starting process");
        close(s->notify_fd);
        s->notify_fd = -1;
        /* Nothing reads our original stderr any more. */
        if (s->log_syslog) {
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (null >= 0) {
                dup2(null, STDERR_FILENO);
                close(null);
            }
        }
    }
}

/* After an orderly stop: leave nothing behind but data and the lock file. */
void
sup_cleanup_files(struct sup *s)
{
    remove_ipc_files(s);
    unlink(s->control_path);
    unlink(s->active_cluster);
    unlink(s->pidfile);
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
        s->lock_fd = -1;
    }
}

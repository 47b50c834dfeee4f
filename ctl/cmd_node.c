/*
 * cmd_node.c - rzkvctl start, stop, status, reload, repair: the node
 * lifecycle.
 *
 * Every command works on one node (NODE.yml [CLUSTER.yml]) or on every
 * node of the local cluster (--local [--dir DIR], see ctl_local.c), and
 * talks to each node's supervisor over its control socket
 * (RUN_DIR/control.sock, supervisor/sup_control.c): one command line in,
 * one reply out.  A node whose socket does not answer is "down".
 *
 * start runs rzkvd, which checks its configuration, detaches and returns
 * once its control socket is up; its output until then (configuration
 * errors, "data directory in use") is captured and shown.  start then
 * asks the node's status until it serves, and when it can't, says why:
 * the failed worker's reason and the end of the node's log.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "contract.h"
#include "ctl.h"
#include "ctl_json.h"

#define START_DEADLINE_MS   20000   /* until every node serves */
#define STOP_DEADLINE_MS    30000   /* until every process of a node ended */
#define CONTROL_TIMEOUT_MS  5000
#define POLL_MS             100
#define LOG_TAIL_LINES      15

struct node_opts {
    int local;
    const char *dir;
    int count;                  /* start --local N */
    int base_port;
    int json;
    int verbose;                /* status -v: every worker */
};

/* ---- time and processes ------------------------------------------------ */

static long long
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* A process that exists and is not a zombie waiting for its reaper. */
static int
pid_alive(long pid)
{
    char path[64], buf[256];
    if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return !(paren != NULL && paren[1] == ' ' && paren[2] == 'Z');
}

/*
 * Has every process of the node let go of its data directory?  The
 * supervisor's workers inherit its lock (supervisor/sup_setup.c), and a
 * process whose main thread is a zombie may still have threads closing
 * its files, so the lock, not the pids, says when the node is gone.
 */
static int
data_dir_free(const struct node_conf *nc)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", nc->data_dir, RZKV_LOCKFILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    int free_now = flock(fd, LOCK_SH | LOCK_NB) == 0;
    close(fd);      /* drops our shared lock at once */
    return free_now;
}

static void
format_duration(long long s, char *buf, size_t len)
{
    if (s < 60)
        snprintf(buf, len, "%llds", s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, len, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

/* ---- the control socket ------------------------------------------------ */

enum call_result { CALL_OK = 0, CALL_DOWN, CALL_ERROR };

/* Send one command; the reply (NUL-terminated, malloc'd) in *reply. */
static enum call_result
control_call(const struct node_conf *nc, const char *cmd, char **reply)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s",
                     nc->run_dir, RZKV_CONTROL_SOCK);
    *reply = NULL;
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path))
        return CALL_DOWN;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return CALL_ERROR;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        int e = errno;
        close(fd);
        return e == ENOENT || e == ECONNREFUSED ? CALL_DOWN : CALL_ERROR;
    }
    char line[64];
    int len = snprintf(line, sizeof(line), "%s\n", cmd);
    if (send(fd, line, (size_t)len, MSG_NOSIGNAL) != len) {
        close(fd);
        return CALL_ERROR;
    }
    size_t cap = 4096, used = 0;
    char *buf = malloc(cap);
    long long deadline = now_ms() + CONTROL_TIMEOUT_MS;
    while (buf != NULL) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        long long left = deadline - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        if (used + 1 == cap) {
            char *bigger = cap < (1u << 22) ? realloc(buf, cap * 2) : NULL;
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + used, cap - used - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            buf[used] = '\0';
            *reply = buf;
            return CALL_OK;
        }
        used += (size_t)r;
    }
    close(fd);
    free(buf);
    return CALL_ERROR;
}

/* The node's status object, or NULL if it is down (or says nonsense). */
static struct cjson *
node_status(const struct node_conf *nc, char **raw)
{
    char *reply;
    *raw = NULL;
    if (control_call(nc, "status", &reply) != CALL_OK)
        return NULL;
    struct cjson *st = cjson_parse(reply);
    if (st == NULL || st->type != CJSON_OBJECT) {
        cjson_free(st);
        free(reply);
        return NULL;
    }
    reply[strcspn(reply, "\n")] = '\0';
    *raw = reply;
    return st;
}

/* ---- command line -------------------------------------------------------- */

static int
usage_help(const char *cmd)
{
    if (strcmp(cmd, "start") == 0)
        printf("usage: rzkvctl start NODE.yml CLUSTER.yml\n"
               "       rzkvctl start --local [N] [--dir DIR] "
               "[--base-port PORT]\n"
               "Start rzkvd for a node in the background and return once "
               "it serves.\n"
               "With --local, start an N-node cluster on 127.0.0.1 "
               "(default %d nodes,\n"
               "ports PORT.. default %d, metrics PORT+1000..), everything "
               "under DIR\n"
               "(default %s); an existing DIR is started again as it is, "
               "with its\n"
               "data and edits, and only the nodes that are not running "
               "are started.\n", CTL_LOCAL_NODES, CTL_LOCAL_BASE_PORT,
               CTL_LOCAL_DIR);
    else if (strcmp(cmd, "stop") == 0)
        printf("usage: rzkvctl stop NODE.yml [CLUSTER.yml]\n"
               "       rzkvctl stop --local [--dir DIR]\n"
               "Stop the node (or every node of the local cluster) and "
               "wait until it\nhas exited.\n");
    else if (strcmp(cmd, "status") == 0)
        printf("usage: rzkvctl status [-v] [--json] NODE.yml "
               "[CLUSTER.yml]\n"
               "       rzkvctl status [-v] [--json] --local [--dir DIR]\n"
               "Show one line per node: its state, address, load (bytes on "
               "disk), keys,\nuptime and pid, and why it does not serve "
               "if it does not; -v adds a line\nper worker.  Exits 0 if "
               "every node serves, %d if some node does not.\n",
               CTL_EXIT_UNAVAILABLE);
    else if (strcmp(cmd, "reload") == 0)
        printf("usage: rzkvctl reload NODE.yml [CLUSTER.yml]\n"
               "       rzkvctl reload --local [--dir DIR]\n"
               "Make the node re-read its cluster file, as SIGHUP does; an "
               "invalid\nfile is refused and the node keeps the old one.\n");
    else
        printf("usage: rzkvctl repair NODE.yml [CLUSTER.yml]\n"
               "       rzkvctl repair --local [--dir DIR]\n"
               "Start an anti-entropy pass on the node now instead of at "
               "its next\ninterval: it compares the node's keys with its "
               "peers' and copies\nwhat a replica lacks.  Returns at once; "
               "the node's log says when\nthe pass ends and what it "
               "copied.\n");
    return CTL_EXIT_OK;
}

static int
parse_int_arg(const char *cmd, const char *what, const char *s, int min,
              int max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        ctl_usage_error(cmd, "%s must be a number in %d..%d, got \"%s\"",
                        what, min, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/*
 * Options and operands shared by the node commands; on success, the nodes
 * to work on.  Returns CTL_EXIT_OK, or the status to exit with (-1 for
 * --help, already printed).
 */
static int
node_args(const char *cmd, int argc, char **argv, struct node_opts *o,
          struct ctl_node **nodes, size_t *n)
{
    static const struct option longopts[] = {
        { "local", no_argument, NULL, 'L' },
        { "dir", required_argument, NULL, 'd' },
        { "base-port", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, 'j' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int start = strcmp(cmd, "start") == 0, ch;
    char err[CONF_ERR_MAX];

    *o = (struct node_opts){ 0, CTL_LOCAL_DIR, CTL_LOCAL_NODES,
                             CTL_LOCAL_BASE_PORT, 0, 0 };
    optind = 1;
    while ((ch = getopt_long(argc, argv, "hjv", longopts, NULL)) != -1) {
        switch (ch) {
        case 'L': o->local = 1; break;
        case 'd': o->dir = optarg; break;
        case 'j': o->json = 1; break;
        case 'v':
            if (strcmp(cmd, "status") != 0) {
                ctl_usage_error(cmd, "-v is for status");
                return CTL_EXIT_USAGE;
            }
            o->verbose = 1;
            break;
        case 'p':
            if (!start) {
                ctl_usage_error(cmd, "--base-port is for start --local");
                return CTL_EXIT_USAGE;
            }
            if (parse_int_arg(cmd, "--base-port", optarg, 1, 64000,
                              &o->base_port) != 0)
                return CTL_EXIT_USAGE;
            break;
        case 'h':
            usage_help(cmd);
            return -1;
        default:
            ctl_usage_error(cmd, "bad option");
            return CTL_EXIT_USAGE;
        }
    }
    int left = argc - optind;
    if (o->local) {
        if (left > (start ? 1 : 0)) {
            ctl_usage_error(cmd, "--local takes no files");
            return CTL_EXIT_USAGE;
        }
        if (left == 1 && parse_int_arg(cmd, "N", argv[optind], 1, 64,
                                       &o->count) != 0)
            return CTL_EXIT_USAGE;
        if (start && (ctl_local_create(o->dir, o->count, o->base_port, err,
                                       sizeof(err)) < 0)) {
            fprintf(stderr, "rzkvctl %s: %s\n", cmd, err);
            return CTL_EXIT_ERROR;
        }
        if (ctl_local_nodes(o->dir, nodes, n, err, sizeof(err)) != 0) {
            fprintf(stderr, "rzkvctl %s: %s\n", cmd, err);
            if (!start && access(o->dir, F_OK) != 0)
                fprintf(stderr, "rzkvctl %s: no local cluster in %s (start "
                        "one with: rzkvctl start --local --dir %s)\n", cmd,
                        o->dir, o->dir);
            return CTL_EXIT_ERROR;
        }
        return CTL_EXIT_OK;
    }
    if (left < 1 || left > 2 || (start && left != 2)) {
        ctl_usage_error(cmd, start ? "need NODE.yml and CLUSTER.yml, or "
                        "--local" : "need NODE.yml [CLUSTER.yml], or "
                        "--local");
        return CTL_EXIT_USAGE;
    }
    *nodes = calloc(1, sizeof(**nodes));
    if (*nodes == NULL ||
        ctl_node_load(*nodes, argv[optind], left == 2 ? argv[optind + 1]
                                                      : NULL,
                      err, sizeof(err)) != 0) {
        fprintf(stderr, "rzkvctl %s: %s\n", cmd,
                *nodes == NULL ? "out of memory" : err);
        free(*nodes);
        *nodes = NULL;
        return CTL_EXIT_ERROR;
    }
    *n = 1;
    return CTL_EXIT_OK;
}

/* ---- start ---------------------------------------------------------------- */

static int
executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/*
 * rzkvd next to this rzkvctl (a build tree; in a libtool build rzkvctl
 * may run from .libs/), then where make install puts it, then $PATH.
 */
static void
find_rzkvd(char *out, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            size_t dl = strlen(self);
            if (dl >= 6 && strcmp(self + dl - 6, "/.libs") == 0) {
                snprintf(out, len, "%.*s/rzkvd", (int)(dl - 6), self);
                if (executable(out))
                    return;
            }
            snprintf(out, len, "%s/rzkvd", self);
            if (executable(out))
                return;
        }
    }
    snprintf(out, len, "%s/rzkvd", SBINDIR);
    if (executable(out))
        return;
    snprintf(out, len, "rzkvd");
}

/* Print the last lines of the node's log file, if it has one. */
static void
show_log_tail(const struct node_conf *nc)
{
    const char *path = nc->log_file;
    if (path[0] != '/' )
        return;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return;
    char buf[8192];
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    long from = size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1
                                             : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[got] = '\0';
    char *start = buf + got;
    int lines = 0;
    while (start > buf && lines <= LOG_TAIL_LINES)
        if (*--start == '\n' && start[1] != '\0')
            lines++;
    if (*start == '\n')
        start++;
    fprintf(stderr, "  last lines of %s:\n", path);
    for (char *line = strtok(start, "\n"); line != NULL;
         line = strtok(NULL, "\n"))
        fprintf(stderr, "    %s\n", line);
}

/*
 * Run rzkvd for one node and wait until it has detached (its control
 * socket is then up).  Whatever it printed before is captured and, if it
 * failed, shown.  0, or -1 after printing why.
 */
static int
launch(const struct ctl_node *node, const char *rzkvd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        perror("rzkvctl start: pipe");
        return -1;
    }
    char *argv[] = { (char *)rzkvd, node->node_path, node->cluster_path,
                     NULL };
    pid_t pid = fork();
    if (pid < 0) {
        perror("rzkvctl start: fork");
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, STDIN_FILENO);
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        if (strchr(rzkvd, '/') != NULL)
            execv(rzkvd, argv);
        else
            execvp(rzkvd, argv);
        fprintf(stderr, "rzkvctl: cannot run %s: %s\n", rzkvd,
                strerror(errno));
        _exit(127);
    }
    close(p[1]);
    char out[4096];
    size_t used = 0;
    long long deadline = now_ms() + START_DEADLINE_MS;
    for (;;) {
        struct pollfd pfd = { p[0], POLLIN, 0 };
        long long left = deadline - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t r = read(p[0], out + used, sizeof(out) - 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        used += (size_t)r;
        if (used == sizeof(out) - 1)
            used = 0;   /* keep reading; only the end matters */
    }
    out[used] = '\0';
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    fprintf(stderr, "rzkvctl start: node %s could not start:\n",
            node->conf->id);
    fputs(out, stderr);
    if (used == 0 || out[used - 1] != '\n')
        fputc('\n', stderr);
    show_log_tail(node->conf);
    return -1;
}

/* A failed slot's description for the user, or NULL. */
static const struct cjson *
first_failed(const struct cjson *st)
{
    const struct cjson *workers = cjson_get(st, "workers");
    for (const struct cjson *w = workers != NULL ? workers->child : NULL;
         w != NULL; w = w->next)
        if (strcmp(cjson_get_str(w, "state", ""), "failed") == 0)
            return w;
    return NULL;
}

enum wait_result { WAIT_PENDING, WAIT_SERVING, WAIT_FAILED };

/* One look at a starting node: serving, failed (said why), or not yet. */
static enum wait_result
check_started(const struct ctl_node *node, int final)
{
    char *raw;
    struct cjson *st = node_status(node->conf, &raw);
    enum wait_result res = WAIT_PENDING;
    const struct cjson *w;
    const char *id = node->conf->id;

    if (st == NULL) {
        fprintf(stderr, "rzkvctl start: node %s exited while starting\n",
                id);
        res = WAIT_FAILED;
    } else if (strcmp(cjson_get_str(st, "state", ""), "serving") == 0) {
        printf("node %s serving on %s (pid %lld)\n", id,
               node->conf->local_address, cjson_get_int(st, "pid", 0));
        res = WAIT_SERVING;
    } else if ((w = first_failed(st)) != NULL) {
        fprintf(stderr, "rzkvctl start: node %s: %s[%lld] failed: %s (%s)\n"
                "  the node is still running, degraded; stop it with "
                "rzkvctl stop\n", id, cjson_get_str(w, "role", "?"),
                cjson_get_int(w, "instance", -1),
                cjson_get_str(w, "reason", ""),
                cjson_get_str(w, "last_exit", ""));
        res = WAIT_FAILED;
    } else if (final) {
        fprintf(stderr, "rzkvctl start: node %s did not serve within %d s "
                "(state %s)\n", id, START_DEADLINE_MS / 1000,
                cjson_get_str(st, "state", "?"));
        res = WAIT_FAILED;
    }
    if (res == WAIT_FAILED)
        show_log_tail(node->conf);
    cjson_free(st);
    free(raw);
    return res;
}

int
cmd_start(int argc, char **argv)
{
    struct node_opts o;
    struct ctl_node *nodes = NULL;
    size_t n = 0;
    char rzkvd[PATH_MAX];
    int rc = node_args("start", argc, argv, &o, &nodes, &n);
    if (rc != CTL_EXIT_OK)
        return rc < 0 ? CTL_EXIT_OK : rc;

    find_rzkvd(rzkvd, sizeof(rzkvd));
    enum wait_result *state = calloc(n, sizeof(*state));
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        char *raw;
        struct cjson *st = node_status(nodes[i].conf, &raw);
        if (st != NULL) {
            printf("node %s already running (pid %lld, %s)\n",
                   nodes[i].conf->id, cjson_get_int(st, "pid", 0),
                   cjson_get_str(st, "state", "?"));
            state[i] = WAIT_SERVING;
            cjson_free(st);
            free(raw);
        } else if (launch(&nodes[i], rzkvd) != 0) {
            state[i] = WAIT_FAILED;
            failed++;
        }
    }
    long long deadline = now_ms() + START_DEADLINE_MS;
    for (;;) {
        int pending = 0, final = now_ms() >= deadline;
        for (size_t i = 0; i < n; i++) {
            if (state[i] != WAIT_PENDING)
                continue;
            state[i] = check_started(&nodes[i], final);
            if (state[i] == WAIT_FAILED)
                failed++;
            pending += state[i] == WAIT_PENDING;
        }
        if (pending == 0)
            break;
        sleep_ms(POLL_MS);
    }
    free(state);
    ctl_nodes_free(nodes, n);
    return failed > 0 ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}

/* ---- stop ----------------------------------------------------------------- */

/* Every pid of a node from its status: the supervisor's, the workers'. */
static size_t
node_pids(const struct cjson *st, long *pids, size_t max)
{
    size_t n = 0;
    pids[n++] = (long)cjson_get_int(st, "pid", 0);
    const struct cjson *workers = cjson_get(st, "workers");
    for (const struct cjson *w = workers != NULL ? workers->child : NULL;
         w != NULL && n < max; w = w->next)
        if (cjson_get_int(w, "pid", 0) > 0)
            pids[n++] = (long)cjson_get_int(w, "pid", 0);
    return n;
}

#define MAX_NODE_PIDS 160

int
cmd_stop(int argc, char **argv)
{
    struct node_opts o;
    struct ctl_node *nodes = NULL;
    size_t n = 0;
    int rc = node_args("stop", argc, argv, &o, &nodes, &n);
    if (rc != CTL_EXIT_OK)
        return rc < 0 ? CTL_EXIT_OK : rc;

    long (*pids)[MAX_NODE_PIDS] = calloc(n, sizeof(*pids));
    size_t *npids = calloc(n, sizeof(*npids));
    int failed = 0;
    /* Ask every node first, so a local cluster stops in parallel. */
    for (size_t i = 0; i < n; i++) {
        char *raw, *reply;
        struct cjson *st = node_status(nodes[i].conf, &raw);
        if (st == NULL) {
            printf("node %s is not running\n", nodes[i].conf->id);
            continue;
        }
        npids[i] = node_pids(st, pids[i], MAX_NODE_PIDS);
        cjson_free(st);
        free(raw);
        if (control_call(nodes[i].conf, "stop", &reply) == CALL_ERROR) {
            fprintf(stderr, "rzkvctl stop: node %s: no answer to stop\n",
                    nodes[i].conf->id);
            failed++;
            npids[i] = 0;
        }
        free(reply);
    }
    long long deadline = now_ms() + STOP_DEADLINE_MS;
    for (size_t i = 0; i < n; i++) {
        if (npids[i] == 0)
            continue;
        size_t k = 0;
        while (k < npids[i] && now_ms() < deadline) {
            if (pid_alive(pids[i][k]))
                sleep_ms(20);
            else
                k++;
        }
        while (k == npids[i] && !data_dir_free(nodes[i].conf) &&
               now_ms() < deadline)
            sleep_ms(20);
        if (k < npids[i]) {
            fprintf(stderr, "rzkvctl stop: node %s: pid %ld still running "
                    "after %d s\n", nodes[i].conf->id, pids[i][k],
                    STOP_DEADLINE_MS / 1000);
            failed++;
        } else if (!data_dir_free(nodes[i].conf)) {
            fprintf(stderr, "rzkvctl stop: node %s: its data directory is "
                    "still locked after %d s\n", nodes[i].conf->id,
                    STOP_DEADLINE_MS / 1000);
            failed++;
        } else {
            printf("node %s stopped\n", nodes[i].conf->id);
        }
    }
    free(pids);
    free(npids);
    ctl_nodes_free(nodes, n);
    return failed > 0 ? CTL_EXIT_ERROR : CTL_EXIT_OK;
}

/* ---- status --------------------------------------------------------------- */

static void
print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* "96.0 KiB": bytes for people, in powers of 1024. */
static void
format_bytes(long long n, char *buf, size_t len)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
    double v = (double)n;
    int u = -1;

    if (n < 1024) {
        snprintf(buf, len, "%lld B", n);
        return;
    }
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
}

static void
print_worker(const struct cjson *w)
{
    char extra[320] = "", up[32], num[32], name[48];
    size_t off = 0;
    const char *role = cjson_get_str(w, "role", "?");
    const char *state = cjson_get_str(w, "state", "?");
    const char *last = cjson_get_str(w, "last_exit", "");
    const char *reason = cjson_get_str(w, "reason", "");
    long long pid = cjson_get_int(w, "pid", 0);

#define EXTRA(...) do { if (off < sizeof(extra)) off += (size_t)snprintf( \
        extra + off, sizeof(extra) - off, __VA_ARGS__); } while (0)
    if (pid > 0) {
        format_duration(cjson_get_int(w, "uptime_s", 0), up, sizeof(up));
        EXTRA("  up %s", up);
    }
    EXTRA("  restarts %lld", cjson_get_int(w, "restarts", 0));
    if (cjson_get(w, "keys") != NULL) {
        format_bytes(cjson_get_int(w, "load_bytes", 0), num, sizeof(num));
        EXTRA("  keys %lld  load %s  epoch %lld", cjson_get_int(w, "keys", 0),
              num, cjson_get_int(w, "epoch", 0));
    }
    if (cjson_get(w, "peers") != NULL)
        EXTRA("  peers %lld/%lld  in flight %lld",
              cjson_get_int(w, "peers_connected", 0),
              cjson_get_int(w, "peers", 0), cjson_get_int(w, "inflight", 0));
    long long ae_ms = cjson_get_int(w, "antientropy_last_pass_ms", 0);
    if (ae_ms > 0) {
        long long ago = (long long)time(NULL) - ae_ms / 1000;
        format_duration(ago > 0 ? ago : 0, num, sizeof(num));
        EXTRA("  anti-entropy %s ago", num);
    }
    /* What a membership change waits for (rzkv(7)). */
    long long clean_ms = cjson_get_int(w, "antientropy_clean_pass_ms", 0);
    if (clean_ms > 0) {
        long long ago = (long long)time(NULL) - clean_ms / 1000;
        format_duration(ago > 0 ? ago : 0, num, sizeof(num));
        EXTRA(", last clean pass began %s ago", num);
    }
    if (strcmp(state, "backoff") == 0)
        EXTRA("  backoff %lld ms", cjson_get_int(w, "backoff_ms", 0));
    if (last[0] != '\0')
        EXTRA("  last exit: %s", last);
    if (reason[0] != '\0')
        EXTRA("  (%s)", reason);
#undef EXTRA
    snprintf(name, sizeof(name), "%s[%lld]", role,
             cjson_get_int(w, "instance", -1));
    if (pid > 0)
        snprintf(num, sizeof(num), "%lld", pid);
    else
        snprintf(num, sizeof(num), "-");
    printf("    %-15s %-9s pid %-6s%s\n", name, state, num, extra);
}

/* The columns of the table, wide enough for every node. */
struct status_widths {
    int id, address;
};

static void
print_header(const struct status_widths *wd)
{
    printf("%-*s  %-9s %-*s  %-10s %-8s %-8s %s\n", wd->id, "ID", "STATE",
           wd->address, "ADDRESS", "LOAD", "KEYS", "UPTIME", "PID");
}

/* One line per node, like nodetool status; the workers under -v. */
static void
print_node(const struct ctl_node *node, const struct cjson *st,
           const struct status_widths *wd, int verbose)
{
    char up[32], load[32], keys[32], pid[32];
    const char *id = node->conf->id, *address = node->conf->local_address;

    if (st == NULL) {
        printf("%-*s  %-9s %-*s  %-10s %-8s %-8s %s\n", wd->id, id, "down",
               wd->address, address, "-", "-", "-", "-");
        return;
    }
    format_duration(cjson_get_int(st, "uptime_s", 0), up, sizeof(up));
    if (cjson_get(st, "keys") != NULL) {
        format_bytes(cjson_get_int(st, "load_bytes", 0), load, sizeof(load));
        snprintf(keys, sizeof(keys), "%lld", cjson_get_int(st, "keys", 0));
    } else {
        snprintf(load, sizeof(load), "?");
        snprintf(keys, sizeof(keys), "?");
    }
    snprintf(pid, sizeof(pid), "%lld", cjson_get_int(st, "pid", 0));
    printf("%-*s  %-9s %-*s  %-10s %-8s %-8s %s\n", wd->id,
           cjson_get_str(st, "id", id), cjson_get_str(st, "state", "?"),
           wd->address, cjson_get_str(st, "address", address), load, keys,
           up, pid);
    const char *health = cjson_get_str(st, "health", "serving");
    if (strcmp(health, "serving") != 0)
        printf("%-*s  not serving: %s\n", wd->id, "", health);
    if (!verbose)
        return;
    const struct cjson *workers = cjson_get(st, "workers");
    for (const struct cjson *w = workers != NULL ? workers->child : NULL;
         w != NULL; w = w->next)
        print_worker(w);
}

static void
status_widths(const struct ctl_node *nodes, size_t n,
              struct status_widths *wd)
{
    wd->id = 2;
    wd->address = 7;
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(nodes[i].conf->id);
        if (len > wd->id)
            wd->id = len < 40 ? len : 40;
        len = (int)strlen(nodes[i].conf->local_address);
        if (len > wd->address)
            wd->address = len < 60 ? len : 60;
    }
}

static void
print_json_down(const struct ctl_node *node)
{
    printf("{\"id\":");
    print_json_string(node->conf->id);
    printf(",\"address\":");
    print_json_string(node->conf->local_address);
    printf(",\"state\":\"down\",\"health\":\"down\",\"workers\":[]}");
}

int
cmd_status(int argc, char **argv)
{
    struct node_opts o;
    struct ctl_node *nodes = NULL;
    struct status_widths wd;
    size_t n = 0;
    int rc = node_args("status", argc, argv, &o, &nodes, &n);
    if (rc != CTL_EXIT_OK)
        return rc < 0 ? CTL_EXIT_OK : rc;

    int not_serving = 0;
    status_widths(nodes, n, &wd);
    if (o.json)
        printf("{\"nodes\":[");
    else
        print_header(&wd);
    for (size_t i = 0; i < n; i++) {
        char *raw;
        struct cjson *st = node_status(nodes[i].conf, &raw);
        if (st == NULL ||
            strcmp(cjson_get_str(st, "state", ""), "serving") != 0)
            not_serving++;
        if (!o.json) {
            print_node(&nodes[i], st, &wd, o.verbose);
        } else if (st != NULL) {
            printf("%s%s", i > 0 ? "," : "", raw);
        } else {
            printf("%s", i > 0 ? "," : "");
            print_json_down(&nodes[i]);
        }
        cjson_free(st);
        free(raw);
    }
    if (o.json)
        printf("]}\n");
    ctl_nodes_free(nodes, n);
    return not_serving > 0 ? CTL_EXIT_UNAVAILABLE : CTL_EXIT_OK;
}

/* ---- reload, repair ------------------------------------------------------- */

/* Send one control command (reload, repair) to each node named on the
 * command line and print each node's "ok: ..." or "error: ..." reply. */
static int
command_each(const char *cmd, int argc, char **argv)
{
    struct node_opts o;
    struct ctl_node *nodes = NULL;
    size_t n = 0;
    int rc = node_args(cmd, argc, argv, &o, &nodes, &n);
    if (rc != CTL_EXIT_OK)
        return rc < 0 ? CTL_EXIT_OK : rc;

    int status = CTL_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        char *reply;
        const char *id = nodes[i].conf->id;
        switch (control_call(nodes[i].conf, cmd, &reply)) {
        case CALL_DOWN:
            fprintf(stderr, "rzkvctl %s: node %s is not running\n", cmd, id);
            if (status == CTL_EXIT_OK)
                status = CTL_EXIT_UNAVAILABLE;
            break;
        case CALL_ERROR:
            fprintf(stderr, "rzkvctl %s: node %s: no answer\n", cmd, id);
            status = CTL_EXIT_ERROR;
            break;
        case CALL_OK:
            reply[strcspn(reply, "\n")] = '\0';
            if (strncmp(reply, "ok: ", 4) == 0) {
                printf("node %s: %s\n", id, reply + 4);
            } else {
                fprintf(stderr, "rzkvctl %s: node %s: %s\n", cmd, id,
                        strncmp(reply, "error: ", 7) == 0 ? reply + 7
                                                          : reply);
                status = CTL_EXIT_ERROR;
            }
            break;
        }
        free(reply);
    }
    ctl_nodes_free(nodes, n);
    return status;
}

int
cmd_reload(int argc, char **argv)
{
    return command_each("reload", argc, argv);
}

int
cmd_repair(int argc, char **argv)
{
    return command_each("repair", argc, argv);
}

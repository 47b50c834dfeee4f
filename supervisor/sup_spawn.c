/*
 * sup_spawn.c - start one worker: fork+exec of rzkvd itself, and the
 * supervisor's end of its status channel.
 *
 * NAME
 *	sup_spawn - fork+exec "rzkvd -P ROLE -I N NODE.yml ACTIVE_CLUSTER"
 * DESCRIPTION
 *	A worker is always a fresh exec of /proc/self/exe (read once at
 *	start, so an upgrade of the binary on disk does not mix versions in a
 *	running node): nng is not fork-safe (it panics in a forked child that
 *	uses it) and SQLite must not cross a fork.  By the time a worker is
 *	restarted the supervisor runs libevent.  That is safe only because
 *	the child does nothing between fork and exec but async-signal-safe calls
 *	(sigprocmask, dup2, fcntl, execve, write, _exit) on data prepared
 *	before the fork: no malloc, no stdio, no logging.  Keep it that way.
 *
 *	Spawning happens on the main thread only (from libevent callbacks):
 *	PR_SET_PDEATHSIG, which kills the workers when rzkvd dies, follows
 *	the thread that forked, not the process.
 *
 *	A coordinator also gets the node's bound TCP socket as RZKV_LISTEN_FD
 *	(sup_front.c): it serves the node's address itself.
 *
 *	The status channel is a socketpair(2); the worker's end becomes
 *	RZKV_STATUS_FD, RZKV_GENERATION tells it how many times its slot was
 *	started before (common/contract.h).
 * SEE ALSO
 *	worker/chan.c (the other end), sup_reap.c
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"
#include "worker.h"

extern char **environ;

/* Make fd the child's descriptor `to`, kept across exec. */
static int
child_fd(int fd, int to)
{
    /* dup2 onto itself would keep close-on-exec. */
    if (fd == to)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, to) < 0 ? -1 : 0;
}

/*
 * In the child, after fork: async-signal-safe calls only (see the top).
 * listen_fd is -1 or far above RZKV_LISTEN_FD (sup_front.c), so setting
 * up the status channel never overwrites it.
 */
static _Noreturn void
child_exec(int chan, int listen_fd, const sigset_t *mask,
           char *const argv[], char *const envp[])
{
    static const char msg[] = "rzkvd: cannot exec the worker binary\n";

    sigprocmask(SIG_SETMASK, mask, NULL);
    if (child_fd(chan, RZKV_STATUS_FD) != 0 ||
        (listen_fd >= 0 && child_fd(listen_fd, RZKV_LISTEN_FD) != 0))
        _exit(RZKV_EXIT_FATAL);
    execve(argv[0], argv, envp);
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
        _exit(RZKV_EXIT_FATAL);
    _exit(RZKV_EXIT_FATAL);
}

static int
has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Our environment with the contract's variables set for this start. */
static char **
worker_env(const struct sup_child *c, int listen_fd, char *gen,
           size_t genlen, char *lfd, size_t lfdlen)
{
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 4, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!has_prefix(environ[i], RZKV_ENV_GENERATION "=") &&
            !has_prefix(environ[i], RZKV_ENV_LOG_SYSLOG "=") &&
            !has_prefix(environ[i], RZKV_ENV_LISTEN_FD "="))
            envp[k++] = environ[i];
    snprintf(gen, genlen, "%s=%u", RZKV_ENV_GENERATION, c->generation);
    envp[k++] = gen;
    if (c->group->sup->log_syslog)
        envp[k++] = (char *)RZKV_ENV_LOG_SYSLOG "=1";
    if (listen_fd >= 0) {
        snprintf(lfd, lfdlen, "%s=%d", RZKV_ENV_LISTEN_FD, RZKV_LISTEN_FD);
        envp[k++] = lfd;
    }
    envp[k] = NULL;
    return envp;
}

static void chan_read_cb(evutil_socket_t fd, short what, void *arg);

static int
chan_open(struct sup_child *c, int fd)
{
    struct sup *s = c->group->sup;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    c->chan_fd = fd;
    c->chan_len = 0;
    c->chan_ev = event_new(s->base, fd, EV_READ | EV_PERSIST, chan_read_cb,
                           c);
    if (c->chan_ev == NULL || event_add(c->chan_ev, NULL) != 0)
        return -1;
    return 0;
}

int
sup_spawn(struct sup_child *c)
{
    struct sup *s = c->group->sup;
    char instance[16], gen[64];
    sigset_t empty;
    int sv[2];

    snprintf(instance, sizeof(instance), "%d", c->instance);
    char *argv[10];
    int a = 0;
    argv[a++] = s->self_exe;
    argv[a++] = (char *)"-P";
    argv[a++] = (char *)c->group->name;
    argv[a++] = (char *)"-I";
    argv[a++] = instance;
    if (s->opts->verbose)
        argv[a++] = (char *)"-v";
    argv[a++] = s->node_path;
    argv[a++] = s->active_cluster;
    argv[a] = NULL;
    int listen_fd = c->group == &s->groups[SUP_COORD]
                    ? s->listen_fd : -1;
    char lfd[64];
    char **envp = worker_env(c, listen_fd, gen, sizeof(gen), lfd,
                             sizeof(lfd));
    if (envp == NULL) {
        log_warn("cannot start %s[%d]", c->group->name, c->instance);
        return -1;
    }
    sigemptyset(&empty);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        log_warn("cannot start %s[%d]: socketpair", c->group->name,
                 c->instance);
        free(envp);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(sv[1], listen_fd, &empty, argv, envp);
    int saved = errno;
    free(envp);
    close(sv[1]);
    if (pid < 0) {
        errno = saved;
        log_warn("cannot start %s[%d]: fork", c->group->name, c->instance);
        close(sv[0]);
        return -1;
    }
    c->pid = pid;
    c->generation++;
    c->started_at = sup_now_ms();
    c->ready_at = 0;
    c->sent_signal = 0;
    sup_child_set_state(c, CHILD_STARTING);
    if (chan_open(c, sv[0]) != 0) {
        /* Without a channel the worker can never report ready. */
        log_warn("%s[%d]: cannot watch its status channel", c->group->name,
                 c->instance);
        sup_chan_close(c);
        sup_kill(c, SIGKILL);
    }
    log_info("started %s[%d] pid %ld (generation %u)", c->group->name,
             c->instance, (long)pid, c->generation - 1);
    return 0;
}

/* One line from the worker: only "ready" is defined. */
static void
chan_line(struct sup_child *c, const char *line)
{
    if (strcmp(line, "ready") == 0)
        sup_child_ready(c);
    else
        log_warnx("%s[%d] pid %ld: unexpected status line \"%.64s\"",
                  c->group->name, c->instance, (long)c->pid, line);
}

static void
chan_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sup_child *c = arg;
    (void)what;

    ssize_t n = read(fd, c->chan_buf + c->chan_len,
                     sizeof(c->chan_buf) - c->chan_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        /* The worker is exiting (SIGCHLD will tell how), or it closed
         * its channel by mistake: give it 2 s to exit before killing. */
        struct timeval grace = { 2, 0 };
        log_debug("%s[%d] pid %ld closed its status channel",
                  c->group->name, c->instance, (long)c->pid);
        sup_chan_close(c);
        if (c->pid > 0 && c->state != CHILD_BACKOFF)
            evtimer_add(c->timer, &grace);
        return;
    }
    c->chan_len += (size_t)n;
    char *start = c->chan_buf, *nl;
    while ((nl = memchr(start, '\n', c->chan_len -
                        (size_t)(start - c->chan_buf))) != NULL) {
        *nl = '\0';
        chan_line(c, start);
        start = nl + 1;
    }
    c->chan_len -= (size_t)(start - c->chan_buf);
    memmove(c->chan_buf, start, c->chan_len);
    if (c->chan_len == sizeof(c->chan_buf)) {
        log_warnx("%s[%d] pid %ld: over-long status line dropped",
                  c->group->name, c->instance, (long)c->pid);
        c->chan_len = 0;
    }
}

void
sup_chan_close(struct sup_child *c)
{
    if (c->chan_ev != NULL) {
        event_free(c->chan_ev);
        c->chan_ev = NULL;
    }
    if (c->chan_fd >= 0) {
        close(c->chan_fd);
        c->chan_fd = -1;
    }
    c->chan_len = 0;
}

/* Send a command line; the channel carries a few bytes, never blocks. */
void
sup_send(struct sup_child *c, const char *line)
{
    if (c->chan_fd < 0)
        return;
    size_t len = strlen(line);
    ssize_t n = write(c->chan_fd, line, len);
    if (n != (ssize_t)len)
        log_warn("%s[%d] pid %ld: cannot send \"%.*s\"", c->group->name,
                 c->instance, (long)c->pid, (int)len - 1, line);
}

/* Signal the slot's process; sup_reap.c stays quiet about this signal. */
void
sup_kill(struct sup_child *c, int sig)
{
    if (c->pid <= 0)
        return;
    c->sent_signal = sig;
    if (kill(c->pid, sig) != 0 && errno != ESRCH)
        log_warn("kill %s[%d] pid %ld", c->group->name, c->instance,
                 (long)c->pid);
}

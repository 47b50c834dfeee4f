/*
 * chan.c - the worker side of the supervisor's status channel.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

static int chan_standalone;
static char chan_buf[256];
static size_t chan_len;

/* RZKV_TEST_CRASH_AT_START (worker.h): exit now if it names us. */
static void
test_crash_at_start(const char *role, int instance)
{
    const char *spec = getenv(RZKV_ENV_TEST_CRASH);
    if (spec == NULL || *spec == '\0')
        return;
    size_t n = strcspn(spec, "/:");
    if (strlen(role) != n || strncmp(spec, role, n) != 0)
        return;
    spec += n;
    if (*spec == '/') {
        char *end;
        long want = strtol(spec + 1, &end, 10);
        if (want != instance)
            return;
        spec = end;
    }
    int status = *spec == ':' ? atoi(spec + 1) : RZKV_EXIT_FATAL;
    log_warnx("%s=%s: exiting with status %d", RZKV_ENV_TEST_CRASH,
              getenv(RZKV_ENV_TEST_CRASH), status);
    exit(status);
}

void
worker_setup(const char *role, int instance)
{
    struct stat st;

    log_init(role, instance);
    if (getenv(RZKV_ENV_LOG_SYSLOG) != NULL)
        log_open("syslog");
    test_crash_at_start(role, instance);
    signal(SIGPIPE, SIG_IGN);
    if (fstat(RZKV_STATUS_FD, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        /* Block the stop signals before any thread starts, so they all
         * inherit the mask and standalone_wait() alone receives them. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        chan_standalone = 1;
        return;
    }
    /* The supervisor owns the lifecycle; die with it. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        fatal("prctl(PR_SET_PDEATHSIG)");
    if (getppid() == 1)
        fatalx("supervisor exited before this worker started");
    fcntl(RZKV_STATUS_FD, F_SETFD, FD_CLOEXEC);
}

int
worker_is_standalone(void)
{
    return chan_standalone;
}

void
worker_ready(void)
{
    static const char line[] = "ready\n";
    if (chan_standalone) {
        log_info("ready (standalone)");
        return;
    }
    if (write(RZKV_STATUS_FD, line, sizeof(line) - 1) < 0)
        fatal("write ready to supervisor");
}

static enum worker_cmd
standalone_wait(void)
{
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigwait(&set, &sig);
    return WORKER_CMD_STOP;
}

int
worker_stop_pending(void)
{
    sigset_t pending;

    if (!chan_standalone || sigpending(&pending) != 0)
        return 0;
    return sigismember(&pending, SIGTERM) == 1 ||
           sigismember(&pending, SIGINT) == 1;
}

enum worker_cmd
worker_wait_command(void)
{
    if (chan_standalone)
        return standalone_wait();
    for (;;) {
        char *nl = memchr(chan_buf, '\n', chan_len);
        if (nl != NULL) {
            *nl = '\0';
            enum worker_cmd cmd;
            if (strcmp(chan_buf, "stop") == 0)
                cmd = WORKER_CMD_STOP;
            else if (strcmp(chan_buf, "reload") == 0)
                cmd = WORKER_CMD_RELOAD;
            else if (strcmp(chan_buf, "repair") == 0)
                cmd = WORKER_CMD_REPAIR;
            else {
                log_warnx("unexpected supervisor command \"%s\"", chan_buf);
                cmd = (enum worker_cmd)-1;
            }
            size_t used = (size_t)(nl - chan_buf) + 1;
            memmove(chan_buf, nl + 1, chan_len - used);
            chan_len -= used;
            if ((int)cmd >= 0)
                return cmd;
            continue;
        }
        if (chan_len == sizeof(chan_buf))
            chan_len = 0;   /* an over-long line: drop it */
        ssize_t n = read(RZKV_STATUS_FD, chan_buf + chan_len,
                         sizeof(chan_buf) - chan_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return WORKER_CMD_EOF;
        chan_len += (size_t)n;
    }
}

/*
 * sup_reap.c - collect dead workers and say how they died.
 *
 * NAME
 *	sup_reap - waitpid(WNOHANG) until nothing is left to reap
 * DESCRIPTION
 *	Called on SIGCHLD (sup_signal.c).  Signals coalesce, so one SIGCHLD
 *	may stand for several deaths: loop until waitpid has nothing more
 *	(Postfix master_reap_child).  Each death is logged with the slot, the
 *	pid and either the exit status or the signal and "(core dumped)";
 *	deaths we caused (a signal we sent, an exit 0 after "stop") are
 *	logged at debug level only.  Then sup_state.c decides what to do.
 *
 *	A pid that is not one of our workers is logged and ignored, not a
 *	panic: rzkvd may have been exec'd by a process that already had
 *	children, and those are now ours to reap.
 * SEE ALSO
 *	sup_state.c (sup_child_died), sup_spawn.c
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "log.h"
#include "sup.h"

void
sup_describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "signal %d%s", WTERMSIG(status),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(buf, len, "wait status %#x", (unsigned)status);
}

static struct sup_child *
find_child(struct sup *s, pid_t pid)
{
    for (int r = 0; r < SUP_NROLES; r++)
        for (int i = 0; i < s->groups[r].count; i++)
            if (s->groups[r].children[i].pid == pid)
                return &s->groups[r].children[i];
    return NULL;
}

static void
log_death(const struct sup_child *c, int status)
{
    const char *role = c->group->name;
    long pid = (long)c->pid;
    int expected = c->state == CHILD_STOPPING ||
                   c->group->sup->state == SUP_STOPPING;

    if (WIFSIGNALED(status) && WTERMSIG(status) == c->sent_signal) {
        log_debug("%s[%d] pid %ld ended by our signal %d", role,
                  c->instance, pid, c->sent_signal);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && expected) {
        log_debug("%s[%d] pid %ld exited", role, c->instance, pid);
    } else if (WIFEXITED(status)) {
        log_warnx("%s[%d] pid %ld exited with status %d", role, c->instance,
                  pid, WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        log_warnx("%s[%d] pid %ld killed by signal %d (%s)%s", role,
                  c->instance, pid, WTERMSIG(status),
                  strsignal(WTERMSIG(status)),
                  WCOREDUMP(status) ? " (core dumped)" : "");
    }
}

void
sup_reap(struct sup *s)
{
    for (;;) {
        int status;
        /* Without WUNTRACED, stopped children are not reported. */
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0)
            return;
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            if (errno != ECHILD)
                log_warn("waitpid");
            return;
        }
        struct sup_child *c = find_child(s, pid);
        if (c == NULL) {
            char how[48];
            sup_describe_exit(status, how, sizeof(how));
            log_warnx("reaped pid %ld (%s), which is not one of our "
                      "workers", (long)pid, how);
            continue;
        }
        log_death(c, status);
        sup_child_died(c, status);
    }
}

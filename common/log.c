/*
 * log.c - line-oriented logging with role, instance and pid on every line.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static char log_role[32] = "rzkv";
static int log_instance = -1;
static enum log_level log_level = LOG_LEVEL_INFO;
static FILE *log_file;          /* NULL: stderr */
static int log_to_syslog;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_NOTICE] = "notice",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_DEBUG] = "debug",
};

static const int syslog_prio[] = {
    [LOG_LEVEL_ERROR] = LOG_ERR,
    [LOG_LEVEL_WARN] = LOG_WARNING,
    [LOG_LEVEL_NOTICE] = LOG_NOTICE,
    [LOG_LEVEL_INFO] = LOG_INFO,
    [LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

void
log_init(const char *role, int instance)
{
    snprintf(log_role, sizeof(log_role), "%s", role);
    log_instance = instance;
}

void
log_set_level(enum log_level level)
{
    log_level = level;
}

enum log_level
log_get_level(void)
{
    return log_level;
}

int
log_level_from_string(const char *s)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcmp(s, level_names[i]) == 0)
            return (int)i;
    return -1;
}

int
log_open(const char *path)
{
    if (path == NULL || *path == '\0') {
        log_to_syslog = 0;
        return 0;
    }
    if (strcmp(path, "syslog") == 0) {
        openlog("rzkvd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        log_to_syslog = 1;
        return 0;
    }
    FILE *f = fopen(path, "ae");
    if (f == NULL)
        return -1;
    setvbuf(f, NULL, _IOLBF, 0);
    pthread_mutex_lock(&log_lock);
    if (log_file != NULL)
        fclose(log_file);
    log_file = f;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

static void
log_vwrite(enum log_level level, const char *func, int errnum,
           const char *fmt, va_list ap)
{
    char msg[2048];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        msg[0] = '\0';
    if (errnum != 0) {
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(errnum));
    }

    char who[64];
    if (log_instance >= 0)
        snprintf(who, sizeof(who), "%s[%d]/%ld", log_role, log_instance,
                 (long)getpid());
    else
        snprintf(who, sizeof(who), "%s/%ld", log_role, (long)getpid());

    if (log_to_syslog) {
        syslog(syslog_prio[level], "%s %s: %s", who, func, msg);
        return;
    }

    struct timeval tv;
    struct tm tm;
    char when[32];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    pthread_mutex_lock(&log_lock);
    FILE *out = log_file != NULL ? log_file : stderr;
    fprintf(out, "%s.%03ldZ %s %s %s: %s\n", when, (long)tv.tv_usec / 1000,
            who, level_names[level], func, msg);
    fflush(out);
    pthread_mutex_unlock(&log_lock);
}

void
log_msg(enum log_level level, const char *func, int with_errno,
        const char *fmt, ...)
{
    int saved = errno;
    if (level > log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, func, with_errno ? saved : 0, fmt, ap);
    va_end(ap);
    errno = saved;
}

void
log_fatal(const char *func, int with_errno, int status, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_ERROR, func, with_errno ? saved : 0, fmt, ap);
    va_end(ap);
    exit(status);
}

void
log_panic(const char *func, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_ERROR, func, 0, fmt, ap);
    va_end(ap);
    abort();
}

int
log_rate_take(struct log_rate *r, time_t now, unsigned per_s,
              unsigned *dropped)
{
    *dropped = 0;
    if (now != r->second) {
        *dropped = r->dropped;
        r->second = now;
        r->lines = 0;
        r->dropped = 0;
    }
    if (r->lines >= per_s) {
        r->dropped++;
        return 0;
    }
    r->lines++;
    return 1;
}

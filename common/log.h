/*
 * log.h - rzkv's logging: one line per event, naming role, instance, pid.
 *
 *   2026-11-25T12:00:00.123Z storage[1]/4242 info store_open: opened ...
 *
 * Severity ladder (Postfix msg(3) with the OpenBSD "x" convention):
 *   log_debug/log_info/log_notice  events
 *   log_warn     something failed; appends strerror(errno)
 *   log_warnx    something failed; no errno
 *   fatal/fatalx the environment is broken: log and exit(RZKV_EXIT_FATAL)
 *   panic        our own bug: log and abort() for a core
 * Never call these from a signal handler.
 */
#ifndef RZKV_LOG_H
#define RZKV_LOG_H

#include <stdarg.h>
#include <time.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_NOTICE,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* Name this process in every line; instance < 0 prints no instance. */
void log_init(const char *role, int instance);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error", "warn", "notice", "info", "debug"; -1 if unknown. */
int log_level_from_string(const char *s);
/* Send lines to this file (appending) instead of stderr; NULL: stderr.
 * "syslog" sends them to syslog(3).  Returns -1 with errno on failure. */
int log_open(const char *path);

void log_msg(enum log_level level, const char *func, int with_errno,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
_Noreturn void log_fatal(const char *func, int with_errno, int status,
                         const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
_Noreturn void log_panic(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)  do { if (log_get_level() >= LOG_LEVEL_DEBUG) \
        log_msg(LOG_LEVEL_DEBUG, __func__, 0, __VA_ARGS__); } while (0)
#define log_info(...)   log_msg(LOG_LEVEL_INFO, __func__, 0, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __func__, 0, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_LEVEL_WARN, __func__, 1, __VA_ARGS__)
#define log_warnx(...)  log_msg(LOG_LEVEL_WARN, __func__, 0, __VA_ARGS__)
#define log_error(...)  log_msg(LOG_LEVEL_ERROR, __func__, 0, __VA_ARGS__)
#define fatal(...)  log_fatal(__func__, 1, RZKV_EXIT_FATAL, __VA_ARGS__)
#define fatalx(...) log_fatal(__func__, 0, RZKV_EXIT_FATAL, __VA_ARGS__)
/* For a state that can't be fixed by a restart (bad config, corrupt data). */
#define fatalx_config(...) log_fatal(__func__, 0, RZKV_EXIT_CONFIG, __VA_ARGS__)
#define panic(...)  log_panic(__func__, __VA_ARGS__)

/*
 * A budget of log lines a second, for lines that bad input or a fault
 * could repeat thousands of times a second.  Not locked: a caller shared
 * by threads locks it, or accepts a line more or less.
 */
struct log_rate {
    time_t second;              /* the second being counted */
    unsigned lines;             /* lines taken in it */
    unsigned dropped;           /* lines refused in it */
};
/*
 * May one more line go out at now (time(NULL)), per_s a second at most?
 * On the first call of a new second, *dropped is how many lines the last
 * counted second refused (for a "N more not logged" line); else 0.
 */
int log_rate_take(struct log_rate *r, time_t now, unsigned per_s,
                  unsigned *dropped);

#include "contract.h"

#endif

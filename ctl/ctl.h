/*
 * ctl.h - rzkvctl's commands and what they share.
 *
 * Each command is a function in the table of rzkvctl.c; it gets argv with
 * the command name at argv[0] and returns the process exit status.
 */
#ifndef RZKV_CTL_H
#define RZKV_CTL_H

#include <stdio.h>

/* Exit statuses, documented in rzkvctl(1). */
#define CTL_EXIT_OK             0
#define CTL_EXIT_NOT_FOUND      1
#define CTL_EXIT_USAGE          2
#define CTL_EXIT_UNAVAILABLE    3
#define CTL_EXIT_UNKNOWN        4
#define CTL_EXIT_ERROR          5

struct ctl_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;       /* one line for `rzkvctl --help` */
};

/* cmd_locate.c */
int cmd_locate(int argc, char **argv);

/* rzkvctl.c */
void ctl_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

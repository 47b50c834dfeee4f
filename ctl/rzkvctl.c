/*
 * rzkvctl - start, stop and inspect rzkv nodes; read and write keys.
 *
 * main() looks the command up in one table; each command lives in its own
 * ctl/cmd_*.c file.  See rzkvctl(1).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const struct ctl_command commands[] = {
    { "locate", cmd_locate, "locate --cluster CLUSTER.yml KEY" },
    { "start", cmd_start, "start NODE.yml CLUSTER.yml | --local [N] "
      "[--dir DIR] [--base-port PORT]" },
    { "stop", cmd_stop, "stop NODE.yml [CLUSTER.yml] | --local [--dir DIR]" },
    { "status", cmd_status, "status [--json] NODE.yml [CLUSTER.yml] | "
      "--local [--dir DIR]" },
    { "reload", cmd_reload, "reload NODE.yml [CLUSTER.yml] | --local "
      "[--dir DIR]" },
    { "repair", cmd_repair, "repair NODE.yml [CLUSTER.yml] | --local "
      "[--dir DIR]" },
    { "get", cmd_get, "get [CLIENT-OPTIONS] KEY" },
    { "set", cmd_set, "set [CLIENT-OPTIONS] KEY VALUE|-|--file PATH" },
    { "del", cmd_del, "del [CLIENT-OPTIONS] KEY" },
    { "info", cmd_info, "info [CLIENT-OPTIONS]" },
    { "keys", cmd_keys, "keys [CLIENT-OPTIONS] [--limit N] [--start KEY]" },
    { "bench", cmd_bench, "bench [-a ADDR,..] [-c N] [-n N|-d SECONDS] "
      "[--op set|get|del|mix:R/W|health] .." },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
print_usage(FILE *out)
{
    fprintf(out, "usage: rzkvctl COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  rzkvctl %s\n", commands[i].synopsis);
    fprintf(out, "\nrzkvctl COMMAND --help describes a command; "
                 "see rzkvctl(1).\n");
}

void
ctl_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "rzkvctl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, cmd) == 0)
            fprintf(stderr, "usage: rzkvctl %s\n", commands[i].synopsis);
}

int
main(int argc, char **argv)
{
    /* Client options may come before the command: rzkvctl -a :8002 get k */
    int rv = ctl_global_options(&argc, &argv);
    if (rv != CTL_EXIT_OK)
        return rv;
    if (argc < 2) {
        print_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return CTL_EXIT_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "rzkvctl: unknown command \"%s\"\n", argv[1]);
    print_usage(stderr);
    return CTL_EXIT_USAGE;
}

/*
 * sup.h - the supervisor's model: one header for its structs and every
 * cross-file prototype, grouped by the file that defines them.
 */
#ifndef RZKV_SUP_H
#define RZKV_SUP_H

struct sup_options {
    const char *node_path;
    const char *cluster_path;
    int foreground;             /* -f */
    int check_only;             /* -t */
    int verbose;                /* -v */
};

/* sup_main.c */
int sup_main(const struct sup_options *opts);

#endif

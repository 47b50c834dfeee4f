/* sup_main.c - placeholder until the supervisor lands. */
#include "config.h"
#include <stdio.h>
#include "sup.h"
int
sup_main(const struct sup_options *opts)
{
    (void)opts;
    fprintf(stderr, "rzkvd: supervisor not built yet\n");
    return 1;
}

/*
 * hello.c - the smallest rzkv client: connect, set a key, read it back,
 * print it, delete it.
 *
 *   make                      (needs librzkv installed: pkg-config rzkv)
 *   ./hello [ADDRESS...]      (default 127.0.0.1:8001)
 */
#include <stdio.h>
#include <string.h>

#include <rzkv.h>

int
main(int argc, char **argv)
{
    const char *fallback[] = { "127.0.0.1:8001" };
    const char *const *addrs = argc > 1 ? (const char *const *)argv + 1
                                        : fallback;
    size_t naddrs = argc > 1 ? (size_t)argc - 1 : 1;
    const char *key = "hello";
    const char *text = "Hello, rzkv!";
    rzkv_error err;
    rzkv_client *c;
    void *value;
    size_t len;

    if ((c = rzkv_connect(addrs, naddrs, NULL, &err)) == NULL) {
        fprintf(stderr, "hello: %s\n", err.message);
        return 1;
    }
    if (rzkv_set(c, key, strlen(key), text, strlen(text), NULL, NULL, &err)
        != RZKV_OK) {
        /* UNKNOWN means the write may still apply: never just assume it
         * failed. */
        fprintf(stderr, "hello: set: %s: %s\n", rzkv_status_str(err.status),
                err.message);
        rzkv_close(c);
        return 1;
    }
    if (rzkv_get(c, key, strlen(key), NULL, &value, &len, NULL, &err)
        != RZKV_OK) {
        fprintf(stderr, "hello: get: %s: %s\n", rzkv_status_str(err.status),
                err.message);
        rzkv_close(c);
        return 1;
    }
    printf("%s = %.*s (from %s)\n", key, (int)len, (char *)value,
           err.address);
    rzkv_free(value);
    if (rzkv_del(c, key, strlen(key), NULL, NULL, &err) != RZKV_OK)
        fprintf(stderr, "hello: del: %s: %s\n", rzkv_status_str(err.status),
                err.message);
    rzkv_close(c);
    return err.status == RZKV_OK ? 0 : 1;
}

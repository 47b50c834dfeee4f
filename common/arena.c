/*
 * arena.c - bump allocation for the parts of one unpacked message
 * (arena.h).
 */
#include "config.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "arena.h"

#ifdef ARENA_POISONS                /* arena.h */
#include <sanitizer/asan_interface.h>
#define ARENA_REDZONE   alignof(max_align_t)
#define POISON(p, n)    ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n)  ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ARENA_REDZONE   0
#define POISON(p, n)    ((void)(p), (void)(n))
#define UNPOISON(p, n)  ((void)(p), (void)(n))
#endif

#define ARENA_BLOCK_MIN 4096    /* bytes, header included */
#define ARENA_ALIGN     alignof(max_align_t)

struct arena_block {
    struct arena_block *next;   /* older */
    size_t size;                /* bytes of data[] */
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

static void *
pb_alloc(void *data, size_t n)
{
    return arena_alloc(data, n);
}

/* Pieces go back with the whole arena (arena_reset). */
static void
pb_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

void
arena_init(struct arena *a)
{
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
    a->head = NULL;
    a->want = 0;
    a->keep = ARENA_KEEP_MAX;
}

static struct arena_block *
block_new(size_t size)
{
    struct arena_block *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->next = NULL;
    b->size = size;
    b->used = 0;
    POISON(b->data, size);
    return b;
}

static void
block_free(struct arena_block *b)
{
    UNPOISON(b->data, b->size);
    free(b);
}

void *
arena_alloc(struct arena *a, size_t n)
{
    struct arena_block *b = a->head;

    if (n > SIZE_MAX / 2)
        return NULL;
    size_t asked = n;
    n = ((n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1)) + ARENA_REDZONE;
    if (b == NULL || b->size - b->used < n) {
        /* Each new block at least doubles what the arena holds, so a
         * message takes O(log size) blocks. */
        size_t size = ARENA_BLOCK_MIN - sizeof(*b);
        if (a->want > size)
            size = a->want;
        if (b != NULL && b->size * 2 > size)
            size = b->size * 2;
        if (n > size)
            size = n;
        struct arena_block *nb = block_new(size);
        if (nb == NULL)
            return NULL;
        nb->next = b;
        a->head = b = nb;
        a->want = 0;
    }
    void *p = b->data + b->used;
    b->used += n;
    UNPOISON(p, asked);
    return p;
}

void
arena_reset(struct arena *a)
{
    struct arena_block *b = a->head;

    if (b == NULL)
        return;
    if (b->next == NULL && b->size <= a->keep) {
        POISON(b->data, b->used);
        b->used = 0;
        return;
    }
    size_t total = 0;
    while (b != NULL) {
        struct arena_block *next = b->next;
        total += b->size;
        block_free(b);
        b = next;
    }
    a->head = NULL;
    a->want = total <= a->keep ? total : 0;
}

void
arena_free(struct arena *a)
{
    arena_reset(a);
    if (a->head != NULL)
        block_free(a->head);
    a->head = NULL;
    a->want = 0;
}

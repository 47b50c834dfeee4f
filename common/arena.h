/*
 * arena.h - bump allocation for the parts of one unpacked message.
 *
 * protobuf-c allocates every message, repeated-field array and bytes
 * field of an unpacked message on its own, and free_unpacked() frees them
 * one at a time: a batch of eight 1 KiB sets is some sixty mallocs and
 * frees, most of them too large for glibc's per-thread cache.  An arena
 * hands out pieces of one block, frees them all at once, and keeps the
 * block for the next message, so a worker that reuses its arenas
 * allocates nothing to unpack once it has seen its largest message.
 *
 *     struct arena a;
 *     arena_init(&a);
 *     Rzkv__Envelope *env = rzkv__envelope__unpack(&a.pb, len, data);
 *     ...                      (env is valid until the reset)
 *     arena_reset(&a);         (instead of free_unpacked)
 *     arena_free(&a);          (when the arena itself goes)
 *
 * An arena is not locked: one thread at a time.
 */
#ifndef RZKV_ARENA_H
#define RZKV_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/*
 * Under AddressSanitizer (gcc or clang) ARENA_POISONS is defined: the
 * free part of a block is poisoned and each piece is followed by a
 * poisoned gap, so an overrun of one piece is caught as it would be
 * between two mallocs.
 */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_POISONS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_POISONS 1
#endif
#endif

/* A reset arena keeps one block of up to this many bytes, unless its
 * keep says less. */
#define ARENA_KEEP_MAX  (64 * 1024)

struct arena_block;

struct arena {
    ProtobufCAllocator pb;      /* protobuf-c's view: arena_alloc, and a
                                 * free that does nothing */
    struct arena_block *head;   /* the block being filled; older ones
                                 * follow it */
    size_t want;                /* what the blocks added up to at the last
                                 * reset: the next block's size */
    size_t keep;                /* the most a reset keeps: ARENA_KEEP_MAX
                                 * from arena_init; a user may lower it */
};

void arena_init(struct arena *a);
/* n bytes aligned for any type, valid until the next reset; NULL if out
 * of memory.  n may be 0. */
void *arena_alloc(struct arena *a, size_t n);
/* Everything handed out is gone.  One block of up to a->keep bytes is
 * kept; if it took several, they are freed and the next block is made
 * their total size (up to a->keep), so an arena used for messages of one
 * size settles on one block. */
void arena_reset(struct arena *a);
/* Reset, and give the blocks back. */
void arena_free(struct arena *a);

#endif

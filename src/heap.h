/* heap.h - how many heap bytes the process has in use: what a leak grows, read without the
 * allocator's free lists and caches that make RSS swing by megabytes under load. */
#ifndef WSGATE_HEAP_H
#define WSGATE_HEAP_H
#include <stddef.h>

/* Bytes allocated and not yet freed, over every thread: glibc's arenas (mallinfo2: in-use
 * chunks plus mmapped ones), or, in a sanitizer build, the sanitizer's own allocator (glibc's
 * arenas are then unused, and what ASan holds in quarantine is freed memory, not counted). */
size_t heap_in_use(void);

/* Gives free heap pages back to the kernel: malloc_trim(0), or in an ASan build the
 * sanitizer's purge (its quarantine of freed chunks drained, free memory released), so that
 * RSS read after a trim measures wsgate, not the allocator's hold on freed memory. */
void heap_trim(void);

#endif

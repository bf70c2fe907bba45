/* heap.c - heap bytes in use (heap.h), for wsgate_heap_in_use_bytes. */
#include "heap.h"

#include <malloc.h>
#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HEAP_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HEAP_SANITIZER 1
#endif

#ifdef HEAP_SANITIZER
/* The sanitizer runtime's public interface (sanitizer/allocator_interface.h ships with clang,
 * not with gcc 12, whose libasan and libtsan export the same function). */
size_t __sanitizer_get_current_allocated_bytes(void);

/* Weak: ThreadSanitizer's runtime has no purge (the call is then left out). */
void __sanitizer_purge_allocator(void) __attribute__((weak));

size_t
heap_in_use(void)
{
	return __sanitizer_get_current_allocated_bytes();
}

void
heap_trim(void)
{
	if (__sanitizer_purge_allocator != NULL)
		__sanitizer_purge_allocator();
}
#else
size_t
heap_in_use(void)
{
	/* Walks every arena's bins under its lock: cheap at a scrape's pace, not per message. */
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

void
heap_trim(void)
{
	(void)malloc_trim(0);
}
#endif

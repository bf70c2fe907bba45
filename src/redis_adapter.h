/* redis_adapter.h - attaches a hiredis async context to a libevent base (in place of
 * redisLibeventAttach) with a bound on the size of one reply; the owner hears about it
 * through hooks. */
#ifndef WSGATE_REDIS_ADAPTER_H
#define WSGATE_REDIS_ADAPTER_H

#include <stdint.h>

#include <hiredis/async.h>

struct event_base;

/* Called with the owner's arg, which must outlive every context attached with it. */
struct redis_adapter_hooks {
	uint64_t max_reply; /* a bulk string announced larger is skipped, never buffered */
	/* ac is still the owner's live context (hiredis may have freed it in a callback). */
	int (*current)(void *arg, const redisAsyncContext *ac);
	void (*oversized)(void *arg, uint64_t len); /* a bulk of len bytes is being skipped */
	void (*progress)(void *arg);                /* bytes of a reply still incomplete came */
	/* The context cannot go on: the owner tears it down (never frees it here). */
	void (*failed)(void *arg, const char *why);
};

/* 0, or -1 (nothing attached: already attached, or ENOMEM). hiredis frees what this
 * allocates through ac->ev.cleanup. */
int redis_adapter_attach(redisAsyncContext *ac, struct event_base *base,
                         const struct redis_adapter_hooks *h, void *arg)
    __attribute__((warn_unused_result));

#endif

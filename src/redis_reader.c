/* redis_reader.c - hiredis' RESP reader with a bound on array lengths (redis_reader.h). */
#include "redis_reader.h"

#include <pthread.h>
#include <stdio.h>

static redisReplyObjectFunctions redis_reader_fns;
static void *(*redis_reader_array_default)(const redisReadTask *, int);
static pthread_once_t redis_reader_once = PTHREAD_ONCE_INIT;
static int redis_reader_ok;
/* The count this thread's last refusal saw, -1 when the last array was taken. hiredis words
 * every constructor failure "Out of memory" (REDIS_ERR_OOM), so the reason waits here for
 * redis_reader_error(); the reader that failed is the one its caller reads next, on this same
 * thread, since replies are parsed where they are read. */
static _Thread_local int redis_reader_refused = -1;

/* Refused before anything is allocated: hiredis then fails the reader ("out of memory"). */
static void *
redis_reader_array(const redisReadTask *task, int elements)
{
	if (elements > REDIS_READER_MAX_ELEMENTS) {
		redis_reader_refused = elements;
		return NULL;
	}
	redis_reader_refused = -1;
	return redis_reader_array_default(task, elements);
}

/* hiredis' own reply functions (static in hiredis.c) are reached through a reader it made. */
static void
redis_reader_init(void)
{
	redisReader *r = redisReaderCreate();

	if (r == NULL || r->fn == NULL || r->fn->createArray == NULL) {
		if (r != NULL)
			redisReaderFree(r);
		return;
	}
	redis_reader_fns = *r->fn;
	redis_reader_array_default = r->fn->createArray;
	redis_reader_fns.createArray = redis_reader_array;
	redisReaderFree(r);
	redis_reader_ok = 1;
}

redisReader *
redis_reader_new(void)
{
	if (pthread_once(&redis_reader_once, redis_reader_init) != 0 || !redis_reader_ok)
		return NULL;
	return redisReaderCreateWithFunctions(&redis_reader_fns);
}

const char *
redis_reader_error(const redisReader *r, char *buf, size_t len)
{
	if (r->err == REDIS_ERR_OOM && redis_reader_refused >= 0)
		snprintf(buf, len, "an array of %d elements (the bound is %d)",
		         redis_reader_refused, REDIS_READER_MAX_ELEMENTS);
	else
		snprintf(buf, len, "%s", r->errstr);
	redis_reader_refused = -1;
	return buf;
}

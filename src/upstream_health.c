/* upstream_health.c - the process-wide table behind upstream_health.h. It is process state by
 * nature (every worker balances over the same backends), so it is one table under one mutex;
 * entries are looked up when a pool is made (rare), and read or changed under the lock when a
 * backend is picked, fails, recovers or gains a session (per proxied connection, not per
 * message). */
#include "upstream_health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t upstream_health_mu = PTHREAD_MUTEX_INITIALIZER;
static struct upstream_health *upstream_health_list;

void
upstream_health_lock(void)
{
	pthread_mutex_lock(&upstream_health_mu);
}

void
upstream_health_unlock(void)
{
	pthread_mutex_unlock(&upstream_health_mu);
}

static int
upstream_health_same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

enum upstream_fail_verdict
upstream_health_fail(struct upstream_health *h, uint64_t max_fails, uint64_t now,
                     uint64_t fail_timeout_ms)
{
	int was_down = h->state == UPSTREAM_DOWN;

	if (h->fails < UINT64_MAX)
		h->fails++;
	if (max_fails == 0 || h->fails < max_fails)
		return UPSTREAM_FAIL_COUNTED;
	h->state = UPSTREAM_DOWN;
	/* A probe's verdict (down until a probe passes) is not shortened by a client's. */
	if (h->down_until_ms != UINT64_MAX || !was_down)
		h->down_until_ms = now + fail_timeout_ms;
	return was_down ? UPSTREAM_FAIL_STILL_DOWN : UPSTREAM_FAIL_DOWN;
}

int
upstream_health_succeed(struct upstream_health *h)
{
	int was_down = h->state != UPSTREAM_UP;

	h->fails = 0;
	h->state = UPSTREAM_UP;
	h->down_until_ms = 0;
	return was_down;
}

struct upstream_health *
upstream_health_get(const char *route, const char *url)
{
	struct upstream_health *h;

	upstream_health_lock();
	for (h = upstream_health_list; h != NULL; h = h->next)
		if (strcmp(h->route, route) == 0 && upstream_health_same(h->url, url))
			break;
	if (h == NULL && (h = calloc(1, sizeof(*h))) != NULL) {
		h->route = strdup(route);
		h->url = url != NULL ? strdup(url) : NULL;
		if (h->route == NULL || (url != NULL && h->url == NULL)) {
			free(h->route);
			free(h->url);
			free(h);
			h = NULL;
		} else {
			h->state = UPSTREAM_UP;
			h->next = upstream_health_list;
			upstream_health_list = h;
		}
	}
	upstream_health_unlock();
	return h;
}

int
upstream_health_read(const char *route, const char *url, struct upstream_health *out)
{
	struct upstream_health *h;

	upstream_health_lock();
	for (h = upstream_health_list; h != NULL; h = h->next)
		if (strcmp(h->route, route) == 0 && upstream_health_same(h->url, url))
			break;
	if (h != NULL)
		*out = *h;
	upstream_health_unlock();
	return h != NULL ? 0 : -1;
}

void
upstream_health_free_all(void)
{
	struct upstream_health *h;

	upstream_health_lock();
	while ((h = upstream_health_list) != NULL) {
		upstream_health_list = h->next;
		free(h->route);
		free(h->url);
		free(h);
	}
	upstream_health_unlock();
}

/* broker_local.c - the embedded broker used without [redis]: one process is the whole world,
 * so subscribing is bookkeeping the hub already does and publishing is a direct delivery. */
#include <stdlib.h>

#include "broker.h"
#include "hub.h"

static int
broker_local_subscribe(struct broker *b, const char *channel, size_t len)
{
	(void)b;
	(void)channel;
	(void)len;
	return 0;
}

static void
broker_local_unsubscribe(struct broker *b, const char *channel, size_t len)
{
	(void)b;
	(void)channel;
	(void)len;
}

static int
broker_local_publish(struct broker *b, const char *channel, size_t clen, const uint8_t *data,
    size_t len)
{
	hub_deliver(b->hub, channel, clen, data, len);
	return 0;
}

static int
broker_local_ready(struct broker *b)
{
	(void)b;
	return 1;
}

static void
broker_local_free(struct broker *b)
{
	free(b);
}

static const struct broker_ops broker_local_ops = {
	.name = "local",
	.subscribe = broker_local_subscribe,
	.unsubscribe = broker_local_unsubscribe,
	.publish = broker_local_publish,
	.ready = broker_local_ready,
	.free = broker_local_free,
};

struct broker *
broker_local_new(struct hub *hub)
{
	struct broker *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->ops = &broker_local_ops;
	b->hub = hub;
	return b;
}

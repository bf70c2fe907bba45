/* broker_redis_stub.c - TEMPORARY: stands in for broker_redis.c until it lands. */
#include <stddef.h>
#include "broker.h"
#include "log.h"

struct broker *
broker_redis_new(struct hub *hub, struct event_base *base, const struct config *cfg,
    const char *instance_id)
{
	(void)hub; (void)base; (void)cfg; (void)instance_id;
	log_warnx("redis broker not built yet");
	return NULL;
}

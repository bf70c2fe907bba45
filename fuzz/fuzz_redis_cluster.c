/* fuzz_redis_cluster.c - libFuzzer target for what a Redis Cluster node answers wsgate: the
 * input, read by hiredis' redisReader as the map link reads it, as CLUSTER SLOTS replies
 * (redis_cluster_parse_slots), and as MOVED/ASK error text (redis_cluster_redirect). Checks:
 * no crash, a map accepted names only masters it holds and covers what it says, every master
 * of it gets a canary tag on its own slots, a redirection accepted has a slot < 16384, a
 * NUL-terminated host and a port 1..65535, and hash slots stay below 16384. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_cluster.h"
#include "redis_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_map(const redisReply *r, struct redis_cluster_map *m)
{
	const char *why = NULL;
	int covered = redis_cluster_parse_slots(r, m, &why), n = 0;
	char tag[16];

	if (covered < 0) {
		if (why == NULL)
			abort();
		return;
	}
	for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++) {
		if (m->slot[s] == REDIS_CLUSTER_NONE)
			continue;
		if (m->slot[s] >= m->nnodes)
			abort();
		n++;
	}
	if (n != covered || m->nnodes > REDIS_CLUSTER_MAX_NODES)
		abort();
	for (size_t i = 0; i < m->nnodes; i++) {
		if (m->nodes[i].host[0] == '\0' || m->nodes[i].port < 1 ||
		    m->nodes[i].port > 65535 || m->nodes[i].nreplicas > REDIS_CLUSTER_MAX_REPLICAS)
			abort();
		if (redis_cluster_find_node(m, m->nodes[i].id) < 0 && m->nodes[i].id[0] != '\0')
			abort();
		/* Only masters that serve a slot get a tag (the broker asks for no other). */
		for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++)
			if (m->slot[s] == i) {
				if (redis_cluster_tag_for(m, i, tag, sizeof(tag)) < 0 ||
				    m->slot[redis_cluster_keyslot(tag, strlen(tag))] != i)
					abort();
				break;
			}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct redis_cluster_map m;
	redisReader *rd;
	void *r = NULL;
	char host[256];
	unsigned slot;
	int ask, port, rc;

	if (redis_cluster_keyslot((const char *)data, size) >= REDIS_CLUSTER_SLOTS)
		abort();
	rc = redis_cluster_redirect((const char *)data, size, &ask, &slot, host, sizeof(host),
	                            &port);
	if (rc == 1 && (slot >= REDIS_CLUSTER_SLOTS || port < 1 || port > 65535 ||
	                strlen(host) >= sizeof(host) || host[0] == '\0' || (ask != 0 && ask != 1)))
		abort();
	if ((rd = redis_reader_new()) == NULL)
		return 0;
	/* The map link bounds a reply at 4 MiB; the reader takes what it is fed. */
	if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
		while (redisReaderGetReply(rd, &r) == REDIS_OK && r != NULL) {
			check_map(r, &m);
			freeReplyObject(r);
			r = NULL;
		}
	}
	redisReaderFree(rd);
	return 0;
}

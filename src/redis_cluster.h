/* redis_cluster.h - pure pieces of Redis Cluster: the hash slot of a key or shard channel
 * (CRC16-XMODEM mod 16384, hash tags "{...}", as the cluster specification defines them), the
 * slot map read from CLUSTER SLOTS, and the MOVED/ASK redirections. No sockets, no libevent:
 * a Check suite (check_redis_cluster) and a fuzzer (fuzz_redis_cluster) drive them. */
#ifndef WSGATE_REDIS_CLUSTER_H
#define WSGATE_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define REDIS_CLUSTER_SLOTS 16384
#define REDIS_CLUSTER_MAX_NODES 64    /* masters in one map; more is refused, not truncated */
#define REDIS_CLUSTER_MAX_REDIRECTS 5 /* MOVED/ASK followed per publish, then refused */
#define REDIS_CLUSTER_MAX_REPLICAS 8  /* replica ids kept per master (to follow a failover) */
#define REDIS_CLUSTER_NONE 0xffffu    /* a slot no master serves */
#define REDIS_CLUSTER_ID_MAX 64

struct redis_cluster_node {
	char host[256];
	int port;
	char id[REDIS_CLUSTER_ID_MAX + 1]; /* "" when the reply had none */
	size_t nreplicas;
	char replicas[REDIS_CLUSTER_MAX_REPLICAS][REDIS_CLUSTER_ID_MAX + 1];
};

struct redis_cluster_map {
	uint16_t slot[REDIS_CLUSTER_SLOTS]; /* index into nodes, or REDIS_CLUSTER_NONE */
	size_t nnodes;
	struct redis_cluster_node nodes[REDIS_CLUSTER_MAX_NODES];
};

/* CRC16-XMODEM (polynomial 0x1021, initial 0): "123456789" gives 0x31c3. */
uint16_t redis_cluster_crc16(const uint8_t *p, size_t n);
/* The slot of a key or shard channel: the part between the first '{' and the first '}' after
 * it when that part is not empty, else the whole name. */
unsigned redis_cluster_keyslot(const char *key, size_t n);

/* Fills m from a CLUSTER SLOTS reply: an array of [start, end, [host, port, id, ...],
 * [replica...]...]. Returns the number of slots covered (0..16384), or -1 with *why (the map
 * is then unspecified). Overlapping ranges, a bad range or port, an empty host: -1. */
int redis_cluster_parse_slots(const redisReply *r, struct redis_cluster_map *m, const char **why);

/* An error reply "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>": 1 with *ask, *slot,
 * host and port filled; 0 when it is another error; -1 when it says MOVED/ASK malformed. */
int redis_cluster_redirect(const char *s, size_t n, int *ask, unsigned *slot, char *host,
                           size_t hostsz, int *port);

/* Where a publish held after a redirect is sent again (a master's index), or
 * REDIS_CLUSTER_NONE to wait. named: the master at the address the redirect gave (NONE: not in
 * the map yet); from: the master that refused it (NONE: not a redirected one but a later
 * publish of the slot held behind one: it goes where the map says); map: the slot's master in
 * the map now; held_ms: how long it waited, wait_ms: how long a map that does not follow is
 * waited for. ASK goes to named at once (the map names the old master until the migration
 * ends). MOVED waits for a map that no longer names from: the applied map is what subscribes
 * the slot's channels on the new master, so the message sent before would reach no one. */
unsigned redis_cluster_resend_to(int ask, unsigned from, unsigned named, unsigned map,
                                 uint64_t held_ms, uint64_t wait_ms);

/* The index in m of the master named id or whose replica id was ("" never matches), or -1. */
int redis_cluster_find_node(const struct redis_cluster_map *m, const char *id);

/* A hash tag (written into tag, NUL-terminated, at most 15 characters) whose slot the master
 * node of m serves, so that "...{tag}" names a channel on that master; -1 when it serves none. */
int redis_cluster_tag_for(const struct redis_cluster_map *m, size_t node, char *tag, size_t n);

#endif

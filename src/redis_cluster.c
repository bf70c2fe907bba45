/* redis_cluster.c - hash slots (CRC16 of the Redis cluster specification), the CLUSTER SLOTS
 * parser and MOVED/ASK redirections; pure, see redis_cluster.h. Everything here reads replies
 * a peer sent: every element's type and range is checked, nothing is trusted. */
#include "redis_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint16_t
redis_cluster_crc16(const uint8_t *p, size_t n)
{
	uint16_t crc = 0;

	/* Bit by bit: keys and channel names are short, and a table would be 512 bytes of
	 * constants to get wrong. */
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc =
			    (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned
redis_cluster_keyslot(const char *key, size_t n)
{
	const char *open = memchr(key, '{', n), *close;

	if (open != NULL) {
		size_t rest = n - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1)
			return redis_cluster_crc16((const uint8_t *)open + 1,
			                           (size_t)(close - open - 1)) &
			       (REDIS_CLUSTER_SLOTS - 1);
	}
	return redis_cluster_crc16((const uint8_t *)key, n) & (REDIS_CLUSTER_SLOTS - 1);
}

static int
redis_cluster_copy(char *dst, size_t dstsz, const redisReply *r)
{
	if (r->type != REDIS_REPLY_STRING || r->len >= dstsz || memchr(r->str, '\0', r->len))
		return -1;
	memcpy(dst, r->str, r->len);
	dst[r->len] = '\0';
	return 0;
}

/* [host, port, id, ...]: the node's id is optional (Redis < 4), extra fields ignored. */
static int
redis_cluster_node_of(const redisReply *r, char *host, size_t hostsz, int *port, char *id)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
	    redis_cluster_copy(host, hostsz, r->element[0]) < 0 || host[0] == '\0' ||
	    r->element[1]->type != REDIS_REPLY_INTEGER || r->element[1]->integer < 1 ||
	    r->element[1]->integer > 65535)
		return -1;
	*port = (int)r->element[1]->integer;
	id[0] = '\0';
	if (r->elements >= 3 && redis_cluster_copy(id, REDIS_CLUSTER_ID_MAX + 1, r->element[2]) < 0)
		return -1;
	return 0;
}

/* The index of the master at host:port with id in m, added when new; -1 when m is full. */
static int
redis_cluster_intern(struct redis_cluster_map *m, const char *host, int port, const char *id)
{
	for (size_t i = 0; i < m->nnodes; i++)
		if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0 &&
		    strcmp(m->nodes[i].id, id) == 0)
			return (int)i;
	if (m->nnodes == REDIS_CLUSTER_MAX_NODES)
		return -1;
	memset(&m->nodes[m->nnodes], 0, sizeof(m->nodes[0]));
	snprintf(m->nodes[m->nnodes].host, sizeof(m->nodes[0].host), "%s", host);
	m->nodes[m->nnodes].port = port;
	snprintf(m->nodes[m->nnodes].id, sizeof(m->nodes[0].id), "%s", id);
	return (int)m->nnodes++;
}

int
redis_cluster_parse_slots(const redisReply *r, struct redis_cluster_map *m, const char **why)
{
	char host[256], id[REDIS_CLUSTER_ID_MAX + 1];
	int port, covered = 0;

	for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++)
		m->slot[s] = REDIS_CLUSTER_NONE;
	m->nnodes = 0;
	if (r->type != REDIS_REPLY_ARRAY) {
		*why = "CLUSTER SLOTS did not answer an array";
		return -1;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		long long lo, hi;
		int node;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER) {
			*why = "a slot range is not [start, end, master, ...]";
			return -1;
		}
		lo = e->element[0]->integer;
		hi = e->element[1]->integer;
		if (lo < 0 || hi < lo || hi >= REDIS_CLUSTER_SLOTS) {
			*why = "a slot range out of 0..16383";
			return -1;
		}
		if (redis_cluster_node_of(e->element[2], host, sizeof(host), &port, id) < 0) {
			*why = "a master is not [host, port, id]";
			return -1;
		}
		if ((node = redis_cluster_intern(m, host, port, id)) < 0) {
			*why = "more masters than wsgate follows (64)";
			return -1;
		}
		for (size_t k = 3; k < e->elements; k++) {
			struct redis_cluster_node *n = &m->nodes[node];
			char rhost[256], rid[REDIS_CLUSTER_ID_MAX + 1];
			int rport, dup = 0;

			if (redis_cluster_node_of(e->element[k], rhost, sizeof(rhost), &rport,
			                          rid) < 0) {
				*why = "a replica is not [host, port, id]";
				return -1;
			}
			for (size_t j = 0; j < n->nreplicas; j++)
				dup |= strcmp(n->replicas[j], rid) == 0;
			if (!dup && rid[0] != '\0' && n->nreplicas < REDIS_CLUSTER_MAX_REPLICAS)
				memcpy(n->replicas[n->nreplicas++], rid, sizeof(rid));
		}
		for (long long s = lo; s <= hi; s++) {
			if (m->slot[s] != REDIS_CLUSTER_NONE) {
				*why = "two ranges claim one slot";
				return -1;
			}
			m->slot[s] = (uint16_t)node;
			covered++;
		}
	}
	return covered;
}

int
redis_cluster_redirect(const char *s, size_t n, int *ask, unsigned *slot, char *host, size_t hostsz,
                       int *port)
{
	size_t skip, i, colon;
	unsigned long v = 0;

	if (n >= 6 && memcmp(s, "MOVED ", 6) == 0)
		*ask = 0, skip = 6;
	else if (n >= 4 && memcmp(s, "ASK ", 4) == 0)
		*ask = 1, skip = 4;
	else
		return 0;
	for (i = skip; i < n && s[i] >= '0' && s[i] <= '9' && i - skip < 6; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	if (i == skip || i >= n || s[i] != ' ' || v >= REDIS_CLUSTER_SLOTS)
		return -1;
	*slot = (unsigned)v;
	i++;
	/* host:port, the port after the last ':' (an IPv6 address has several) */
	for (colon = n; colon > i && s[colon - 1] != ':'; colon--)
		;
	if (colon <= i + 1 || colon - 1 - i >= hostsz || colon == n)
		return -1;
	v = 0;
	for (size_t k = colon; k < n; k++) {
		if (s[k] < '0' || s[k] > '9' || k - colon >= 5)
			return -1;
		v = v * 10 + (unsigned long)(s[k] - '0');
	}
	if (v < 1 || v > 65535 || memchr(s + i, '\0', colon - 1 - i) != NULL)
		return -1;
	memcpy(host, s + i, colon - 1 - i);
	host[colon - 1 - i] = '\0';
	*port = (int)v;
	return 1;
}

int
redis_cluster_find_node(const struct redis_cluster_map *m, const char *id)
{
	if (id[0] == '\0')
		return -1;
	for (size_t i = 0; i < m->nnodes; i++) {
		if (strcmp(m->nodes[i].id, id) == 0)
			return (int)i;
		for (size_t j = 0; j < m->nodes[i].nreplicas; j++)
			if (strcmp(m->nodes[i].replicas[j], id) == 0)
				return (int)i;
	}
	return -1;
}

int
redis_cluster_tag_for(const struct redis_cluster_map *m, size_t node, char *tag, size_t n)
{
	/* Tags 0, 1, 2...: CRC16 spreads them evenly, so a master with 1/k of the slots is hit
	 * after about k tries; 1,000,000 covers every slot many times over. */
	for (unsigned long i = 0; i < 1000000; i++) {
		int len = snprintf(tag, n, "%lu", i);

		if (len < 0 || (size_t)len >= n)
			return -1;
		if (m->slot[redis_cluster_keyslot(tag, (size_t)len)] == node)
			return 0;
	}
	return -1;
}

unsigned
redis_cluster_resend_to(int ask, unsigned from, unsigned named, unsigned map, uint64_t held_ms,
                        uint64_t wait_ms)
{
	if (from == REDIS_CLUSTER_NONE)
		return map;
	if (ask)
		return named;
	if (map != REDIS_CLUSTER_NONE && map != from)
		return map;
	/* A map that does not follow: the node named (the redirect bound stops a loop). */
	return held_ms >= wait_ms ? named : REDIS_CLUSTER_NONE;
}

/* broker_redis_history.c - channel history in Redis: the "wsgate" function library (loaded
 * with FUNCTION LOAD REPLACE on every pub link: wsgate_publish appends to the channel's stream
 * and publishes the message with its position in one atomic step; wsgate_range reads a range
 * back), publishing through it, and range fetches whose callbacks are failed, not forgotten,
 * when the link goes down. */
#include "broker_redis_history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Keys: wsgate:{CHANNEL}:s (the stream, entry ids OFFSET-1, field d) and wsgate:{CHANNEL}:m
 * (epoch, seq: the last offset, maxlen), hash-tagged by the channel so that a Redis Cluster
 * keeps them on the channel's slot; KEYS[1] is the channel and names that slot. */
const char broker_redis_history_lua[] =
    "#!lua name=wsgate\n"
    "-- Channel history for wsgate (README, \"Delivery guarantees\"). KEYS[1] is the channel "
    "(with\n"
    "-- wsgate's channel_prefix): the keys used are hash-tagged by it, so they share its slot.\n"
    "local function keys_of(ch)\n"
    "  return 'wsgate:{' .. ch .. '}:s', 'wsgate:{' .. ch .. '}:m'\n"
    "end\n"
    "\n"
    "-- wsgate_publish channel payload [maxlen [ttl_ms [s]]] -> \"E:O\"\n"
    "-- Appends to the channel's stream and publishes \"\\0WSGp\" E \":\" O \"\\n\" payload, "
    "atomically.\n"
    "-- A replica promoted in a failover (Sentinel) holds what the old master had replicated;\n"
    "-- what it had not is lost, and its offsets were delivered already. After a promotion\n"
    "-- (this node's previous replication id is the one that published last) the offsets\n"
    "-- skip by FENCE, so no new message reuses one; instances tell their clients the\n"
    "-- skipped range as a gap. A restart with persistence keeps the offsets as they are.\n"
    "local FENCE = " BROKER_REDIS_HISTORY_FENCE_STR "\n"
    "local function fence(m)\n"
    "  local info = redis.call('INFO', 'replication')\n"
    "  local rid = string.match(info, 'master_replid:(%x+)')\n"
    "  local rid2 = string.match(info, 'master_replid2:(%x+)')\n"
    "  local prev = redis.call('HGET', m, 'rid')\n"
    "  if rid and prev ~= rid then\n"
    "    if prev and prev == rid2 then\n"
    "      redis.call('HINCRBY', m, 'seq', FENCE)\n"
    "    end\n"
    "    redis.call('HSET', m, 'rid', rid)\n"
    "  end\n"
    "end\n"
    "\n"
    "local function publish(keys, args)\n"
    "  local ch = keys[1]\n"
    "  local s, m = keys_of(ch)\n"
    "  local e = redis.call('HGET', m, 'epoch')\n"
    "  if not e then\n"
    "    -- first use, or the history was lost: a new epoch, and no stale stream under it\n"
    "    local t = redis.call('TIME')\n"
    "    e = string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))\n"
    "    redis.call('DEL', s)\n"
    "    redis.call('HSET', m, 'epoch', e, 'seq', 0)\n"
    "  end\n"
    "  fence(m)\n"
    "  local maxlen = tonumber(args[2] or '')\n"
    "  if maxlen then\n"
    "    redis.call('HSET', m, 'maxlen', maxlen)\n"
    "  else\n"
    "    maxlen = tonumber(redis.call('HGET', m, 'maxlen') or '') or 1000\n"
    "  end\n"
    "  local off = redis.call('HINCRBY', m, 'seq', 1)\n"
    "  redis.call('XADD', s, 'MAXLEN', '~', maxlen, off .. '-1', 'd', args[1])\n"
    "  local pos = e .. ':' .. off\n"
    "  -- args[4] 's': a Redis Cluster, where the channel is a shard channel of the same slot\n"
    "  local cmd = 'PUBLISH'\n"
    "  if args[4] == 's' then\n"
    "    cmd = 'SPUBLISH'\n"
    "  end\n"
    "  redis.call(cmd, ch, '\\0WSGp' .. pos .. '\\n' .. args[1])\n"
    "  local ttl = tonumber(args[3] or '') or 0\n"
    "  if ttl > 0 then\n"
    "    redis.call('PEXPIRE', s, ttl)\n"
    "    redis.call('PEXPIRE', m, ttl)\n"
    "  end\n"
    "  return pos\n"
    "end\n"
    "\n"
    "-- wsgate_range channel from count [epoch] -> {epoch, first, last, off, data, ...}\n"
    "-- epoch \"\" when the channel has no history; first: oldest offset kept (last + 1: none).\n"
    "local function range(keys, args)\n"
    "  local s, m = keys_of(keys[1])\n"
    "  local e = redis.call('HGET', m, 'epoch')\n"
    "  if not e then\n"
    "    return {'', 1, 0}\n"
    "  end\n"
    "  local last = tonumber(redis.call('HGET', m, 'seq'))\n"
    "  local first = last + 1\n"
    "  local h = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)\n"
    "  if h[1] then\n"
    "    first = tonumber(string.match(h[1][1], '^(%d+)'))\n"
    "  end\n"
    "  local out = {e, first, last}\n"
    "  local from = tonumber(args[1]) or 1\n"
    "  if args[3] and args[3] ~= e then\n"
    "    from = first -- a position of another epoch: everything kept is new to the reader\n"
    "  end\n"
    "  if from < first then\n"
    "    from = first\n"
    "  end\n"
    "  local r = redis.call('XRANGE', s, from .. '-0', '+', 'COUNT', tonumber(args[2]) or 1000)\n"
    "  for _, ent in ipairs(r) do\n"
    "    out[#out + 1] = string.match(ent[1], '^(%d+)')\n"
    "    out[#out + 1] = ent[2][2]\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "\n"
    "redis.register_function('wsgate_publish', publish)\n"
    "redis.register_function{function_name = 'wsgate_range', callback = range,\n"
    "  flags = {'no-writes'}}\n";

struct broker_redis_fetch {
	TAILQ_ENTRY(broker_redis_fetch) entry;
	struct broker_redis_history *h;
	broker_redis_fetch_fn fn;
	void *arg; /* NULL once cancelled: the reply is then only freed */
};

TAILQ_HEAD(broker_redis_fetch_list, broker_redis_fetch);

struct broker_redis_history {
	struct broker_redis_fetch_list pending; /* sent, unanswered, in send order */
	int load_warned;
};

struct broker_redis_history *
broker_redis_history_new(void)
{
	struct broker_redis_history *h = calloc(1, sizeof(*h));

	if (h != NULL)
		TAILQ_INIT(&h->pending);
	return h;
}

/* Every fetch still waiting fails (fn with NULL): its owner must not wait forever. */
void
broker_redis_history_link_down(struct broker_redis_history *h)
{
	struct broker_redis_fetch *f;

	if (h == NULL)
		return;
	while ((f = TAILQ_FIRST(&h->pending)) != NULL) {
		TAILQ_REMOVE(&h->pending, f, entry);
		if (f->arg != NULL)
			f->fn(f->arg, NULL);
		free(f);
	}
}

void
broker_redis_history_free(struct broker_redis_history *h)
{
	struct broker_redis_fetch *f;

	if (h == NULL)
		return;
	/* At shutdown nobody waits any more: the owners are gone. */
	while ((f = TAILQ_FIRST(&h->pending)) != NULL) {
		TAILQ_REMOVE(&h->pending, f, entry);
		free(f);
	}
	free(h);
}

static void
broker_redis_history_on_load(struct redis_link *l, const redisReply *r, void *arg)
{
	struct broker_redis_history *h = arg;

	(void)l;
	if (r->type == REDIS_REPLY_ERROR && !h->load_warned) {
		h->load_warned = 1;
		log_warnx("redis: FUNCTION LOAD of the wsgate library refused: %.*s (history_size "
		          "needs Redis 7 functions; publishes on history channels will fail)",
		          (int)(r->len < 200 ? r->len : 200), r->str);
	}
}

int
broker_redis_history_load(struct broker_redis_history *h, struct redis_link *l)
{
	const char *argv[4] = {"FUNCTION", "LOAD", "REPLACE", broker_redis_history_lua};
	size_t lens[4] = {8, 4, 7, strlen(broker_redis_history_lua)};

	return redis_link_command(l, 4, argv, lens, broker_redis_history_on_load, h);
}

int
broker_redis_history_publish(struct redis_link *l, const char *channel, size_t clen,
                             const uint8_t *data, size_t len, size_t cap, uint64_t ttl_ms,
                             int sharded, redis_link_reply_fn fn, void *arg)
{
	char maxlen[24], ttl[24];
	const char *argv[8] = {
	    "FCALL", "wsgate_publish", "1", channel, (const char *)data, maxlen, ttl, "s"};
	size_t lens[8] = {5, 14, 1, clen, len, 0, 0, 1};

	lens[5] = (size_t)snprintf(maxlen, sizeof(maxlen), "%zu", cap);
	lens[6] = (size_t)snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
	return redis_link_command(l, sharded ? 8 : 7, argv, lens, fn, arg);
}

static void
broker_redis_history_on_range(struct redis_link *l, const redisReply *r, void *arg)
{
	struct broker_redis_fetch *f = arg;

	(void)l;
	TAILQ_REMOVE(&f->h->pending, f, entry);
	if (f->arg != NULL)
		f->fn(f->arg, r);
	free(f);
}

struct broker_redis_fetch *
broker_redis_history_fetch(struct broker_redis_history *h, struct redis_link *l,
                           const char *channel, size_t clen, uint64_t from, uint64_t count,
                           const char *epoch, broker_redis_fetch_fn fn, void *arg)
{
	struct broker_redis_fetch *f;
	char sfrom[24], scount[24];
	const char *argv[7] = {"FCALL_RO", "wsgate_range", "1", channel, sfrom, scount, epoch};
	size_t lens[7] = {8, 12, 1, clen, 0, 0, epoch != NULL ? strlen(epoch) : 0};

	if (l->state != REDIS_LINK_UP || (f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	lens[4] = (size_t)snprintf(sfrom, sizeof(sfrom), "%llu", (unsigned long long)from);
	lens[5] = (size_t)snprintf(scount, sizeof(scount), "%llu", (unsigned long long)count);
	f->h = h;
	f->fn = fn;
	f->arg = arg;
	if (redis_link_command(l, epoch != NULL ? 7 : 6, argv, lens, broker_redis_history_on_range,
	                       f) != 0) {
		free(f);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&h->pending, f, entry);
	return f;
}

void
broker_redis_history_cancel(struct broker_redis_fetch *f)
{
	if (f != NULL)
		f->arg = NULL;
}

/* Decimal of a reply that Lua may hand back as an integer or a string. */
static int
broker_redis_history_num(const redisReply *r, uint64_t *out)
{
	uint64_t v = 0;

	if (r->type == REDIS_REPLY_INTEGER) {
		if (r->integer < 0)
			return -1;
		*out = (uint64_t)r->integer;
		return 0;
	}
	if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
		return -1;
	for (size_t i = 0; i < r->len; i++) {
		if (r->str[i] < '0' || r->str[i] > '9' ||
		    v > (UINT64_MAX - (uint64_t)(r->str[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(r->str[i] - '0');
	}
	*out = v;
	return 0;
}

int
broker_redis_history_range_parse(const redisReply *r, struct broker_redis_range *out)
{
	memset(out, 0, sizeof(*out));
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    (r->elements - 3) % 2 != 0 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len > HISTORY_EPOCH_MAX ||
	    broker_redis_history_num(r->element[1], &out->first) < 0 ||
	    broker_redis_history_num(r->element[2], &out->last) < 0)
		return -1;
	if (r->element[0]->len > 0 && !history_epoch_valid(r->element[0]->str, r->element[0]->len))
		return -1;
	memcpy(out->epoch, r->element[0]->str, r->element[0]->len);
	out->epoch[r->element[0]->len] = '\0';
	out->r = r;
	out->n = (r->elements - 3) / 2;
	for (size_t i = 0; i < out->n; i++) {
		uint64_t off;
		if (broker_redis_history_num(r->element[3 + 2 * i], &off) < 0 ||
		    r->element[4 + 2 * i]->type != REDIS_REPLY_STRING)
			return -1;
	}
	return 0;
}

void
broker_redis_history_range_get(const struct broker_redis_range *rg, size_t i, uint64_t *off,
                               const uint8_t **data, size_t *len)
{
	const redisReply *o = rg->r->element[3 + 2 * i], *d = rg->r->element[4 + 2 * i];

	(void)broker_redis_history_num(o, off);
	*data = (const uint8_t *)d->str;
	*len = d->len;
}

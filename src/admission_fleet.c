/* admission_fleet.c - the process's admission pools and their Redis side. One pool for the
 * fleet budget ([gateway] admission_rate) and one per route with its own admission_rate; the
 * workers take tokens from a pool with an atomic decrement, never waiting; the main loop tops
 * each pool up every ADMISSION_TICK_MS from the fleet's budget in Redis (a Lua script run by
 * EVALSHA: a sliding window of a second, taken atomically, and note this instance as alive), or,
 * while Redis is down, from a local bucket at this instance's share of the budget.
 *
 * The Redis connection is its own redis_link (redis_link.c owns the bufferevent; hiredis is
 * only the codec), on the main loop: admission never waits behind pub/sub traffic. A reply
 * lives only during its callback; pools outlive the link (redis_link_free runs no hook). */
#include "admission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "redis_link.h"

/* The budget as a sliding window: the spends the instances reported within the last second
 * plus what every live instance's pool holds never exceed the rate, so whenever a pool spends
 * its tokens, no second admits more than the budget. A spend counts from its grant (held)
 * until a second after the report that names it (the next ask), at Redis' own clock (TIME),
 * so instances' clocks need not agree; Redis 7 replicates scripts by effects.
 * KEYS[1] the spends (sorted set, member instance:seq:n, score ms), KEYS[2] the live
 * instances, KEYS[3] what each holds (hash, instance -> "n:ms"); ARGV rate, want, instance,
 * live_ms, have, spent, seq. Returns {granted, live instances, budget left}. */
static const char admission_script[] =
    "local rate=tonumber(ARGV[1]) local want=tonumber(ARGV[2]) local inst=ARGV[3]\n"
    "local live_ms=tonumber(ARGV[4]) local have=tonumber(ARGV[5]) local spent=tonumber(ARGV[6])\n"
    "local t=redis.call('TIME') local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
    "redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf',now-1000)\n"
    "if spent>0 then redis.call('ZADD',KEYS[1],now,inst..':'..ARGV[7]..':'..spent) end\n"
    "local used=have\n"
    "for _,m in ipairs(redis.call('ZRANGE',KEYS[1],0,-1)) do\n"
    "  used=used+(tonumber(string.match(m,':(%d+)$')) or 0) end\n"
    "local h=redis.call('HGETALL',KEYS[3])\n"
    "for i=1,#h,2 do if h[i]~=inst then\n"
    "  local n,ts=string.match(h[i+1],'^(%d+):(%d+)$')\n"
    "  if n==nil or tonumber(ts)<now-live_ms then redis.call('HDEL',KEYS[3],h[i])\n"
    "  else used=used+tonumber(n) end end end\n"
    "local got=math.min(want,rate-used) if got<0 then got=0 end\n"
    "redis.call('HSET',KEYS[3],inst,tostring(have+got)..':'..tostring(now))\n"
    "redis.call('PEXPIRE',KEYS[1],60000) redis.call('PEXPIRE',KEYS[3],60000)\n"
    "redis.call('ZADD',KEYS[2],now,inst)\n"
    "redis.call('ZREMRANGEBYSCORE',KEYS[2],'-inf',now-live_ms)\n"
    "redis.call('PEXPIRE',KEYS[2],60000)\n"
    "local left=rate-used-got if left<0 then left=0 end\n"
    "return {got,redis.call('ZCARD',KEYS[2]),left}\n";

struct admission_pool {
	struct admission *a;
	char *path;                    /* the route's pattern; NULL for the fleet pool */
	char *key;                     /* its spends in Redis (the script's KEYS[1]) */
	char *held_key;                /* what each instance's pool holds (KEYS[3]) */
	uint64_t rate;                 /* budget, sessions a second, whole fleet */
	int64_t tokens;                /* atomic: workers take, the tick adds */
	int inflight;                  /* main loop: a script call is unanswered */
	uint64_t sent_ms;              /* main loop: last script call */
	uint64_t seq;                  /* main loop: script calls, names a report of spends */
	uint64_t reported;             /* main loop: admissions Redis has been told of */
	uint64_t reporting;            /* main loop: admissions the call in flight reports */
	struct admission_bucket local; /* Redis down: this instance's share */
	uint64_t admitted, refused;    /* atomic */
	uint64_t share;                /* atomic: this instance's rate a second (last tick) */
	uint64_t next_slot_ms;         /* atomic: the next free return slot (virtual queue) */
};

struct admission {
	struct event_base *base;
	struct admission_pool *pools; /* the fleet's first when admission_rate is set */
	size_t npools;
	struct admission_pool *fleet; /* NULL: no fleet-wide budget, routes only */
	uint64_t ramp_ms, share_cfg, retry_max_ms;
	uint64_t ready_ms; /* main loop: start, or Redis back: the ramp starts again */
	uint64_t live;     /* atomic: instances seen alive in Redis' set (this one included) */
	int redis_up;      /* atomic */
	int has_redis;
	char *host, *password, *live_key;
	int db;
	char instance[64];
	char sha[41]; /* hex SHA-1 of the script: EVALSHA's argument */
	uint64_t err_log_ms;
	struct event *tick;
	struct evdns_base *dns;
	struct redis_link link;
	int freeing;
	int leaving; /* main loop: draining, out of the fleet's budget (admission_leave) */
};

/* ---- taking tokens (any thread) ---- */

/* Several workers and the main loop write the same counters: a real read-modify-write, not
 * metrics.h's single-writer METRIC_ADD. Returns the new value. */
#define ADM_ADD(x, n) __atomic_add_fetch(&(x), (n), __ATOMIC_RELAXED)

static int
admission_pool_take(struct admission_pool *p)
{
	int64_t n = METRIC_GET(p->tokens);

	while (n > 0)
		if (__atomic_compare_exchange_n(&p->tokens, &n, n - 1, 0, __ATOMIC_RELAXED,
		                                __ATOMIC_RELAXED))
			return 1;
	return 0;
}

/* Per-thread xorshift for the jitter: seeded from RAND_bytes once per thread. */
static uint32_t
admission_rand(void)
{
	static __thread uint64_t s;

	if (s == 0 && (RAND_bytes((unsigned char *)&s, sizeof(s)) != 1 || s == 0))
		s = (uint64_t)(uintptr_t)&s ^ redis_link_now_ms() ^ 0x9e3779b97f4a7c15ull;
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return (uint32_t)(s >> 32);
}

/* A refused client's turn: the pool hands out return slots at this instance's share of the
 * rate, one after the other (a virtual queue), so a herd refused in the same instant comes
 * back spread at the rate the budget admits, not together; the hint is the slot plus jitter
 * within one slot. When nobody waits, the queue is empty and the hint is short. */
static uint64_t
admission_pool_slot(struct admission_pool *p)
{
	uint64_t now = redis_link_now_ms(), share = METRIC_GET(p->share);
	uint64_t next = METRIC_GET(p->next_slot_ms), after, slot, step;

	do
		slot = admission_slot(now, next, share, p->a->retry_max_ms, &after);
	while (!__atomic_compare_exchange_n(&p->next_slot_ms, &next, after, 0, __ATOMIC_RELAXED,
	                                    __ATOMIC_RELAXED));
	step = after - slot;
	slot = slot - now + admission_jitter_ms(step > 100 ? step : 100, admission_rand());
	return slot < p->a->retry_max_ms ? slot : p->a->retry_max_ms;
}

static struct admission_pool *
admission_route_pool(struct admission *a, const char *path)
{
	for (size_t i = 0; i < a->npools; i++)
		if (a->pools[i].path != NULL && strcmp(a->pools[i].path, path) == 0)
			return &a->pools[i];
	return NULL;
}

int
admission_admit(struct admission *a, const char *route_path, uint64_t *retry_ms)
{
	struct admission_pool *r, *refuser = NULL;

	if (a == NULL)
		return 0;
	r = route_path != NULL ? admission_route_pool(a, route_path) : NULL;
	if (a->fleet != NULL && !admission_pool_take(a->fleet))
		refuser = a->fleet;
	else if (r != NULL && !admission_pool_take(r)) {
		if (a->fleet != NULL) /* not used: back to the fleet pool */
			ADM_ADD(a->fleet->tokens, 1);
		refuser = r;
	}
	if (refuser != NULL) {
		ADM_ADD(refuser->refused, 1);
		*retry_ms = admission_pool_slot(refuser);
		return -1;
	}
	if (a->fleet != NULL)
		ADM_ADD(a->fleet->admitted, 1);
	if (r != NULL)
		ADM_ADD(r->admitted, 1);
	return 0;
}

/* The window returning clients are spread over: what the virtual queue already holds, at
 * least the minimum; a drain spreads its own closes over drain_window on top. */
static uint64_t
admission_window_now(const struct admission_pool *p)
{
	uint64_t now = redis_link_now_ms(), next = METRIC_GET(p->next_slot_ms);

	return next > now + ADMISSION_MIN_WINDOW_MS ? next - now : ADMISSION_MIN_WINDOW_MS;
}

uint64_t
admission_hint_ms(struct admission *a)
{
	uint64_t w = ADMISSION_MIN_WINDOW_MS;

	if (a != NULL && a->fleet != NULL)
		w = admission_window_now(a->fleet);
	return admission_jitter_ms(w, admission_rand());
}

void
admission_stats(const struct admission *a, struct admission_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->npools; i++) {
		out->admitted += METRIC_GET(a->pools[i].admitted);
		out->refused += METRIC_GET(a->pools[i].refused);
	}
	if (a->fleet != NULL) {
		/* With a fleet pool every admission passes it: its count is the session count. */
		out->admitted = METRIC_GET(a->fleet->admitted);
		out->pool = (uint64_t)METRIC_GET(a->fleet->tokens);
		out->window_ms = admission_window_now(a->fleet);
	}
	out->live = METRIC_GET(a->live);
	out->redis_up = (uint64_t)METRIC_GET(a->redis_up);
}

/* ---- the Redis side (main loop) ---- */

static void admission_send(struct admission_pool *p, uint64_t want, uint64_t have, int eval);

static void
admission_on_reply(struct redis_link *l, const redisReply *r, void *arg)
{
	struct admission_pool *p = arg;
	struct admission *a = p->a;
	uint64_t now = redis_link_now_ms();

	if (a->freeing)
		return;
	p->inflight = 0;
	/* Left the fleet since the call went out: Redis forgot what it granted (the HDEL came
	 * after it), so the tokens must not be spent here. */
	if (a->leaving)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		if (r->len >= 8 && strncmp(r->str, "NOSCRIPT", 8) == 0) {
			/* Redis restarted or flushed its script cache: EVAL loads it again. */
			admission_send(
			    p, 0, METRIC_GET(p->tokens) > 0 ? (uint64_t)METRIC_GET(p->tokens) : 0,
			    1);
			return;
		}
		if (now - a->err_log_ms >= 10000) {
			a->err_log_ms = now;
			log_warnx("admission: Redis refused the budget script: %.*s", (int)r->len,
			          r->str);
		}
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[2]->type != REDIS_REPLY_INTEGER || r->element[0]->integer < 0 ||
	    (uint64_t)r->element[0]->integer > p->rate + 1) {
		redis_link_fail(l, "admission script answered with an unexpected shape");
		return;
	}
	ADM_ADD(p->tokens, r->element[0]->integer);
	p->reported += p->reporting; /* recorded: not to be reported again */
	if (p == a->fleet || a->fleet == NULL)
		METRIC_SET(a->live,
		           (uint64_t)(r->element[1]->integer > 0 ? r->element[1]->integer : 1));
}

/* One script call for pool p asking want tokens, saying it holds have and what it admitted
 * since its last recorded report; eval: send the script's body (after NOSCRIPT), else its
 * SHA-1. have is read before the admissions: a token taken in between counts twice (safe),
 * never not at all. */
static void
admission_send(struct admission_pool *p, uint64_t want, uint64_t have, int eval)
{
	struct admission *a = p->a;
	char rate[24], wants[24], live_ms[24], haves[24], spent[24], seq[24];
	const char *argv[13];
	size_t lens[13];

	p->reporting = METRIC_GET(p->admitted) - p->reported;
	snprintf(rate, sizeof(rate), "%llu", (unsigned long long)p->rate);
	snprintf(wants, sizeof(wants), "%llu", (unsigned long long)want);
	snprintf(live_ms, sizeof(live_ms), "%d", ADMISSION_LIVE_MS);
	snprintf(haves, sizeof(haves), "%llu", (unsigned long long)have);
	snprintf(spent, sizeof(spent), "%llu", (unsigned long long)p->reporting);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)++p->seq);
	argv[0] = eval ? "EVAL" : "EVALSHA";
	argv[1] = eval ? admission_script : a->sha;
	argv[2] = "3";
	argv[3] = p->key;
	argv[4] = a->live_key;
	argv[5] = p->held_key;
	argv[6] = rate;
	argv[7] = wants;
	argv[8] = a->instance;
	argv[9] = live_ms;
	argv[10] = haves;
	argv[11] = spent;
	argv[12] = seq;
	for (int i = 0; i < 13; i++)
		lens[i] = strlen(argv[i]);
	if (redis_link_command(&a->link, 13, argv, lens, admission_on_reply, p) == 0) {
		p->inflight = 1;
		p->sent_ms = redis_link_now_ms();
	} else {
		redis_link_close(&a->link, "admission script could not be queued");
	}
}

static void
admission_on_handshake(struct redis_link *l, const redisReply *r, void *arg)
{
	struct admission *a = l->owner;
	const char *step = arg;
	char reason[256];

	if (a->freeing || l->state != REDIS_LINK_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "%s refused: %.*s", step, (int)r->len, r->str);
		redis_link_close(l, reason);
	} else if (r->type != REDIS_REPLY_STATUS) {
		snprintf(reason, sizeof(reason), "%s answered with reply type %d", step, r->type);
		redis_link_fail(l, reason);
	} else if (strcmp(step, "SELECT") == 0 && redis_link_up(l) == 0) {
		log_info("admission: Redis link up; ramping over %llu ms",
		         (unsigned long long)a->ramp_ms);
		METRIC_SET(a->redis_up, 1);
		a->ready_ms = redis_link_now_ms(); /* ready again: ramp again */
	}
}

static void
admission_link_connected(struct redis_link *l)
{
	struct admission *a = l->owner;
	const char *argv[2];
	size_t lens[2];
	char db[16];
	int rc = 0;

	if (a->freeing)
		return;
	if (a->password != NULL) {
		argv[0] = "AUTH", lens[0] = 4;
		argv[1] = a->password, lens[1] = strlen(a->password);
		rc = redis_link_command(l, 2, argv, lens, admission_on_handshake, "AUTH");
	}
	if (rc == 0) {
		argv[0] = "SELECT", lens[0] = 6;
		lens[1] = (size_t)snprintf(db, sizeof(db), "%d", a->db);
		argv[1] = db;
		rc = redis_link_command(l, 2, argv, lens, admission_on_handshake, "SELECT");
	}
	if (rc != 0)
		redis_link_close(l, "handshake could not be queued");
}

static void
admission_link_down(struct redis_link *l, enum redis_link_state was, char *extra, size_t n)
{
	struct admission *a = l->owner;

	(void)was;
	(void)extra;
	(void)n;
	if (a->freeing)
		return;
	if (METRIC_GET(a->redis_up))
		log_warnx("admission: Redis link down; each instance keeps its share");
	METRIC_SET(a->redis_up, 0);
	for (size_t i = 0; i < a->npools; i++)
		a->pools[i].inflight = 0; /* their replies will never come */
}

static void
admission_link_oversized(struct redis_link *l, uint64_t len)
{
	(void)len;
	redis_link_fail(l, "admission script answered with an oversized bulk");
}

static const struct redis_link_ops admission_link_ops = {
    .connected = admission_link_connected,
    .push = NULL, /* every reply answers a command */
    .down = admission_link_down,
    .oversized = admission_link_oversized,
};

/* ---- the tick (main loop) ---- */

static void
admission_pool_tick(struct admission *a, struct admission_pool *p, uint64_t now, double f)
{
	uint64_t want = admission_batch(p->rate, f), have, share;
	int64_t t = METRIC_GET(p->tokens);

	have = t > 0 ? (uint64_t)t : 0;
	if (METRIC_GET(a->redis_up)) {
		/* Ask for what the time since the last ask gave, up to the hold; and once a
		 * second anyway, so this instance stays in the live set the others divide the
		 * budget by and its spends leave the window. */
		if (p->inflight)
			return;
		want = admission_want(p->rate, f, METRIC_GET(a->live), have, now - p->sent_ms);
		if (want > 0 || now - p->sent_ms >= 1000)
			admission_send(p, want, have, 0);
		return;
	}
	/* Redis down: this instance's share, on the same ramp. */
	share = admission_share(p->rate, a->share_cfg, METRIC_GET(a->live));
	p->local.rate = (double)share * f;
	p->local.burst = admission_burst(share);
	if (have < want)
		ADM_ADD(p->tokens, (int64_t)admission_bucket_take(&p->local, want - have, now));
	else
		(void)admission_bucket_take(&p->local, 0, now); /* refill the clock only */
}

static void
admission_tick(evutil_socket_t fd, short what, void *arg)
{
	struct admission *a = arg;
	uint64_t now = redis_link_now_ms();
	double f = admission_ramp_factor(now - a->ready_ms, a->ramp_ms);

	(void)fd;
	(void)what;
	if (a->leaving)
		return; /* no more asks: the timer stays unarmed */
	/* Jittered period: instances ticking in a fixed phase would let the one just after the
	 * bucket's refill take every token while the other always finds a fraction. */
	redis_link_arm(a->tick, ADMISSION_TICK_MS / 2 + admission_rand() % ADMISSION_TICK_MS);
	for (size_t i = 0; i < a->npools; i++) {
		struct admission_pool *p = &a->pools[i];
		/* The pace of the return slots: what this instance admits now, on the ramp. */
		double share =
		    (double)admission_share(p->rate, a->share_cfg, METRIC_GET(a->live)) * f;

		METRIC_SET(p->share, share < 1 ? 1 : (uint64_t)share);
		admission_pool_tick(a, p, now, f);
	}
}

/* ---- leaving the fleet (drain) ---- */

static void
admission_on_leave(struct redis_link *l, const redisReply *r, void *arg)
{
	(void)l;
	(void)r;
	(void)arg; /* nothing to do: an error leaves the entries to expire (ADMISSION_LIVE_MS) */
}

void
admission_leave(struct admission *a)
{
	const char *argv[3];
	size_t lens[3];

	if (a == NULL || a->leaving)
		return;
	a->leaving = 1;
	for (size_t i = 0; i < a->npools; i++)
		METRIC_SET(a->pools[i].tokens, 0);
	if (!a->has_redis || !METRIC_GET(a->redis_up))
		return; /* the others stop counting it after ADMISSION_LIVE_MS */
	argv[0] = "ZREM";
	argv[1] = a->live_key;
	argv[2] = a->instance;
	for (int k = 0; k < 3; k++)
		lens[k] = strlen(argv[k]);
	if (redis_link_command(&a->link, 3, argv, lens, admission_on_leave, NULL) < 0)
		return;
	argv[0] = "HDEL";
	for (size_t i = 0; i < a->npools; i++) {
		argv[1] = a->pools[i].held_key;
		lens[1] = strlen(argv[1]);
		if (redis_link_command(&a->link, 3, argv, lens, admission_on_leave, NULL) < 0)
			return;
	}
	log_info("admission: draining: out of the fleet's budget");
}

/* ---- life ---- */

int
admission_config_differs(const struct config *a, const struct config *b)
{
	size_t na = 0, nb = 0;

	if (a->admission_rate != b->admission_rate ||
	    a->admission_ramp_ms != b->admission_ramp_ms ||
	    a->admission_share != b->admission_share ||
	    a->admission_retry_max_ms != b->admission_retry_max_ms)
		return 1;
	/* The same routes with the same budgets, by path. */
	for (size_t i = 0; i < a->nroutes; i++) {
		int same = 0;

		if (a->routes[i].admission_rate == 0)
			continue;
		na++;
		for (size_t j = 0; j < b->nroutes && !same; j++)
			same = strcmp(a->routes[i].path, b->routes[j].path) == 0 &&
			       b->routes[j].admission_rate == a->routes[i].admission_rate;
		if (!same)
			return 1;
	}
	for (size_t j = 0; j < b->nroutes; j++)
		nb += b->routes[j].admission_rate > 0;
	return na != nb;
}

static int
admission_pool_init(struct admission *a, struct admission_pool *p, const char *path, uint64_t rate,
                    const char *prefix, uint64_t now)
{
	size_t n;

	p->a = a;
	p->rate = rate;
	p->share = rate;
	admission_bucket_init(&p->local, 1, 1, now);
	p->local.tokens = 0; /* the ramp starts from nothing */
	/* New key names with the sliding window: an instance of the token-bucket version (a
	 * "wsgate:admission:fleet" hash) keeps its own budget during a rolling upgrade. */
	n = strlen(prefix) + strlen("wsgate:admission:route::spent") + (path ? strlen(path) : 5) +
	    1;
	if ((p->key = malloc(n)) == NULL || (p->held_key = malloc(n)) == NULL ||
	    (path != NULL && (p->path = strdup(path)) == NULL))
		return -1;
	if (path == NULL) {
		snprintf(p->key, n, "%swsgate:admission:fleet:spent", prefix);
		snprintf(p->held_key, n, "%swsgate:admission:fleet:held", prefix);
	} else {
		snprintf(p->key, n, "%swsgate:admission:route:%s:spent", prefix, path);
		snprintf(p->held_key, n, "%swsgate:admission:route:%s:held", prefix, path);
	}
	return 0;
}

struct admission *
admission_new(struct event_base *base, const struct config *cfg, const char *instance_id,
              int *failed)
{
	const char *prefix = cfg->redis.channel_prefix != NULL ? cfg->redis.channel_prefix : "";
	uint64_t now = redis_link_now_ms();
	unsigned char md[SHA_DIGEST_LENGTH];
	struct admission *a;
	size_t n = cfg->admission_rate > 0 ? 1 : 0;

	*failed = 0;
	for (size_t i = 0; i < cfg->nroutes; i++)
		n += cfg->routes[i].admission_rate > 0;
	if (n == 0)
		return NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (a->pools = calloc(n, sizeof(*a->pools))) == NULL)
		goto oom;
	a->base = base;
	a->ramp_ms = cfg->admission_ramp_ms;
	a->share_cfg = cfg->admission_share;
	a->retry_max_ms = cfg->admission_retry_max_ms;
	a->ready_ms = now;
	a->live = 1;
	a->db = cfg->redis.db;
	snprintf(a->instance, sizeof(a->instance), "%s", instance_id);
	if (cfg->admission_rate > 0) {
		a->fleet = &a->pools[a->npools++];
		if (admission_pool_init(a, a->fleet, NULL, cfg->admission_rate, prefix, now) < 0)
			goto oom;
	}
	for (size_t i = 0; i < cfg->nroutes; i++)
		if (cfg->routes[i].admission_rate > 0 &&
		    admission_pool_init(a, &a->pools[a->npools++], cfg->routes[i].path,
		                        cfg->routes[i].admission_rate, prefix, now) < 0)
			goto oom;
	SHA1((const unsigned char *)admission_script, strlen(admission_script), md);
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(a->sha + 2 * i, 3, "%02x", md[i]);
	if ((a->live_key = malloc(strlen(prefix) + 32)) == NULL)
		goto oom;
	sprintf(a->live_key, "%swsgate:admission:live", prefix);
	if ((a->tick = evtimer_new(base, admission_tick, a)) == NULL)
		goto oom;
	if (cfg->redis.enabled) {
		if ((a->host = strdup(cfg->redis.host)) == NULL ||
		    (cfg->redis.password != NULL &&
		     (a->password = strdup(cfg->redis.password)) == NULL) ||
		    redis_link_init(&a->link, "admission", 0, &admission_link_ops, a, base, &a->dns,
		                    a->host, atoi(cfg->redis.port), cfg->redis.connect_timeout_ms,
		                    cfg->redis.reconnect_max_ms, 4096) < 0)
			goto oom;
		a->has_redis = 1;
		redis_link_connect(&a->link);
	}
	admission_tick(-1, 0, a); /* the first tokens of the ramp now; arms the timer */
	log_info(
	    "admission: %llu new sessions/s for the fleet, %zu route budget(s), ramp %llu ms, %s",
	    (unsigned long long)cfg->admission_rate, a->npools - (a->fleet != NULL),
	    (unsigned long long)a->ramp_ms,
	    a->has_redis ? "shared through Redis" : "this instance alone");
	return a;
oom:
	log_warnx("admission: out of memory");
	*failed = 1;
	admission_free(a);
	return NULL;
}

void
admission_free(struct admission *a)
{
	if (a == NULL)
		return;
	a->freeing = 1;
	if (a->has_redis)
		redis_link_free(&a->link);
	if (a->tick != NULL)
		event_free(a->tick);
	if (a->dns != NULL)
		evdns_base_free(a->dns, 1);
	for (size_t i = 0; a->pools != NULL && i < a->npools; i++) {
		free(a->pools[i].key);
		free(a->pools[i].held_key);
		free(a->pools[i].path);
	}
	free(a->pools);
	free(a->host);
	free(a->password);
	free(a->live_key);
	free(a);
}

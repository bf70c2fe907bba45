/* broker_redis_fill.c - per channel: the last position this instance delivered, and while a
 * range read is in flight, the messages held behind it (in arrival order, bounded). The read
 * is the wsgate_range function on the owner's pub link; its messages go out first, then the
 * held ones are taken again in order (one of them may reveal a further jump). */
#include "broker_redis_fill.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "broker_redis_history.h"
#include "hash.h"
#include "history.h"
#include "log.h"
#include "metrics.h"

#define FILL_BUCKETS 1024
#define FILL_PAGE 512                     /* messages per range read */
#define FILL_HOLD_MAX (64u * 1024 * 1024) /* bytes held in all; beyond, delivered as they come */

struct fill_held {
	STAILQ_ENTRY(fill_held) entry;
	size_t len;
	uint8_t msg[];
};
STAILQ_HEAD(fill_held_list, fill_held);

struct fill_chan {
	struct fill_chan *next; /* bucket chain */
	uint64_t hash;
	struct broker_redis_fill *f;
	struct history_pos last;                /* newest delivered (epoch "": none yet) */
	char want_epoch[HISTORY_EPOCH_MAX + 1]; /* the epoch the read is about */
	struct broker_redis_fetch *fetch;       /* range read in flight, or NULL */
	int stale;   /* to be caught up once the pub link is back (counted) */
	int carried; /* last came from another master's fill: kept when subscribed */
	struct fill_held_list held;
	size_t len;
	char name[];
};

struct broker_redis_fill {
	struct fill_chan *buckets[FILL_BUCKETS];
	broker_redis_fill_deliver_fn deliver;
	void *arg;
	struct broker_redis_history *h;
	struct redis_link *link;
	uint64_t filling; /* channels with a read in flight or stale (atomic: /readyz) */
	size_t held_bytes;
};

struct broker_redis_fill *
broker_redis_fill_new(broker_redis_fill_deliver_fn fn, void *arg, struct broker_redis_history *h,
                      struct redis_link *l)
{
	struct broker_redis_fill *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->deliver = fn;
	f->arg = arg;
	f->h = h;
	f->link = l;
	return f;
}

static void
fill_chan_free(struct fill_chan *c)
{
	struct fill_held *m;

	if (c->fetch != NULL) {
		broker_redis_history_cancel(c->fetch);
		METRIC_SUB(c->f->filling, 1);
	}
	if (c->stale)
		METRIC_SUB(c->f->filling, 1);
	while ((m = STAILQ_FIRST(&c->held)) != NULL) {
		STAILQ_REMOVE_HEAD(&c->held, entry);
		c->f->held_bytes -= m->len;
		free(m);
	}
	free(c);
}

void
broker_redis_fill_free(struct broker_redis_fill *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < FILL_BUCKETS; i++) {
		struct fill_chan *c, *next;
		for (c = f->buckets[i]; c != NULL; c = next) {
			next = c->next;
			fill_chan_free(c);
		}
	}
	free(f);
}

static struct fill_chan *
fill_find(struct broker_redis_fill *f, const char *name, size_t len, int create)
{
	uint64_t h = hash_siphash(name, len);
	struct fill_chan *c;

	for (c = f->buckets[h % FILL_BUCKETS]; c != NULL; c = c->next)
		if (c->hash == h && c->len == len && memcmp(c->name, name, len) == 0)
			return c;
	if (!create || (c = calloc(1, sizeof(*c) + len + 1)) == NULL)
		return NULL;
	c->hash = h;
	c->f = f;
	c->len = len;
	memcpy(c->name, name, len);
	STAILQ_INIT(&c->held);
	c->next = f->buckets[h % FILL_BUCKETS];
	f->buckets[h % FILL_BUCKETS] = c;
	return c;
}

void
broker_redis_fill_forget(struct broker_redis_fill *f, const char *channel, size_t clen)
{
	uint64_t h = hash_siphash(channel, clen);
	struct fill_chan **pp;

	for (pp = &f->buckets[h % FILL_BUCKETS]; *pp != NULL; pp = &(*pp)->next) {
		struct fill_chan *c = *pp;
		if (c->hash == h && c->len == clen && memcmp(c->name, channel, clen) == 0) {
			*pp = c->next;
			fill_chan_free(c);
			return;
		}
	}
}

void
broker_redis_fill_confirmed(struct broker_redis_fill *f, const char *channel, size_t clen)
{
	struct fill_chan *c = fill_find(f, channel, clen, 0);

	if (c != NULL && c->carried)
		c->carried = 0;
	else
		broker_redis_fill_forget(f, channel, clen);
}

void
broker_redis_fill_carry(struct broker_redis_fill *to, struct broker_redis_fill *from,
                        const char *channel, size_t clen)
{
	struct fill_chan *src = fill_find(from, channel, clen, 0), *dst;

	if (src == NULL || src->last.epoch[0] == '\0' ||
	    (dst = fill_find(to, channel, clen, 1)) == NULL || dst->last.epoch[0] != '\0')
		return;
	dst->last = src->last;
	dst->carried = 1;
}

uint64_t
broker_redis_fill_pending(const struct broker_redis_fill *f)
{
	return f != NULL ? METRIC_GET(f->filling) : 0;
}

static void fill_reply(void *arg, const redisReply *r);

/* Reads c's range from offset from (of epoch) on; 0, or -1 when it cannot be sent. */
static int
fill_start(struct fill_chan *c, uint64_t from, const char *epoch)
{
	if ((c->fetch = broker_redis_history_fetch(c->f->h, c->f->link, c->name, c->len, from,
	                                           FILL_PAGE, epoch, fill_reply, c)) == NULL)
		return -1;
	memcpy(c->want_epoch, epoch, sizeof(c->want_epoch));
	METRIC_ADD(c->f->filling, 1);
	return 0;
}

/* The range cannot be read now: retried by broker_redis_fill_resync when the pub link is up. */
static void
fill_stale(struct fill_chan *c)
{
	if (!c->stale) {
		c->stale = 1;
		METRIC_ADD(c->f->filling, 1);
	}
}

static void
fill_hold(struct fill_chan *c, const uint8_t *msg, size_t len)
{
	struct fill_held *m;

	if (c->f->held_bytes + len > FILL_HOLD_MAX || (m = malloc(sizeof(*m) + len)) == NULL) {
		/* Out of room: it goes now; the hub tells subscribers what they miss. */
		log_warnx("redis: history fill of %s holds too much; delivering unfilled", c->name);
		c->f->deliver(c->f->arg, c->name, c->len, msg, len);
		return;
	}
	m->len = len;
	memcpy(m->msg, msg, len);
	c->f->held_bytes += len;
	STAILQ_INSERT_TAIL(&c->held, m, entry);
}

static void
fill_one(struct broker_redis_fill *f, struct fill_chan *c, const uint8_t *msg, size_t len)
{
	struct history_pos pos;
	const uint8_t *data;
	size_t dlen;
	int same;

	if (c->fetch != NULL || c->stale) {
		fill_hold(c, msg, len);
		return;
	}
	if (history_wire_decode(msg, len, &pos, &data, &dlen) != 1) {
		f->deliver(f->arg, c->name, c->len, msg, len); /* plain (or the hub's to judge) */
		return;
	}
	same = strcmp(c->last.epoch, pos.epoch) == 0;
	if (c->last.epoch[0] == '\0' || (same && pos.off == c->last.off + 1)) {
		c->last = pos;
		f->deliver(f->arg, c->name, c->len, msg, len);
		return;
	}
	if (same && pos.off <= c->last.off)
		return; /* delivered already (by a fill) */
	/* A jump or a new epoch: what is missing first (once the pub link is back, if it is
	 * not: the message waits with the others, readiness red). */
	if (fill_start(c, same ? c->last.off + 1 : 1, pos.epoch) < 0) {
		fill_stale(c);
		fill_hold(c, msg, len);
		return;
	}
	log_info("redis: %s jumped from %s:%llu to %s:%llu; reading the missing range", c->name,
	         c->last.epoch, (unsigned long long)c->last.off, pos.epoch,
	         (unsigned long long)pos.off);
	fill_hold(c, msg, len);
}

void
broker_redis_fill_incoming(struct broker_redis_fill *f, const char *channel, size_t clen,
                           const uint8_t *msg, size_t len)
{
	struct fill_chan *c;

	if (!history_wire_needs_escape(msg, len) || msg[HISTORY_WIRE_MAGIC_LEN] != 'p' ||
	    (c = fill_find(f, channel, clen, 1)) == NULL) {
		/* No position: nothing to keep in order. */
		if ((c = fill_find(f, channel, clen, 0)) == NULL || c->fetch == NULL) {
			f->deliver(f->arg, channel, clen, msg, len);
			return;
		}
	}
	fill_one(f, c, msg, len);
}

/* The held messages are taken again, in order (a later jump holds the rest again). */
static void
fill_release(struct broker_redis_fill *f, struct fill_chan *c)
{
	struct fill_held_list list = STAILQ_HEAD_INITIALIZER(list);
	struct fill_held *m;

	STAILQ_CONCAT(&list, &c->held);
	while ((m = STAILQ_FIRST(&list)) != NULL) {
		STAILQ_REMOVE_HEAD(&list, entry);
		f->held_bytes -= m->len;
		fill_one(f, c, m->msg, m->len);
		free(m);
	}
}

static void
fill_reply(void *arg, const redisReply *r)
{
	struct fill_chan *c = arg;
	struct broker_redis_fill *f = c->f;
	struct broker_redis_range rg;
	uint8_t hdr[HISTORY_WIRE_HDR_MAX], *buf = NULL;
	size_t bufcap = 0;

	c->fetch = NULL;
	METRIC_SUB(f->filling, 1);
	if (r == NULL) {
		/* The pub link went down: read again once it is back, the held ones wait. */
		fill_stale(c);
		return;
	}
	if (broker_redis_history_range_parse(r, &rg) < 0 || rg.epoch[0] == '\0') {
		log_warnx("redis: the missing range of %s could not be read; delivering what "
		          "follows (clients are told of the gap)",
		          c->name);
		c->last.epoch[0] = '\0';
		fill_release(f, c);
		return;
	}
	if (strcmp(c->last.epoch, rg.epoch) != 0) {
		memcpy(c->last.epoch, rg.epoch, sizeof(c->last.epoch));
		c->last.off = 0;
	}
	for (size_t i = 0; i < rg.n; i++) {
		struct history_pos pos;
		const uint8_t *d;
		size_t l, hl;

		broker_redis_history_range_get(&rg, i, &pos.off, &d, &l);
		if (pos.off <= c->last.off)
			continue;
		memcpy(pos.epoch, rg.epoch, sizeof(pos.epoch));
		hl = history_wire_header(&pos, hdr);
		if (hl + l > bufcap) {
			uint8_t *nb = realloc(buf, hl + l);
			if (nb == NULL)
				break;
			buf = nb;
			bufcap = hl + l;
		}
		memcpy(buf, hdr, hl);
		memcpy(buf + hl, d, l);
		c->last = pos;
		f->deliver(f->arg, c->name, c->len, buf, hl + l);
	}
	free(buf);
	/* More pages while the read was full and the channel went further. */
	if (rg.n == FILL_PAGE && c->last.off < rg.last &&
	    fill_start(c, c->last.off + 1, rg.epoch) == 0)
		return;
	fill_release(f, c);
}

void
broker_redis_fill_resync(struct broker_redis_fill *f, int all)
{
	for (size_t i = 0; i < FILL_BUCKETS; i++) {
		for (struct fill_chan *c = f->buckets[i]; c != NULL; c = c->next) {
			if (c->fetch != NULL || (!all && !c->stale))
				continue;
			if (c->last.epoch[0] == '\0') {
				/* Nothing delivered yet: nothing owed; what waits goes. */
				if (c->stale) {
					c->stale = 0;
					METRIC_SUB(f->filling, 1);
					fill_release(f, c);
				}
				continue;
			}
			if (fill_start(c, c->last.off + 1, c->last.epoch) == 0) {
				if (c->stale) {
					c->stale = 0;
					METRIC_SUB(f->filling, 1);
				}
			} else if (!c->stale) {
				/* Retried when the pub link is up; readiness waits. */
				c->stale = 1;
				METRIC_ADD(f->filling, 1);
			}
		}
	}
}

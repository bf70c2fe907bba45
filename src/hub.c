/* hub.c - a worker's channels: name -> local subscribers, reference counted so the broker holds
 * one subscription per channel however many clients listen; fan-out frames each message once
 * per opcode and hands the same bytes to every subscriber. */
#include "hub.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "hash.h"
#include "utf8.h"
#include "ws_frame.h"

#define HUB_BUCKETS_MIN 64

TAILQ_HEAD(hub_sub_list, hub_sub);

struct hub_channel {
	struct hub_channel *next;      /* bucket chain */
	uint64_t hash;
	size_t nsubs;
	uint64_t gen;                  /* this incarnation of the name (a confirmation names it) */
	uint8_t live;                  /* the broker confirmed it: a message published now arrives */
	struct hub_sub_list subs;
	size_t len;
	char name[];                   /* NUL-terminated */
};

struct hub {
	struct hub_channel **buckets;
	size_t nbuckets;               /* power of two */
	size_t nchannels;
	struct broker *broker;
	hub_deliver_fn deliver;
	struct hub_frame *spare[2];    /* frames nobody kept, reused by the next delivery */
	struct hub_channel *delivering; /* channel hub_deliver walks: freed by the walk if emptied */
	hub_live_fn live;              /* non-NULL: channels wait for the broker's confirmation */
	uint64_t gen_seq;              /* last channel incarnation handed out */
	struct hub_channel *creating;  /* channel whose broker subscribe is on the stack */
};

/* Channel names come from clients' URLs: a keyed hash, so nobody can pick names that all land
 * in one bucket. */
static uint64_t
hub_hash(const char *s, size_t n)
{
	return hash_siphash(s, n);
}

struct hub *
hub_new(hub_deliver_fn fn)
{
	struct hub *h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->nbuckets = HUB_BUCKETS_MIN;
	if ((h->buckets = calloc(h->nbuckets, sizeof(*h->buckets))) == NULL) {
		free(h);
		return NULL;
	}
	h->deliver = fn;
	return h;
}

void
hub_set_broker(struct hub *h, struct broker *b)
{
	h->broker = b;
}

void
hub_set_confirming(struct hub *h, hub_live_fn fn)
{
	h->live = fn;
}

struct broker *
hub_broker(struct hub *h)
{
	return h->broker;
}

void
hub_free(struct hub *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->nbuckets; i++) {
		struct hub_channel *ch, *next;
		for (ch = h->buckets[i]; ch != NULL; ch = next) {
			next = ch->next;
			log_warnx("hub: channel %s still has %zu subscriber(s) at exit", ch->name,
			    ch->nsubs);
			free(ch);
		}
	}
	free(h->buckets);
	free(h->spare[0]);
	free(h->spare[1]);
	free(h);
}

static void hub_unlink(struct hub *h, struct hub_channel *ch);

static struct hub_channel *
hub_find(const struct hub *h, const char *name, size_t len, uint64_t hash)
{
	struct hub_channel *ch;

	for (ch = h->buckets[hash & (h->nbuckets - 1)]; ch != NULL; ch = ch->next)
		if (ch->hash == hash && ch->len == len && memcmp(ch->name, name, len) == 0)
			return ch;
	return NULL;
}

/* Doubles the table when the load passes 1, so lookups stay one or two compares. */
static void
hub_grow(struct hub *h)
{
	size_t n = h->nbuckets * 2;
	struct hub_channel **b, *ch, *next;

	if ((b = calloc(n, sizeof(*b))) == NULL)
		return; /* keep the longer chains */
	for (size_t i = 0; i < h->nbuckets; i++) {
		for (ch = h->buckets[i]; ch != NULL; ch = next) {
			next = ch->next;
			ch->next = b[ch->hash & (n - 1)];
			b[ch->hash & (n - 1)] = ch;
		}
	}
	free(h->buckets);
	h->buckets = b;
	h->nbuckets = n;
}

int
hub_subscribe(struct hub *h, struct hub_sub *s, struct conn *c, const char *name, size_t len)
{
	uint64_t hash = hub_hash(name, len);
	struct hub_channel *ch = hub_find(h, name, len, hash);
	int rc;

	if (ch == NULL) {
		if ((ch = malloc(sizeof(*ch) + len + 1)) == NULL)
			return -1;
		ch->hash = hash;
		ch->nsubs = 0;
		ch->gen = ++h->gen_seq;
		ch->live = h->live == NULL; /* the in-process bus: live at once */
		TAILQ_INIT(&ch->subs);
		ch->len = len;
		memcpy(ch->name, name, len);
		ch->name[len] = '\0';
		if (h->nchannels >= h->nbuckets)
			hub_grow(h);
		/* Linked before the broker hears of it, so a confirmation it hands back at once
		 * (hub_confirmed) finds the channel; the broker reads the incarnation meanwhile
		 * through hub_creating_gen(). */
		ch->next = h->buckets[hash & (h->nbuckets - 1)];
		h->buckets[hash & (h->nbuckets - 1)] = ch;
		h->nchannels++;
		h->creating = ch;
		rc = h->broker != NULL ? h->broker->ops->subscribe(h->broker, ch->name, len) : 0;
		h->creating = NULL;
		if (rc < 0) {
			struct hub_channel **pp = &h->buckets[hash & (h->nbuckets - 1)];

			while (*pp != ch)
				pp = &(*pp)->next;
			*pp = ch->next;
			h->nchannels--;
			free(ch);
			return -1;
		}
	}
	s->ch = ch;
	s->c = c;
	TAILQ_INSERT_TAIL(&ch->subs, s, entry);
	ch->nsubs++;
	return 0;
}

uint64_t
hub_creating_gen(const struct hub *h)
{
	return h->creating != NULL ? h->creating->gen : 0;
}

int
hub_sub_live(const struct hub_sub *s)
{
	return s->ch != NULL && s->ch->live;
}

/* The walk holds the channel as hub_deliver's does: a subscriber the callback closes leaves
 * (its own entry only: one entry per connection and channel), the channel is freed after. */
void
hub_confirmed(struct hub *h, const char *name, size_t len, uint64_t gen)
{
	struct hub_channel *ch = hub_find(h, name, len, hub_hash(name, len));
	struct hub_sub *s, *next;

	/* Gone, or a later incarnation than the one confirmed (its subscribers all left and new
	 * ones came: its own confirmation is still to come). */
	if (ch == NULL || ch->live || (gen != 0 && ch->gen != gen))
		return;
	ch->live = 1;
	if (h->live == NULL || h->delivering != NULL)
		return;
	h->delivering = ch;
	for (s = TAILQ_FIRST(&ch->subs); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		h->live(s->c);
	}
	h->delivering = NULL;
	if (ch->nsubs == 0)
		hub_unlink(h, ch);
}

static void
hub_unlink(struct hub *h, struct hub_channel *ch)
{
	struct hub_channel **pp = &h->buckets[ch->hash & (h->nbuckets - 1)];

	while (*pp != ch)
		pp = &(*pp)->next;
	*pp = ch->next;
	h->nchannels--;
	if (h->broker != NULL)
		h->broker->ops->unsubscribe(h->broker, ch->name, ch->len);
	free(ch);
}

void
hub_unsubscribe(struct hub *h, struct hub_sub *s)
{
	struct hub_channel *ch = s->ch;

	if (ch == NULL)
		return;
	TAILQ_REMOVE(&ch->subs, s, entry);
	s->ch = NULL;
	/* While delivering, the walk holds the channel; it frees it afterwards if empty. */
	if (--ch->nsubs == 0 && ch != h->delivering)
		hub_unlink(h, ch);
}

void
hub_frame_ref(struct hub_frame *f)
{
	f->refs++;
}

void
hub_frame_unref(struct hub_frame *f)
{
	if (--f->refs == 0) {
		if (f->zvar != NULL)
			hub_frame_unref(f->zvar);
		free(f);
	}
}

/* A frame of the given opcode around data: the spare one when it is big enough and unshared. */
static struct hub_frame *
hub_frame_make(struct hub *h, int slot, unsigned opcode, const uint8_t *data, size_t len)
{
	struct hub_frame *f = h->spare[slot];
	size_t need = WS_FRAME_HDR_MAX + len, hlen;

	h->spare[slot] = NULL;
	if (f == NULL || f->cap < need) {
		free(f);
		if ((f = malloc(sizeof(*f) + need)) == NULL)
			return NULL;
		f->cap = (uint32_t)need;
		f->zvar = NULL;
	}
	f->refs = 1; /* the hub's own, dropped after the fan-out */
	hlen = ws_frame_encode(f->data, 1, 0, opcode, len, NULL);
	memcpy(f->data + hlen, data, len);
	f->len = hlen + len;
	f->plen = len;
	return f;
}

/* After the fan-out: keep the frame for reuse when no subscriber queued it. */
static void
hub_frame_done(struct hub *h, int slot, struct hub_frame *f)
{
	if (f == NULL)
		return;
	if (f->refs == 1 && f->cap <= 64 * 1024 && h->spare[slot] == NULL) {
		if (f->zvar != NULL) { /* a spare keeps no compressed variant */
			hub_frame_unref(f->zvar);
			f->zvar = NULL;
		}
		h->spare[slot] = f;
		return;
	}
	hub_frame_unref(f);
}

void
hub_deliver(struct hub *h, const char *channel, size_t clen, const uint8_t *data, size_t len)
{
	struct hub_channel *ch = hub_find(h, channel, clen, hub_hash(channel, clen));
	struct hub_frame *frames[2] = { NULL, NULL }; /* [0] text, [1] binary */
	struct hub_sub *s, *next;
	int is_text = -1;

	if (ch == NULL || len > UINT32_MAX - WS_FRAME_HDR_MAX)
		return;
	h->delivering = ch;
	for (s = TAILQ_FIRST(&ch->subs); s != NULL; s = next) {
		const struct config_route *r = s->c->route;
		int slot;

		next = TAILQ_NEXT(s, entry);
		if (r->message_type == MSGTYPE_BINARY) {
			slot = 1;
		} else {
			/* auto picks by content; text is what the route asked for, but a text frame
			 * cannot carry invalid UTF-8 (the client would fail the connection), so such
			 * a payload goes as binary rather than being lost. */
			if (is_text < 0)
				is_text = utf8_valid(data, len);
			slot = is_text ? 0 : 1;
		}
		if (frames[slot] == NULL) {
			frames[slot] = hub_frame_make(h, slot, slot == 0 ? WS_OP_TEXT : WS_OP_BINARY,
			    data, len);
			if (frames[slot] == NULL) {
				log_warnx("hub: out of memory framing a %zu-byte message on %s", len,
				    ch->name);
				break;
			}
		}
		h->deliver(s->c, frames[slot]);
	}
	h->delivering = NULL;
	hub_frame_done(h, 0, frames[0]);
	hub_frame_done(h, 1, frames[1]);
	if (ch->nsubs == 0)
		hub_unlink(h, ch);
}

size_t
hub_nchannels(const struct hub *h)
{
	return h->nchannels;
}

void
hub_foreach_channel(const struct hub *h, void (*fn)(void *arg, const char *name, size_t len),
    void *arg)
{
	for (size_t i = 0; i < h->nbuckets; i++)
		for (struct hub_channel *ch = h->buckets[i]; ch != NULL; ch = ch->next)
			fn(arg, ch->name, ch->len);
}

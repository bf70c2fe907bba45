/* hub.c - a worker's channels: name -> local subscribers, reference counted so the broker holds
 * one subscription per channel however many clients listen; fan-out frames each message once
 * per opcode and hands the same bytes to every subscriber. */
#include "hub.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "hash.h"
#include "history.h"
#include "utf8.h"
#include "ws_endpoint.h"
#include "ws_frame.h"

#define HUB_BUCKETS_MIN 64
/* Frames per message: raw text, raw binary, JSON message object, and for wsgate.meta clients
 * a position frame followed by the raw text or binary one. */
#define HUB_SLOTS 5

TAILQ_HEAD(hub_sub_list, hub_sub);

struct hub_channel {
	struct hub_channel *next; /* bucket chain */
	uint64_t hash;
	size_t nsubs;
	uint64_t gen;            /* this incarnation of the name (a confirmation names it) */
	uint8_t live;            /* the broker confirmed it: a message published now arrives */
	struct history_pos last; /* newest position delivered here (epoch "": none yet) */
	struct hub_sub_list subs;
	size_t len;
	char name[]; /* NUL-terminated */
};

struct hub {
	struct hub_channel **buckets;
	size_t nbuckets; /* power of two */
	size_t nchannels;
	struct broker *broker;
	hub_deliver_fn deliver;
	struct hub_frame *spare[HUB_SLOTS]; /* frames nobody kept, reused by the next delivery */
	struct hub_channel
	    *delivering;              /* channel hub_deliver walks: freed by the walk if emptied */
	hub_live_fn live;             /* non-NULL: channels wait for the broker's confirmation */
	hub_gap_fn gap;               /* told of positions that will never come */
	uint64_t malformed;           /* messages with a bad position header, since the last log */
	time_t malformed_log_s;       /* when they were last logged (wall seconds) */
	uint64_t gen_seq;             /* last channel incarnation handed out */
	struct hub_channel *creating; /* channel whose broker subscribe is on the stack */
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
hub_set_gap(struct hub *h, hub_gap_fn fn)
{
	h->gap = fn;
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
	for (int i = 0; i < HUB_SLOTS; i++)
		free(h->spare[i]);
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
		ch->last.epoch[0] = '\0';
		ch->last.off = 0;
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
	s->skip_to = 0;
	s->skip_epoch = 0;
	s->meta = 0;
	TAILQ_INSERT_TAIL(&ch->subs, s, entry);
	ch->nsubs++;
	return 0;
}

uint32_t
hub_epoch_tag(const char *epoch)
{
	return (uint32_t)hash_siphash(epoch, strlen(epoch));
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
	__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
}

void
hub_frame_unref(struct hub_frame *f)
{
	/* Release/acquire: the thread that frees sees every other thread's last use. */
	if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		if (f->zvar != NULL)
			hub_frame_unref(f->zvar);
		free(f);
	}
}

/* Header bytes ws_endpoint_shared_header writes for a server frame of plen bytes
 * (opcode-independent). */
static size_t
hub_frame_hlen(size_t plen)
{
	uint8_t hdr[WS_FRAME_HDR_MAX];

	return ws_endpoint_shared_header(hdr, 0, WS_OP_BINARY, plen);
}

struct hub_frame *
hub_frame_new(size_t plen, uint8_t **payload)
{
	struct hub_frame *f;
	size_t hlen = hub_frame_hlen(plen);

	if (plen > UINT32_MAX - WS_FRAME_HDR_MAX)
		return NULL;
	if ((f = malloc(sizeof(*f) + hlen + plen)) == NULL)
		return NULL;
	f->refs = 1;
	f->cap = (uint32_t)(hlen + plen);
	f->len = hlen + plen;
	f->plen = plen;
	f->pos.off = 0;
	f->ch = NULL;
	f->notice = 0;
	f->raw_off = (uint32_t)hlen;
	f->raw_len = (uint32_t)plen;
	f->zvar = NULL;
	f->zkey = 0;
	*payload = f->data + hlen;
	return f;
}

void
hub_frame_seal(struct hub_frame *f, unsigned opcode)
{
	(void)ws_endpoint_shared_header(f->data, 0, opcode, f->plen);
}

/* A frame with room for a payload of need bytes: the spare one of slot when it is big enough
 * and unshared (slot -1: a fresh one). The payload is filled by the caller (hub_frame_fill). */
static struct hub_frame *
hub_frame_alloc(struct hub *h, int slot, size_t need)
{
	struct hub_frame *f = NULL;

	need += WS_FRAME_HDR_MAX;
	if (slot >= 0) {
		f = h->spare[slot];
		h->spare[slot] = NULL;
	}
	if (f == NULL || f->cap < need) {
		free(f);
		if ((f = malloc(sizeof(*f) + need)) == NULL)
			return NULL;
		f->cap = (uint32_t)need;
		f->zvar = NULL;
	}
	f->refs = 1; /* the hub's own, dropped after the fan-out */
	f->pos.off = 0;
	f->notice = 0;
	return f;
}

/* The channel's name as clients know it: without the channel_prefix. */
static void
hub_client_channel(const struct conn *c, const char **channel, size_t *clen)
{
	const char *prefix = c->cfg->redis.channel_prefix;
	size_t pl = prefix != NULL ? strlen(prefix) : 0;

	if (pl > 0 && *clen >= pl && memcmp(*channel, prefix, pl) == 0) {
		*channel += pl;
		*clen -= pl;
	}
}

/* The text frame {"type":"pos","channel":C,"pos":"E:O"} that goes before a positioned message
 * to a wsgate.meta client, into out (HUB_META_MAX(clen)); returns its length. */
#define HUB_META_MAX(clen) (WS_FRAME_HDR_MAX + 48 + 6 * (clen) + HISTORY_POS_MAX)
static size_t
hub_meta_frame(uint8_t *out, const char *channel, size_t clen, const struct history_pos *pos)
{
	char body[HUB_META_MAX(0) + 6 * 256], *p = body;
	size_t n, hl;

	if (clen > 256)
		clen = 256; /* channel names are at most 255 bytes */
	memcpy(p, "{\"type\":\"pos\",\"channel\":\"", 25);
	n = 25;
	n += history_json_escape((const uint8_t *)channel, clen, p + n);
	memcpy(p + n, "\",\"pos\":\"", 9);
	n += 9;
	n += history_pos_format(pos, p + n, HISTORY_POS_MAX);
	memcpy(p + n, "\"}", 2);
	n += 2;
	hl = ws_endpoint_shared_header(out, 0, WS_OP_TEXT, n);
	memcpy(out + hl, body, n);
	return hl + n;
}

/* Frames the message into f: the payload as is (slot 0 text, 1 binary), the JSON message
 * object of an envelope = json route (slot 2, a text frame), or a position frame and the
 * payload (3 text, 4 binary). The payload is built after room for the longest header, then the
 * header written just before it. */
static void
hub_frame_fill(struct hub_frame *f, int slot, const struct conn *c, const char *channel,
               size_t clen, const struct history_pos *pos, const uint8_t *data, size_t len,
               int is_text)
{
	uint8_t *payload = f->data + WS_FRAME_HDR_MAX, hdr[WS_FRAME_HDR_MAX];
	size_t plen, hlen, ml = 0;

	f->pos.off = 0;
	if (slot >= 3) {
		hub_client_channel(c, &channel, &clen);
		ml = hub_meta_frame(f->data, channel, clen, pos);
		payload = f->data + ml + WS_FRAME_HDR_MAX;
		memcpy(payload, data, len);
		plen = len;
	} else if (slot == 2) {
		/* The message itself after the JSON object, for conflate_key. */
		memcpy(f->data + WS_FRAME_HDR_MAX + history_json_message_max(clen, len), data, len);
		hub_client_channel(c, &channel, &clen);
		plen =
		    history_json_message((char *)payload, channel, clen, pos, data, len, is_text);
	} else {
		memcpy(payload, data, len);
		plen = len;
	}
	hlen = ws_endpoint_shared_header(hdr, 0, slot == 1 || slot == 4 ? WS_OP_BINARY : WS_OP_TEXT,
	                                 plen);
	memmove(f->data + ml + hlen, payload, plen);
	memcpy(f->data + ml, hdr, hlen);
	f->len = ml + hlen + plen;
	f->plen = plen;
	f->raw_len = (uint32_t)len;
	if (slot == 2) {
		memmove(f->data + f->len,
		        f->data + WS_FRAME_HDR_MAX + history_json_message_max(clen, len), len);
		f->raw_off = (uint32_t)f->len;
	} else {
		f->raw_off = (uint32_t)(ml + hlen);
	}
	if (pos != NULL)
		f->pos = *pos;
}

/* Payload room slot needs for this message. */
static size_t
hub_slot_need(int slot, size_t clen, size_t len)
{
	if (slot == 2)
		return history_json_message_max(clen, len) + len;
	return slot >= 3 ? HUB_META_MAX(clen) + len : len;
}

/* Which frame a subscriber gets: by its route's message_type and envelope. */
static int
hub_slot(const struct hub_sub *s, const struct history_pos *pos, int is_text)
{
	const struct config_route *r = s->c->route;
	int raw;

	if (pos != NULL && r->envelope == ENVELOPE_JSON)
		return 2;
	if (r->message_type == MSGTYPE_BINARY)
		raw = 1;
	else
		/* auto picks by content; text is what the route asked for, but a text frame
		 * cannot carry invalid UTF-8 (the client would fail the connection), so such a
		 * payload goes as binary rather than being lost. */
		raw = is_text ? 0 : 1;
	return pos != NULL && s->meta ? 3 + raw : raw;
}

struct hub_frame *
hub_frame_for(const struct conn *c, const struct hub_sub *s, const struct history_pos *pos,
              const uint8_t *data, size_t len)
{
	int is_text = utf8_valid(data, len), slot = hub_slot(s, pos, is_text);
	size_t need = hub_slot_need(slot, s->ch->len, len);
	struct hub_frame *f;

	if (need > UINT32_MAX - WS_FRAME_HDR_MAX || (f = hub_frame_alloc(NULL, -1, need)) == NULL)
		return NULL;
	hub_frame_fill(f, slot, c, s->ch->name, s->ch->len, pos, data, len, is_text);
	f->ch = s->ch;
	return f;
}

struct hub_frame *
hub_frame_text(const uint8_t *data, size_t len)
{
	struct hub_frame *f = hub_frame_alloc(NULL, -1, len);
	size_t hl;

	if (f == NULL)
		return NULL;
	hl = ws_endpoint_shared_header(f->data, 0, WS_OP_TEXT, len);
	memcpy(f->data + hl, data, len);
	f->len = hl + len;
	f->plen = len;
	f->raw_off = (uint32_t)hl;
	f->raw_len = (uint32_t)len;
	f->ch = NULL;
	f->notice = 1;
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

/* frames[slot] for subscriber s of this message, made on first need. -1 when out of memory
 * (logged): the walk stops, as no later subscriber of that kind could be served either. */
static int
hub_frame_made(struct hub *h, struct hub_frame *frames[HUB_SLOTS], int slot,
               const struct hub_sub *s, const struct history_pos *pos, const uint8_t *data,
               size_t len, int is_text)
{
	const struct hub_channel *ch = s->ch;

	if (frames[slot] != NULL)
		return 0;
	if ((frames[slot] = hub_frame_alloc(h, slot, hub_slot_need(slot, ch->len, len))) == NULL) {
		log_warnx("hub: out of memory framing a %zu-byte message on %s", len, ch->name);
		return -1;
	}
	hub_frame_fill(frames[slot], slot, s->c, ch->name, ch->len, pos, data, len, is_text);
	frames[slot]->ch = ch;
	return 0;
}

/* A positioned message against the channel's last one: the next (0), one delivered already
 * (-1: dropped), or after a jump: the subscribers are told what they will not get (a new
 * epoch also resets what their replays skip: offsets start again). */
static int
hub_check_order(struct hub *h, struct hub_channel *ch, const struct history_pos *pos)
{
	struct hub_sub *s, *next;
	int newepoch = ch->last.epoch[0] != '\0' && strcmp(ch->last.epoch, pos->epoch) != 0;

	if (!newepoch && pos->off <= ch->last.off)
		return -1;
	if (h->gap != NULL && (newepoch || (ch->last.off != 0 && pos->off > ch->last.off + 1))) {
		h->delivering = ch;
		for (s = TAILQ_FIRST(&ch->subs); s != NULL; s = next) {
			uint64_t from = newepoch ? 1 : ch->last.off + 1;

			next = TAILQ_NEXT(s, entry);
			if (newepoch && s->skip_epoch != hub_epoch_tag(pos->epoch))
				s->skip_to = 0;
			if (from <= s->skip_to)
				from = s->skip_to + 1;
			if (newepoch || from < pos->off)
				h->gap(s->c, s, pos->epoch, from, pos->off - 1,
				       newepoch ? HISTORY_GAP_EPOCH_CHANGED : HISTORY_GAP_DROPPED);
		}
		h->delivering = NULL;
	}
	ch->last = *pos;
	return 0;
}

void
hub_deliver(struct hub *h, const char *channel, size_t clen, const uint8_t *msg, size_t mlen)
{
	struct hub_channel *ch = hub_find(h, channel, clen, hub_hash(channel, clen));
	struct hub_frame *frames[HUB_SLOTS] = {NULL};
	struct history_pos posbuf, *pos = &posbuf;
	struct hub_sub *s, *next;
	const uint8_t *data;
	size_t len;
	int is_text = -1, rc;

	if (ch == NULL)
		return;
	if ((rc = history_wire_decode(msg, mlen, &posbuf, &data, &len)) < 0) {
		/* Not ours (wsgate_publish writes them): an application's PUBLISH that starts
		 * with the reserved prefix. Logged at most once a second. */
		time_t now = time(NULL); /* a log's pace: the hub keeps no clock of its own */

		h->malformed++;
		if (now != h->malformed_log_s) {
			log_warnx("hub: %llu message(s) with a malformed position header dropped "
			          "(last on %s; payloads must not start with \"\\0WSG\")",
			          (unsigned long long)h->malformed, ch->name);
			h->malformed = 0;
			h->malformed_log_s = now;
		}
		return;
	}
	if (rc == 0)
		pos = NULL;
	else if (hub_check_order(h, ch, pos) < 0)
		return; /* delivered here already */
	if (history_json_message_max(clen, len) + len > UINT32_MAX - WS_FRAME_HDR_MAX)
		return; /* no frame can hold it (the largest kind built from it is the JSON one) */
	h->delivering = ch;
	for (s = TAILQ_FIRST(&ch->subs); s != NULL; s = next) {
		int slot;

		next = TAILQ_NEXT(s, entry);
		/* Replayed already (the client resumed with since=, and this was in the history
		 * it got): the replay and the live stream meet without a duplicate. */
		if (pos != NULL && pos->off <= s->skip_to)
			continue;
		if (is_text < 0)
			is_text = utf8_valid(data, len);
		slot = hub_slot(s, pos, is_text);
		if (hub_frame_made(h, frames, slot, s, pos, data, len, is_text) < 0)
			break;
		h->deliver(s->c, frames[slot]);
	}
	h->delivering = NULL;
	for (int i = 0; i < HUB_SLOTS; i++)
		hub_frame_done(h, i, frames[i]);
	if (ch->nsubs == 0)
		hub_unlink(h, ch);
}

void
hub_deliver_frame(struct hub *h, const char *channel, size_t clen, struct hub_frame *f, int is_text)
{
	const uint8_t *data = f->data + (f->len - f->plen);
	struct hub_channel *ch;
	struct hub_frame *own[HUB_SLOTS] = {NULL};
	struct hub_sub *s, *next;
	struct history_pos pos;
	const uint8_t *d;
	size_t len = f->plen, dl;
	int slot = is_text ? 0 : 1;

	/* A message with a position (history's wire prefix) is framed by what its position asks
	 * for (the JSON object, the meta frame, the skip of a replay): the ordinary path, which
	 * also drops a malformed prefix and removes an escape. */
	if (history_wire_decode(data, len, &pos, &d, &dl) != 0 || dl != len) {
		hub_deliver(h, channel, clen, data, len);
		return;
	}
	if ((ch = hub_find(h, channel, clen, hub_hash(channel, clen))) == NULL)
		return;
	h->delivering = ch;
	for (s = TAILQ_FIRST(&ch->subs); s != NULL; s = next) {
		int want;

		next = TAILQ_NEXT(s, entry);
		want = hub_slot(s, NULL, is_text);
		/* f is shared by every worker: a subscriber whose slow-consumer policy reads the
		 * frame's channel (conflate) or who hangs a compressed variant off it
		 * (permessage-deflate) gets this worker's own frame, so neither f->ch nor
		 * f->zvar is ever written by two threads. */
		if (want == slot && s->c->route->slow_consumer != SLOW_CONFLATE && !s->c->pmd_on) {
			h->deliver(s->c, f);
			continue;
		}
		if (hub_frame_made(h, own, want, s, NULL, data, len, is_text) < 0)
			break;
		h->deliver(s->c, own[want]);
	}
	h->delivering = NULL;
	for (int i = 0; i < HUB_SLOTS; i++)
		hub_frame_done(h, i, own[i]);
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

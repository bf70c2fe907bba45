/* history.h - pure pieces of channel history: positions "E:O", the wire prefix that carries a
 * position inside a published message, the since= parameter, the in-memory ring of one channel
 * and the replay plan (what to resend, what is lost). No sockets, no locks, no libevent. */
#ifndef WSGATE_HISTORY_H
#define WSGATE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define HISTORY_EPOCH_MAX 40 /* characters [A-Za-z0-9_-] (CONTRACT.md) */
#define HISTORY_POS_MAX (HISTORY_EPOCH_MAX + 1 + 20 + 1) /* "E:O" and its NUL */

/* A message's place on its channel: offsets count from 1, +1 per message, within one epoch;
 * a new epoch means the history before it is gone. */
struct history_pos {
	char epoch[HISTORY_EPOCH_MAX + 1];
	uint64_t off; /* 0: none (a position before the first message) */
};

/* 1 when s[0..n) is a valid epoch token. */
int history_epoch_valid(const char *s, size_t n);
/* "E:O" -> p; 0, or -1 when malformed (empty or long epoch, bad characters, offset overflow). */
int history_pos_parse(const char *s, size_t n, struct history_pos *p)
    __attribute__((warn_unused_result));
/* p as "E:O" into out (HISTORY_POS_MAX bytes suffice); returns the length. */
size_t history_pos_format(const struct history_pos *p, char *out, size_t outsz);

/* Wire prefix of a positioned message, as published to Redis and passed between workers:
 * "\0WSGp" E ":" O "\n" payload. A message published without it is plain (no position); a
 * plain message that happens to start with "\0WSG" is sent as "\0WSGr\n" payload so it cannot
 * be mistaken for a positioned one. */
#define HISTORY_WIRE_MAGIC "\0WSG"
#define HISTORY_WIRE_MAGIC_LEN 4
#define HISTORY_WIRE_HDR_MAX (HISTORY_WIRE_MAGIC_LEN + 1 + HISTORY_POS_MAX + 1)

/* Header for pos into out (HISTORY_WIRE_HDR_MAX bytes); returns its length. */
size_t history_wire_header(const struct history_pos *p, uint8_t *out);
/* 1 when a plain payload must be escaped ("\0WSGr\n" before it) to pass through unchanged. */
int history_wire_needs_escape(const uint8_t *data, size_t len);
/* Splits msg: 1 positioned (pos, *data, *dlen set), 0 plain (data and dlen: the payload, escape
 * removed), -1 a malformed header (the message is dropped by the caller, who logs it). */
int history_wire_decode(const uint8_t *msg, size_t len, struct history_pos *pos,
                        const uint8_t **data, size_t *dlen) __attribute__((warn_unused_result));

/* since= for a route: either one "E:O" (routes with one history channel) or a list
 * "chan@E:O,chan2@E:O" (channel names as the route's templates give them, without the
 * channel_prefix). Percent-encoding (%HH, e.g. ':' '@' ',' as encodeURIComponent() writes them)
 * is decoded first; %00 is malformed. Looks up name (NULL or "" for the single form): 1 found
 * (*p set), 0 absent, -1 malformed parameter. */
int history_since_find(const char *since, size_t len, const char *name, struct history_pos *p)
    __attribute__((warn_unused_result));

/* The resume position as a WebSocket subprotocol, for clients that can set neither the URL nor
 * a header (a browser's WebSocket): "wsgate.since." followed by the since= value
 * percent-encoded (a token cannot hold ':' '@' ','), e.g. "wsgate.since.E%3A42". 1 when tok is
 * such a token with a non-empty value (*val, *vlen: the encoded value, for history_since_find),
 * else 0. */
#define HISTORY_SINCE_PROTOCOL "wsgate.since."
int history_since_protocol(const char *tok, size_t n, const char **val, size_t *vlen);

/* What a reconnecting client gets, from the channel's state and its since position. */
enum history_gap {
	HISTORY_GAP_NONE = 0,
	HISTORY_GAP_TRIMMED,
	HISTORY_GAP_EPOCH_CHANGED,
	HISTORY_GAP_DROPPED
};
struct history_plan {
	uint64_t from, to;    /* resend offsets from..to (none when from > to) */
	enum history_gap gap; /* and before that, a gap notice for gap_from..gap_to */
	uint64_t gap_from, gap_to;
};
/* The channel holds epoch's offsets first..last (first > last: nothing kept; last: the newest
 * ever given, kept or not). */
void history_plan(const char *epoch, uint64_t first, uint64_t last, const struct history_pos *since,
                  struct history_plan *pl);
const char *history_gap_name(enum history_gap g);

/* Client-visible JSON (CONTRACT.md). The largest message history_json_message can build. */
size_t history_json_message_max(size_t clen, size_t len);
/* {"type":"message","channel":C,"pos":"E:O","data":"..."} with the payload as a JSON string
 * (text: valid UTF-8, escaped) or, with ,"binary":true, base64. Returns the length. */
size_t history_json_message(char *out, const char *channel, size_t clen,
                            const struct history_pos *pos, const uint8_t *data, size_t len,
                            int is_text);
/* {"type":"gap","channel":C,"epoch":E,"from":F,"to":T,"reason":R} into out (at least
 * HISTORY_JSON_GAP_MAX(clen) bytes); returns the length. */
#define HISTORY_JSON_GAP_MAX(clen) (192 + 6 * (clen))
size_t history_json_gap(char *out, const char *channel, size_t clen, const char *epoch,
                        uint64_t from, uint64_t to, enum history_gap reason);
/* The raw value of top-level field name of the JSON object s[0..n) (a string with its quotes,
 * a number, an object...): 1 found (*v, *vlen), 0 absent or not an object. Not a validator: it
 * only tracks strings and nesting, enough to find a key of a well-formed object. */
int history_json_field(const uint8_t *s, size_t n, const char *name, const uint8_t **v,
                       size_t *vlen);
/* JSON string body of s (escaped, no quotes); out holds 6 * n bytes. Returns the length. */
size_t history_json_escape(const uint8_t *s, size_t n, char *out);

/* One channel's recent messages in memory: at most cap, none older than ttl_ms (0: no age
 * limit). Offsets continue across trims; entries are copies. */
struct history_ring;
struct history_ring *history_ring_new(size_t cap, uint64_t ttl_ms);
void history_ring_free(struct history_ring *r);
/* Raises the bounds (several routes may keep history of one channel: the largest wins). */
int history_ring_widen(struct history_ring *r, size_t cap, uint64_t ttl_ms)
    __attribute__((warn_unused_result));
/* Appends a copy; returns its offset, or 0 when out of memory (nothing changed). */
uint64_t history_ring_append(struct history_ring *r, const uint8_t *data, size_t len,
                             uint64_t now_ms) __attribute__((warn_unused_result));
/* Forgets entries older than the ttl. */
void history_ring_expire(struct history_ring *r, uint64_t now_ms);
uint64_t history_ring_first(const struct history_ring *r); /* oldest kept; last + 1 when empty */
size_t history_ring_cap(const struct history_ring *r);
uint64_t history_ring_ttl(const struct history_ring *r);
uint64_t history_ring_last(const struct history_ring *r); /* newest ever appended; 0 none */
/* The entry at off (first <= off <= last), or -1. */
int history_ring_get(const struct history_ring *r, uint64_t off, const uint8_t **data, size_t *len);

#endif

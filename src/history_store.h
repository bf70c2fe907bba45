/* history_store.h - the in-process history of every channel that has one (without [redis]):
 * shared by all workers under one lock, so a position is given once per message whichever
 * worker publishes it, and a reconnecting client on any worker can be replayed from it. */
#ifndef WSGATE_HISTORY_STORE_H
#define WSGATE_HISTORY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

#define HISTORY_STORE_MAX_CHANNELS 100000 /* beyond, new channels get no history (logged) */

struct history_store;
struct history_chan;

/* epoch_prefix: random per process start (instance id), so epochs of a restarted process
 * never equal the old ones. */
struct history_store *history_store_new(const char *epoch_prefix);
void history_store_free(struct history_store *st);

/* Channel keeps history with these bounds (the widest of every route asking). -1 when it
 * cannot (out of memory, too many channels). Takes the lock itself. */
int history_store_enable(struct history_store *st, const char *channel, size_t clen, size_t cap,
                         uint64_t ttl_ms) __attribute__((warn_unused_result));

/* 1 and the channel's bounds when it keeps history, else 0. Takes the lock itself. */
int history_store_bounds(struct history_store *st, const char *channel, size_t clen, size_t *cap,
                         uint64_t *ttl_ms);

/* The rest is called between lock and unlock, and must not call back into the store. */
void history_store_lock(struct history_store *st);
void history_store_unlock(struct history_store *st);
/* The channel's history, or NULL when it has none. */
struct history_chan *history_store_find(struct history_store *st, const char *channel, size_t clen);
/* The position the next appended message will get. */
void history_chan_next(const struct history_chan *hc, struct history_pos *pos);
/* Appends; 0 (pos set), -1 out of memory. */
int history_chan_append(struct history_chan *hc, const uint8_t *data, size_t len, uint64_t now_ms,
                        struct history_pos *pos) __attribute__((warn_unused_result));
/* Plans since's replay (ttl applied first; since NULL: none); *cur is the channel's newest position
 * (what live delivery continues after). */
void history_chan_plan(struct history_chan *hc, const struct history_pos *since, uint64_t now_ms,
                       struct history_plan *pl, struct history_pos *cur);
/* Calls fn for each kept message from..to, in order. */
void history_chan_each(struct history_chan *hc, uint64_t from, uint64_t to,
                       void (*fn)(void *arg, const struct history_pos *pos, const uint8_t *data,
                                  size_t len),
                       void *arg);
/* The newest position given on the channel (off 0: none yet). */
void history_chan_current(const struct history_chan *hc, struct history_pos *cur);

#endif

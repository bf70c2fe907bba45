/* router.h - the process's Redis subscriptions, on worker 0's loop (which also runs the
 * process's sub link): which workers want each channel. The first worker to want a channel
 * makes the one SUBSCRIBE of the process, the last to leave the UNSUBSCRIBE; each message Redis
 * delivers goes to worker 0's hub directly and is copied into the mailbox of every other worker
 * that wants it, where that worker's hub frames it once for its own clients. */
#ifndef WSGATE_ROUTER_H
#define WSGATE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"

struct env;
struct router;

/* env: worker 0's, whose loop runs the router (its hub gets messages directly, its bus reaches
 * the others; read at each use, so its hub may be set after this call). */
struct router *router_new(struct env *env);
/* The broker that SUBSCRIBEs for the process (set once, before any worker runs). */
void router_set_broker(struct router *r, struct broker *b);
void router_free(struct router *r);

/* Worker w (0..63) wants channel, or no longer does. Once the process's SUBSCRIBE of it is
 * confirmed (at once when it already is), w's mailbox gets WORKER_MSG_LIVE naming the channel
 * and gen, its hub's incarnation of it (hub_creating_gen; 0: whichever). */
void router_subscribe_gen(struct router *r, int w, const char *channel, size_t len, uint64_t gen);
void router_subscribe(struct router *r, int w, const char *channel, size_t len);
void router_unsubscribe(struct router *r, int w, const char *channel, size_t len);

/* What the process's Redis broker delivers to and resubscribes from. */
extern const struct broker_sink router_sink;

/* For tests: the workers wanting channel, as a bit mask (0: none). */
uint64_t router_mask(const struct router *r, const char *channel, size_t len);
/* For tests: 1 when channel is wanted and its last SUBSCRIBE is confirmed. */
int router_live(const struct router *r, const char *channel, size_t len);

#endif

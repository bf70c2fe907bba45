/* transport_int.h - the transport object, shared by transport.c (the interface, and TLS through
 * a bufferevent) and transport_plain.c (plain TCP on one event). Nothing else includes it. */
#ifndef WSGATE_TRANSPORT_INT_H
#define WSGATE_TRANSPORT_INT_H

#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "transport.h"

struct transport {
	struct event ev;         /* plain: the socket, registered for `armed` (0: not added) */
	struct bufferevent *bev; /* TLS: the session, which has its own events; NULL: plain */
	struct evbuffer *in;     /* plain: NULL while nothing waits (reads borrow a spare) */
	struct evbuffer *out;    /* plain: the output */
	const struct transport_cbs *cbs;
	void *arg;
	uint32_t write_low; /* plain: the write callback's low mark */
	uint8_t enabled;    /* plain: EV_READ | EV_WRITE as the owner wants them */
	uint8_t armed;      /* plain: what ev is registered for */
	uint8_t write_wait; /* plain: the output waits for the socket to be writable */
};

struct transport *transport_plain_new(struct event_base *base, int fd);
void transport_plain_free(struct transport *t);
void transport_plain_update(struct transport *t);
struct evbuffer *transport_plain_input(struct transport *t);

#endif

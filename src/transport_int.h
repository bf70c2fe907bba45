/* transport_int.h - the transport object, shared by transport.c (the interface, and TLS through
 * a bufferevent) and transport_plain.c (plain TCP on one event). Nothing else includes it. */
#ifndef WSGATE_TRANSPORT_INT_H
#define WSGATE_TRANSPORT_INT_H

#include <stdint.h>

#include "transport.h"

struct transport {
	struct bufferevent
	    *bev; /* TLS: the session, with its own events and buffers; NULL:
	             plain, the head of a struct transport_plain (transport_plain.c) */
	const struct transport_cbs *cbs;
	void *arg;
};

/* transport.h's calls for a plain transport (bev NULL). */
struct transport *transport_plain_new(struct event_base *base, int fd);
void transport_plain_free(struct transport *t);
void transport_plain_enable(struct transport *t, short what, int on);
struct evbuffer *transport_plain_input(struct transport *t);
size_t transport_plain_input_len(const struct transport *t);
struct evbuffer *transport_plain_output(struct transport *t);
int transport_plain_fd(const struct transport *t);
void transport_plain_set_write_low(struct transport *t, size_t low);
void transport_plain_write_soon(struct transport *t);
void transport_plain_written(struct transport *t);
int transport_plain_write_pending(const struct transport *t);
void transport_plain_finish(struct transport *t);

#endif

/* conn_deflate.h - permessage-deflate on a client connection: the offer answered at the
 * handshake, compressed messages inflated on the way in, messages compressed on the way out
 * (a broadcast's compressed frame made once and shared: conn_deflate_hub.h). conn.c and
 * conn_handshake.c call these hooks; the protocol is in ws_deflate_ext.c and ws_deflate.c. */
#ifndef WSGATE_CONN_DEFLATE_H
#define WSGATE_CONN_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct evbuffer;
struct http_request;
struct ws_event;

/* At the upgrade, before the target decides: on a route with compression = on, the first
 * acceptable offer is taken (c->pmd set, RSV1 allowed from the client). Returns 0, or -1 when
 * a Sec-WebSocket-Extensions line is malformed (answer 400). */
int conn_deflate_negotiate(struct conn *c, const struct http_request *req)
    __attribute__((warn_unused_result));
/* Appends "Sec-WebSocket-Extensions: ...\r\n" to a 101 being written, when negotiated. */
void conn_deflate_101(struct conn *c, struct evbuffer *out);

/* A compressed data chunk from the client. Returns 0 when the message goes on, 1 when *out is
 * the whole message inflated (deliver it, then call conn_deflate_rx_done), or -1 to fail the
 * connection with *code / *why. */
int conn_deflate_rx(struct conn *c, const struct ws_event *ev, struct ws_event *out, uint16_t *code,
                    const char **why) __attribute__((warn_unused_result));
void conn_deflate_rx_done(struct conn *c);

/* Sending one frame: when it is a whole data message the route compresses, queues it
 * compressed (RSV1) and returns 1; 0 when the caller sends it as it is. */
int conn_deflate_send(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len);

/* Compresses a whole message for c's route and terms; NULL when it goes plain (too small,
 * incompressible, or out of memory). The result is valid until the next call on this thread. */
const uint8_t *conn_deflate_payload(struct conn *c, const uint8_t *data, size_t len, size_t *zlen);
/* Parameters that make a different compressed frame: the level and the window. */
uint32_t conn_deflate_key(const struct conn *c);

/* conn_free: releases the inflate state and its share of compression_memory. */
void conn_deflate_free(struct conn *c);

#endif

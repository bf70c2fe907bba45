/* conn_deflate_hub.h - a broadcast's permessage-deflate variant, shared by a worker's
 * subscribers (hub.h's zvar chain). */
#ifndef WSGATE_CONN_DEFLATE_HUB_H
#define WSGATE_CONN_DEFLATE_HUB_H

struct conn;
struct hub_frame;

/* The frame of a broadcast this subscriber gets: f itself, or f's compressed variant, made by
 * the first subscriber of this worker that wants it and referenced by the others. */
struct hub_frame *conn_deflate_hub_frame(struct conn *c, struct hub_frame *f);

#endif

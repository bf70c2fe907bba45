/* conn_deflate_hub.c - a broadcast's compressed frame for a permessage-deflate subscriber:
 * made once per worker and parameter set, hung off the plain hub frame and shared by every
 * subscriber that wants the same one. Apart from conn_deflate.c because it works on the hub's
 * frames (the pub/sub layer), which the connection layer does not include. */
#include "conn_deflate_hub.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "conn_deflate.h"
#include "hub.h"
#include "ws_endpoint.h"
#include "ws_frame.h"

struct hub_frame *
conn_deflate_hub_frame(struct conn *c, struct hub_frame *f)
{
	const uint8_t *payload, *z;
	struct hub_frame *v, **slot;
	uint32_t key;
	size_t zlen, hlen;

	uint8_t hdr[WS_FRAME_HDR_MAX];

	if (!c->pmd_on || c->route == NULL || f->plen == 0 ||
	    f->plen < c->route->compression_min_size || f->len < f->plen)
		return f;
	/* One frame only: a wsgate.meta message (a position frame before the payload's) goes
	 * plain rather than lose its first frame. */
	if (f->len - f->plen != ws_endpoint_shared_header(hdr, 0, WS_OP_BINARY, f->plen))
		return f;
	key = conn_deflate_key(c);
	/* Variants hang off the plain frame, one per parameter set, made once per broadcast. */
	for (slot = &f->zvar; *slot != NULL; slot = &(*slot)->zvar)
		if ((*slot)->zkey == key)
			return (*slot)->len > 0 ? *slot : f;
	payload = f->data + (f->len - f->plen);
	/* Incompressible: an empty variant remembers it, so the next subscriber does not try. */
	if ((z = conn_deflate_payload(c, payload, f->plen, &zlen)) == NULL)
		zlen = 0;
	if ((v = malloc(sizeof(*v) + (z != NULL ? WS_FRAME_HDR_MAX + zlen : 0))) == NULL)
		return f;
	hlen = z != NULL ? ws_endpoint_shared_header(v->data, WS_RSV1, f->data[0] & 0x0f, zlen) : 0;
	if (z != NULL)
		memcpy(v->data + hlen, z, zlen);
	v->refs = 1; /* the plain frame's, dropped with it */
	v->cap = (uint32_t)(z != NULL ? WS_FRAME_HDR_MAX + zlen : 0);
	v->len = hlen + zlen;
	v->plen = zlen;
	v->zvar = NULL;
	v->zkey = key;
	*slot = v;
	return v->len > 0 ? v : f;
}

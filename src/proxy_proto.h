/* proxy_proto.h - pure parser of the PROXY protocol header (HAProxy's send-proxy, v1 text and
 * v2 binary) a trusted load balancer puts before the client's bytes: who the client is. */
#ifndef WSGATE_PROXY_PROTO_H
#define WSGATE_PROXY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROXY_PROTO_V1_MAX 107 /* the longest v1 line, CRLF included (spec 2.1) */
#define PROXY_PROTO_MAX 4096   /* v2 header plus TLVs accepted; more is BAD */

enum proxy_proto_status {
	PROXY_PROTO_OK = 0,
	PROXY_PROTO_NEED_MORE = 1, /* a prefix of a valid header: read more */
	PROXY_PROTO_BAD = -1,      /* not a PROXY header, or malformed: close the connection */
};

struct proxy_proto_result {
	int local;       /* v1 UNKNOWN, v2 LOCAL or an unsupported family: no address given */
	int family;      /* 4 or 6 when an address was given, else 0 */
	uint8_t src[16]; /* client address (4 bytes used for IPv4) */
	uint8_t dst[16];
	uint16_t src_port, dst_port;
	size_t len; /* header bytes to consume */
};

/* Parses a header at the start of buf[0..n). On OK, r->len bytes are the header. */
enum proxy_proto_status proxy_proto_parse(const uint8_t *buf, size_t n,
                                          struct proxy_proto_result *r);

#endif

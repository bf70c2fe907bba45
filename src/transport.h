/* transport.h - how bytes reach a client: plain TCP or TLS, both as a bufferevent. The rest of
 * the gateway sees only these calls; nothing outside transport.c and tls.c touches OpenSSL's
 * connection objects. */
#ifndef WSGATE_TRANSPORT_H
#define WSGATE_TRANSPORT_H

#include <stddef.h>

struct bufferevent;
struct event_base;
struct tls_server;

/* A bufferevent for an accepted socket: plain when tls is NULL, else a TLS server session.
 * Takes ownership of fd (closed on failure). */
struct bufferevent *transport_server_new(struct event_base *base, int fd, struct tls_server *tls);

/* All queued output was written and nothing more will be: tell the peer (FIN for plain TCP,
 * close_notify for TLS) while still reading until its EOF. */
void transport_finish(struct bufferevent *bev);

/* 1 when the bufferevent speaks TLS. */
int transport_is_tls(struct bufferevent *bev);

/* libevent 2.1 reads a socket at most EVBUFFER_MAX_READ (4096) bytes at a time, each read after
 * an ioctl(FIONREAD). When the last read filled those 4096 bytes, this reads what else the
 * socket holds (up to TRANSPORT_READ_MORE) with one readv into bev's input, no FIONREAD.
 * Plain socket bufferevents only (a TLS one's socket carries records). An EOF or an error is
 * left to libevent's next read to report. Returns the bytes added. */
#define TRANSPORT_READ_MORE (60 * 1024)
size_t transport_read_more(struct bufferevent *bev);
/* Whether the read that led to this callback may have been cut at libevent's 4096 bytes: the
 * input grew by that much since the last callback left it at *left (kept by the caller). */
int transport_read_was_cut(size_t len, size_t left);

#endif

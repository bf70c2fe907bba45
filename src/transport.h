/* transport.h - how bytes reach a client: plain TCP or TLS, both as a bufferevent. The rest of
 * the gateway sees only these calls; nothing outside transport.c and tls.c touches OpenSSL's
 * connection objects. */
#ifndef WSGATE_TRANSPORT_H
#define WSGATE_TRANSPORT_H

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

#endif

/* listener.h - accepting sockets for one worker: bind, accept, hand the fd to conn_new;
 * pauses accepting on EMFILE/ENFILE and resumes from a timer instead of spinning. */
#ifndef WSGATE_LISTENER_H
#define WSGATE_LISTENER_H

#include "config.h"

struct worker;
struct listener;

/* reuseport: the address is shared by one socket per worker (SO_REUSEPORT). */
struct listener *listener_new(struct worker *w, const struct config_listen *cl, int reuseport);
/* 0 when nothing listens on cl's address yet; -1 (logged) otherwise. Run before binding a
 * reuseport group, which would otherwise silently share the port with another process. */
int listener_probe(const struct config_listen *cl);
void listener_free(struct listener *l);

#endif

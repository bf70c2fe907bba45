/* service.h - what the service manager (systemd) hands us and wants to hear: readiness
 * notifications (sd_notify) and listening sockets passed by socket activation (LISTEN_FDS). */
#ifndef WSGATE_SERVICE_H
#define WSGATE_SERVICE_H

#include <stddef.h>

struct config_listen;

/* Takes the sockets passed with LISTEN_FDS/LISTEN_PID (once, before any thread starts) and
 * clears those variables so children do not see them. Returns how many were passed. */
int service_listen_fds_take(void);
/* An inherited listening socket bound to cl's address (tls or not does not matter: the
 * listen line decides), or -1 when none was passed for it. The fd stays the process's: the
 * caller dup()s it for each worker. */
int service_listen_fd_match(const struct config_listen *cl);
/* Logs and closes the inherited sockets that no listen line claimed. */
void service_listen_fds_unclaimed(void);
/* Closes every inherited socket (gateway_free). */
void service_listen_fds_close(void);

/* Readiness protocol: no-ops when NOTIFY_SOCKET is unset; safe from any thread. */
void service_notify_ready(const char *status);
void service_notify_reloading(void);
void service_notify_stopping(void);
void service_notify_status(const char *status);

#endif

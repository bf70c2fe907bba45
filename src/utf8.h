/* utf8.h - pure incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * State survives across calls so a text message split over frames fails at its first bad byte. */
#ifndef WSGATE_UTF8_H
#define WSGATE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0u /* between code points: a complete, valid prefix */
#define UTF8_REJECT 1u /* an invalid byte was seen; sticky */

/* Feeds n bytes; returns the new state (UTF8_ACCEPT, UTF8_REJECT or an "inside a sequence" state).
 */
uint32_t utf8_feed(uint32_t state, const uint8_t *p, size_t n);
/* A whole buffer: 1 when valid and complete, 0 otherwise. */
int utf8_valid(const uint8_t *p, size_t n);

#endif

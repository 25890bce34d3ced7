/* crucible-c plugin: one line to syslog (for crucible.c's log sink).
 *
 * Apart from common/log.h, whose level names (LOG_NOTICE, LOG_INFO,
 * LOG_DEBUG) are also <syslog.h>'s macros: no file includes both. */
#ifndef CRUCIBLE_SYSLOGLINE_H
#define CRUCIBLE_SYSLOGLINE_H

#include <stdbool.h>

/* syslog(3) "crucible: TAG: MSG" at LOG_WARNING (warning) or LOG_NOTICE. */
void syslog_line(bool warning, const char *tag, const char *msg);

#endif

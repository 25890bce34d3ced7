/* crucible-c plugin: one line to syslog (see syslogline.h). */
#include "syslogline.h"

#include <syslog.h>

void syslog_line(bool warning, const char *tag, const char *msg)
{
  syslog(warning ? LOG_WARNING : LOG_NOTICE, "crucible: %s: %s", tag, msg);
}

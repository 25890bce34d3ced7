/* crucible-downstairs status: ask a running downstairs about its region
 * and connections, without the data key (status.c). */
#ifndef CRUCIBLE_DS_STATUS_H
#define CRUCIBLE_DS_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/proto.h"

struct auth_key;

/* Connect to host:port, HELLO as a status peer (proving auth if the
 * downstairs asks; auth NULL or empty: none held), ask STATUS_REQ, all
 * within timeout_s.  0 and *out, or -errno with one line in err
 * (-ECONNREFUSED etc.: nothing there; -EACCES: refused). */
int ds_status_query(const char *host, uint16_t port,
                    const struct auth_key *auth, unsigned timeout_s,
                    struct proto_status *out, char *err, size_t esz);

#endif

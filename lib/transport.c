/* transport.c — picks the backend named by delivery.transport. */
#include "transport.h"

#include <stddef.h>

#include "config.h"

const struct kr_transport_ops *
kr_transport_for(const struct kr_config *cfg)
{
	if (cfg != NULL && cfg->delivery.transport == KR_CFG_TRANSPORT_MAILDIR)
		return &kr_transport_maildir_ops;
	return &kr_transport_smtp_ops;
}

#include "service.h"

/* The service table: one row per service. A new service is one file that
 * exports its ops, plus its row here. */
static const struct service_ops *const services[_SERVICE_MAX] = {
	[SERVICE_ECHO] = &service_echo_ops,
	[SERVICE_CHAT] = &service_chat_ops,
	[SERVICE_DISCARD] = &service_discard_ops,
	[SERVICE_CHARGEN] = &service_chargen_ops,
	[SERVICE_METRICS] = &service_metrics_ops,
};

const struct service_ops *
service_get(enum service_kind k)
{
	if ((unsigned)k >= _SERVICE_MAX)
		return NULL;
	return services[k];
}

/*
 * views.h - the JSON of the introspection verbs (SERVICES, INSTANCES,
 * STATUS, REGISTRATIONS; doc/protocol.md), built from the engine's public
 * structs.  Field names, order and types are the protocol's.  New
 * references; NULL when out of memory.  Engine thread only.
 */
#ifndef RSV_VIEWS_H
#define RSV_VIEWS_H

#include <jansson.h>
#include <resolver.h>

json_t *rsv_view_services(resolver_engine *e);
/* *rc: 0, RESOLVER_ERR_NOT_FOUND (no such service; NULL) or NOMEM. */
json_t *rsv_view_instances(resolver_engine *e, const char *service, int *rc);
json_t *rsv_view_status(resolver_engine *e);
/* Every registration, or those of service and address (NULL: any). */
json_t *rsv_view_registrations(resolver_engine *e, const char *service, const char *address);
json_t *rsv_view_registration(const resolver_registration_info *r);

#endif

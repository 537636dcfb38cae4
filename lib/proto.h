#ifndef RESOLVER_PROTO_H
#define RESOLVER_PROTO_H
#endif

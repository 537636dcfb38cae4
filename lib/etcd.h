#ifndef RESOLVER_ETCD_H
#define RESOLVER_ETCD_H
#endif

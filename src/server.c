/* server.c */
typedef int resolver_placeholder_server;

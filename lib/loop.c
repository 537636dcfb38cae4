/* loop.c - placeholder until the module lands. */
typedef int resolver_placeholder_loop;

#ifndef SERVER_H
#define SERVER_H
#endif

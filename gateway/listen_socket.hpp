// Listening sockets, created by the master: for each listener address a
// set of SO_REUSEPORT sockets, one per worker, so the kernel spreads
// connections across workers and a worker's queue survives its death (the
// master keeps the socket). Sets outlive reloads: a socket is never closed
// while its address stays in the config (closing one resets what is queued).
#pragma once

#include <string>
#include <vector>

#include "conf/config.hpp"

namespace torii::gateway {

struct ListenSocketSet {
  conf::HostPort requested;  // as configured (port may be 0)
  conf::HostPort bound;      // port 0 replaced by the real port
  // Which listener of that configured address this is: only port 0 may be
  // configured more than once, and each such listener gets its own port.
  size_t occurrence = 0;
  std::vector<int> fds;
  std::string address() const { return bound.str(); }
  // Sets are identified by the address as configured (port 0 included) and
  // its occurrence, so a reload keeps each listener on its sockets.
  bool serves(const conf::HostPort& configured, size_t nth) const {
    return requested.host == configured.host && requested.port == configured.port &&
           occurrence == nth;
  }
};

// How many listeners before `listeners[index]` have the same configured address.
size_t address_occurrence(const std::vector<conf::Listener>& listeners, size_t index);

// Opens `count` sockets for a listener. Throws std::runtime_error naming
// the address and the system error.
ListenSocketSet open_listen_sockets(const conf::Listener& listener, size_t count);
// Adds sockets to a set until it has `count` (same address and port).
void grow_listen_sockets(ListenSocketSet& set, const conf::Listener& listener, size_t count);
void close_listen_sockets(ListenSocketSet& set);

}  // namespace torii::gateway

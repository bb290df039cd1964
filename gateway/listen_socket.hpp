// Listening sockets, created by the master: one SO_REUSEPORT socket per
// listener per worker, so the kernel spreads connections across workers
// and a worker's queue survives its death (the master keeps the socket).
#pragma once

#include <string>
#include <vector>

#include "conf/config.hpp"

namespace torii::gateway {

struct ListenSocketSet {
  std::string address;   // resolved "ip:port" (port 0 replaced by the real port)
  std::vector<int> fds;  // one per worker
};

// Throws std::runtime_error naming the address and the system error.
ListenSocketSet open_listen_sockets(const conf::Listener& listener, unsigned workers);
void close_listen_sockets(ListenSocketSet& set);

}  // namespace torii::gateway

#include "gateway/listen_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace torii::gateway {

namespace {

struct Address {
  sockaddr_storage ss{};
  socklen_t len = 0;
};

Address to_sockaddr(const conf::HostPort& hp) {
  Address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, hp.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(hp.port);
    a.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, hp.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(hp.port);
    a.len = sizeof(sockaddr_in6);
  } else {
    throw std::runtime_error("listener address " + hp.str() + " is not an IP address");
  }
  return a;
}

uint16_t port_of(const Address& a) {
  return ntohs(a.ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&a.ss)->sin_port
                                         : reinterpret_cast<const sockaddr_in6*>(&a.ss)->sin6_port);
}

void set_port(Address& a, uint16_t port) {
  if (a.ss.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.ss)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&a.ss)->sin6_port = htons(port);
  }
}

[[noreturn]] void fail(const std::string& what, const conf::HostPort& hp, int err) {
  throw std::runtime_error(what + " " + hp.str() + ": " + std::strerror(err));
}

}  // namespace

namespace {

int open_one(const Address& addr, const conf::Listener& listener) {
  int fd = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket for", listener.address, errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      (addr.ss.ss_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
      bind(fd, reinterpret_cast<const sockaddr*>(&addr.ss), addr.len) != 0 ||
      listen(fd, listener.backlog) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot listen on", listener.address, err);
  }
  return fd;
}

}  // namespace

ListenSocketSet open_listen_sockets(const conf::Listener& listener, size_t count) {
  ListenSocketSet set;
  set.requested = listener.address;
  set.bound = listener.address;
  grow_listen_sockets(set, listener, count);
  return set;
}

void grow_listen_sockets(ListenSocketSet& set, const conf::Listener& listener, size_t count) {
  Address addr = to_sockaddr(set.bound);
  try {
    while (set.fds.size() < count) {
      const int fd = open_one(addr, listener);
      set.fds.push_back(fd);
      if (set.bound.port == 0) {
        // Port 0: the kernel picked one; every other socket joins it.
        Address bound;
        bound.len = sizeof bound.ss;
        getsockname(fd, reinterpret_cast<sockaddr*>(&bound.ss), &bound.len);
        set.bound.port = port_of(bound);
        set_port(addr, set.bound.port);
      }
    }
  } catch (...) {
    if (set.fds.empty()) set.bound = set.requested;
    throw;
  }
}

void close_listen_sockets(ListenSocketSet& set) {
  for (int fd : set.fds) ::close(fd);
  set.fds.clear();
}

size_t address_occurrence(const std::vector<conf::Listener>& listeners, size_t index) {
  size_t n = 0;
  for (size_t k = 0; k < index; ++k) {
    const conf::HostPort& a = listeners[k].address;
    const conf::HostPort& b = listeners[index].address;
    if (a.host == b.host && a.port == b.port) ++n;
  }
  return n;
}

}  // namespace torii::gateway

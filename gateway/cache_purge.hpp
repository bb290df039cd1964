// Cache purges, master side: the authenticated admin request
// (POST /cache/purge), its fan-out to every worker over the control
// channels, and the combined answer ({"purged": N, "workers": W}).
#pragma once

#include <uv.h>

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/admin_server.hpp"
#include "gateway/control_channel.hpp"

namespace torii::gateway {

struct PurgeRequest {
  std::string host;    // normalised (lower case, no port); empty: every host
  std::string target;  // path and query
  bool prefix = false;
};

// Parses the JSON body: {"host": "...", "path": "/exact?q"} or
// {"prefix": "/p", "host": "..." (optional)}. On error returns false and
// sets `error` to a message for the client.
bool parse_purge_request(std::string_view body, PurgeRequest& out, std::string& error);

// Bearer-token check of a mutating admin request: 0 when allowed, else the
// status to answer with (403: no token configured, 401: missing or wrong).
int check_admin_token(const http::MessageHead& head, std::string_view token);

// Worker side: the reply to a purge message (nullopt-like empty string if
// `message` is not a purge).
std::string handle_purge_message(const std::string& message,
                                 const std::function<size_t(const PurgeRequest&)>& purge);

class PurgeCoordinator {
 public:
  explicit PurgeCoordinator(uv_loop_t* loop);
  PurgeCoordinator(const PurgeCoordinator&) = delete;
  PurgeCoordinator& operator=(const PurgeCoordinator&) = delete;

  // Sends the purge to every channel and answers through `respond` once
  // each has replied (or closed), or after the timeout with what came back.
  void start(const PurgeRequest& req, const std::vector<ControlChannel*>& channels,
             AdminServer::Responder respond);
  // A message from a worker's channel.
  void on_message(ControlChannel* from, const std::string& message);
  // A channel closed (its worker exited): stop waiting for it.
  void on_channel_closed(ControlChannel* channel);
  void close();

 private:
  struct Pending {
    uint64_t id = 0;
    std::vector<ControlChannel*> waiting;
    size_t workers = 0;  // that answered
    uint64_t purged = 0;
    uint64_t deadline_ms = 0;
    AdminServer::Responder respond;
  };
  void finish(std::list<Pending>::iterator it, bool timed_out);
  void check_deadlines();

  uv_loop_t* loop_;
  uv_timer_t timer_;
  bool timer_running_ = false;
  bool closed_ = false;
  uint64_t next_id_ = 1;
  std::list<Pending> pending_;
};

}  // namespace torii::gateway

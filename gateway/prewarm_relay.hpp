// Master side of shared pre-warming (see prewarm_share.hpp): grants one
// worker at a time the right to fetch a pre-warm URL (a lease), keeps the
// latest copy of each, forwards new copies to every other worker, and
// answers a starting worker's sync with everything it has.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "gateway/control_channel.hpp"

namespace torii::gateway {

class PrewarmRelay {
 public:
  // `live_channels` lists the channels of the running workers (for broadcasts).
  using Channels = std::function<std::vector<ControlChannel*>()>;
  PrewarmRelay(uv_loop_t* loop, Channels live_channels)
      : loop_(loop), live_channels_(std::move(live_channels)) {}

  // Handles a prewarm-* message; false if `message` is something else.
  bool on_message(ControlChannel& from, const std::string& message);
  // A worker went away: its leases are released.
  void on_channel_closed(ControlChannel* channel);
  size_t copies() const { return copies_.size(); }

 private:
  struct Lease {
    ControlChannel* holder = nullptr;
    uint64_t until_ms = 0;
  };
  static constexpr uint64_t kLeaseMs = 30'000;  // longer than any sane fetch

  uv_loop_t* loop_;
  Channels live_channels_;
  struct Copy {
    std::string entry;  // the prewarm-entry message
    int64_t response_time_ms = 0;
    std::string fingerprint;  // the route configuration it was made under
  };
  std::unordered_map<std::string, Copy> copies_;
  std::unordered_map<std::string, Lease> leases_;
};

}  // namespace torii::gateway

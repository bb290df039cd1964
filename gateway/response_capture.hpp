// Builds a stored response from an upstream answer while it is relayed:
// the head is rewritten once, body bytes are appended as they arrive (the
// one copy a cached body ever gets), and the result is frozen into a
// shared immutable StoredResponse at the end.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/policy.hpp"
#include "cache/stored_response.hpp"
#include "common/http1_parser.hpp"
#include "gateway/header_rewrite.hpp"

namespace torii::gateway {

// What identifies the request a response is stored for.
struct CaptureRequest {
  const http::MessageHead* head = nullptr;
  std::string key;
  std::string host;
  std::string target;
  int64_t request_time_ms = 0;
};

class ResponseCapture {
 public:
  // Decides whether `resp` may be stored and, if so, starts building it.
  cache::StoreDecision start(const CaptureRequest& req, const http::MessageHead& resp,
                             const cache::StorePolicy& policy, const ForwardContext& ctx,
                             int64_t now_ms);
  // Appends body bytes; over the size limit the capture is dropped.
  void add(const std::vector<std::string_view>& spans);
  bool active() const { return building_ != nullptr; }
  bool dropped_too_large() const { return too_large_; }
  // The finished response (null if nothing is being captured).
  cache::ResponsePtr finish();
  void reset() {
    building_.reset();
    too_large_ = false;
  }

 private:
  std::unique_ptr<cache::StoredResponse> building_;
  uint64_t max_body_ = 0;
  bool too_large_ = false;
};

// A stored response confirmed by a 304: same head and body, freshness
// restarted from the 304 (its Cache-Control/Expires when it has them,
// otherwise the old lifetime). RFC 9111 4.3.4.
cache::ResponsePtr refreshed_by_304(const cache::StoredResponse& old,
                                    const http::MessageHead& not_modified,
                                    const http::MessageHead& req, const cache::StorePolicy& policy,
                                    int64_t request_time_ms, int64_t now_ms);

}  // namespace torii::gateway

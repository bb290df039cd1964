// Pre-warmed responses shared between workers through the master: one
// worker fetches a pre-warm URL, the master keeps the latest copy and hands
// it to every other worker (and to the workers a reload or a respawn
// starts), so a refresh cycle costs the origin one request per URL for the
// whole gateway. This file is the pure part: the control messages and the
// encoding of a stored response (JSON metadata, a newline, the raw bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "cache/stored_response.hpp"
#include "conf/config.hpp"

namespace torii::gateway {

// Messages (the "op" field):
//   worker -> master  prewarm-sync                     at start: send me what you have
//                     prewarm-claim {key}              may I fetch this URL now?
//                     prewarm-share {...}\n<bytes>     here is a fresh copy
//                     prewarm-failed {key}             my fetch failed (lease released)
//   master -> worker  prewarm-entry {...}\n<bytes>     a copy (sync answer or broadcast)
//                     prewarm-sync-done                the sync answer is complete
//                     prewarm-grant {key, granted}     the answer to a claim
//                     prewarm-failed {key}             another worker's fetch failed
inline constexpr std::string_view kOpSync = "prewarm-sync";
inline constexpr std::string_view kOpClaim = "prewarm-claim";
inline constexpr std::string_view kOpShare = "prewarm-share";
inline constexpr std::string_view kOpFailed = "prewarm-failed";
inline constexpr std::string_view kOpEntry = "prewarm-entry";
inline constexpr std::string_view kOpSyncDone = "prewarm-sync-done";
inline constexpr std::string_view kOpGrant = "prewarm-grant";

// Largest response shared this way; bigger ones are fetched by each worker.
inline constexpr size_t kMaxSharedBytes = size_t{8} << 20;

// What a route's stored heads depend on besides the response (its name,
// upstream and own response headers): a copy made under another route
// configuration is not taken.
std::string route_fingerprint(const conf::Route& route);

// A message's "op" and the key it concerns (empty when absent or not JSON).
struct ControlHeader {
  std::string op;
  std::string key;
  bool granted = false;
  int64_t response_time_ms = 0;  // of the copy a claimer holds, or of a shared copy
  std::string fingerprint;       // of the claimer's route, or of a shared copy
};
ControlHeader peek_control(std::string_view message);

std::string make_simple(std::string_view op, std::string_view key = {}, bool granted = false);
// A claim, saying how recent the claimer's copy is (0: none).
std::string make_claim(std::string_view key, int64_t have_response_time_ms,
                       std::string_view fingerprint);

// A stored response as a message with operation `op`.
std::string encode_shared(std::string_view op, const cache::StoredResponse& r,
                          std::string_view fingerprint);
// Decodes a prewarm-share / prewarm-entry message; nullopt when malformed.
struct SharedResponse {
  cache::StoredResponse response;
  std::string fingerprint;
};
std::optional<SharedResponse> decode_shared(std::string_view message);
// The same message with another op (the master turns a share into an entry).
std::string with_op(std::string_view message, std::string_view op);

}  // namespace torii::gateway

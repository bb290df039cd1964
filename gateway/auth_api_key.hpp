// API keys (pure: no I/O). Keys come from the configuration (a list) and/or
// from a key file's text (the caller reads the file, again on reload). Only
// SHA-256 digests of the keys are kept: a lookup hashes the presented key and
// looks the digest up, so its time does not depend on how much of a real key
// the presented one shares, and the secrets are not left in memory. A match
// yields the key's name, which can be logged or forwarded instead of the key.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace torii::gateway {

class ApiKeySet {
 public:
  // Shorter keys are refused when loading (too easy to guess).
  static constexpr size_t kMinKeyLength = 16;
  // Names are at most this long, made of letters, digits and "-._@".
  static constexpr size_t kMaxNameLength = 64;

  // Adds one key. `name` empty: the key is named "key-N", N being its
  // 1-based position in the set. Throws std::invalid_argument (the message
  // never contains the key) when the key is too short, has whitespace or
  // control characters, is already in the set, or the name is invalid.
  void add(std::string_view key, std::string_view name = {});

  // Adds every key of a config list, named "key-N"; the error names the
  // list index ("api key 2: ...").
  void add_list(const std::vector<std::string>& keys);

  // Adds the keys of a key file's text: one key per line, as "key",
  // "name:key" or "name key" (the latter form allows ':' in the key);
  // blank lines and lines starting with '#' are ignored, CRLF accepted.
  // Errors are "<source>:<line>: ..." (std::invalid_argument).
  void add_file_text(std::string_view text, std::string_view source);

  // The name of the key equal to `presented`; nullopt when there is none.
  std::optional<std::string_view> match(std::string_view presented) const;

  size_t size() const { return names_by_digest_.size(); }
  bool empty() const { return names_by_digest_.empty(); }

 private:
  std::unordered_map<std::string, std::string> names_by_digest_;  // SHA-256 -> name
};

// The percent-decoded value of parameter `name` in a request target's query
// (the part after '?', without it), for keys passed as "?api_key=...". The
// first occurrence wins; "name" alone gives "". '+' is kept as is (keys in
// base64 contain it). nullopt when absent or its %-escapes are invalid.
std::optional<std::string> query_parameter(std::string_view query, std::string_view name);

// `query` without any `name` parameter, so a key given in the query is not
// passed on upstream.
std::string remove_query_parameter(std::string_view query, std::string_view name);

}  // namespace torii::gateway

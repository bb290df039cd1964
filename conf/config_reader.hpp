// Building blocks of config reading, shared by the files that read config
// sections: text helpers (quoting, did-you-mean), value parsers that say
// what is wrong, and Node / ObjectReader, which carry every value's JSON
// path so that each error names the exact place it comes from.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.hpp"

namespace torii::conf::detail {

using json = nlohmann::json;

// ---- text helpers
std::string quote(std::string_view s);  // JSON-style quoting
std::string quote_list(const std::vector<std::string>& items);
bool is_digit(char c);
bool is_alpha(char c);
char lower_char(char c);
char upper_char(char c);
std::string to_lower(std::string s);
std::string to_upper(std::string s);
bool all_digits(std::string_view s);
std::string pointer_append(const std::string& base, std::string_view token);
size_t edit_distance(std::string_view a, std::string_view b);
// " (did you mean \"x\"?)" for a close candidate, else "".
std::string suggestion_suffix(const std::string& word, const std::vector<std::string>& candidates);
std::string describe(const json& value);  // "the string \"x\"", "an array", ...
std::string describe_bytes(uint64_t bytes);

// ---- value parsers (`why` gets the explanation on failure)
std::optional<Millis> duration_from(std::string_view s, std::string* why);
std::optional<uint64_t> size_from(std::string_view s, std::string* why);
bool is_ipv4_literal(const std::string& host);
bool is_ipv6_literal(const std::string& host);
bool is_ip_literal(const std::string& host);
bool is_host_name(std::string_view host);
std::optional<HostPort> host_port_from(std::string_view s, std::string* why);
std::string canonical_host(const std::string& host);
bool same_address(const HostPort& a, const HostPort& b);

// A JSON value together with its RFC 6901 path and the file it came from, so
// any check can fail with a precise ConfigError.
class Node {
 public:
  Node(const std::string& file, const json& value, std::string path)
      : file_(&file), value_(&value), path_(std::move(path)) {}

  const json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }

  Node child(const std::string& key) const {
    return Node(*file_, value_->at(key), pointer_append(path_, key));
  }
  Node element(size_t index) const {
    return Node(*file_, value_->at(index), pointer_append(path_, std::to_string(index)));
  }

  [[noreturn]] void fail(const std::string& problem) const {
    throw ConfigError(*file_, path_, problem);
  }
  [[noreturn]] void fail_type(const std::string& expected) const {
    fail("expected " + expected + ", got " + describe(*value_));
  }

 private:
  const std::string* file_;
  const json* value_;
  std::string path_;
};

// Reads one JSON object whose allowed keys are declared up front. Unknown
// keys are rejected before anything else is read, so a typo such as "adress"
// is reported as a typo rather than as the missing "address".
class ObjectReader {
 public:
  ObjectReader(const Node& node, std::vector<std::string> known_keys)
      : node_(node), known_keys_(std::move(known_keys)) {
    if (!node_.value().is_object()) node_.fail_type("an object");
    for (const auto& item : node_.value().items()) {
      const std::string& key = item.key();
      if (std::find(known_keys_.begin(), known_keys_.end(), key) != known_keys_.end()) continue;
      std::string problem = "unknown key " + quote(key);
      const std::string hint = suggestion_suffix(key, known_keys_);
      problem += hint.empty() ? " (expected one of: " + quote_list(known_keys_) + ")" : hint;
      node_.child(key).fail(problem);
    }
  }

  std::optional<Node> optional(const std::string& key) const {
    if (!node_.value().contains(key)) return std::nullopt;
    return node_.child(key);
  }

  Node required(const std::string& key) const {
    if (!node_.value().contains(key)) node_.fail("missing required key " + quote(key));
    return node_.child(key);
  }

 private:
  Node node_;
  std::vector<std::string> known_keys_;
};

// ---- typed readers: each fails with the node's path and what is wrong
std::string read_string(const Node& node);
std::string integer_expectation(uint64_t min, uint64_t max);
uint64_t read_uint(const Node& node, uint64_t min, uint64_t max);
uint32_t read_u32(const Node& node, uint32_t min);
uint64_t read_size(const Node& node, uint64_t min, uint64_t max);
uint32_t read_size_u32(const Node& node, uint32_t min);
Millis read_duration(const Node& node);
Millis read_timeout(const Node& node);
Millis read_duration_at_least(const Node& node, Millis min, const std::string& min_text);
Millis read_timeout_at_most(const Node& node, Millis max, const std::string& max_text);
bool read_bool(const Node& node);
HostPort read_host_port(const Node& node);
HostPort read_bind_address(const Node& node);
HostPort read_server_address(const Node& node);
std::vector<Node> read_array(const Node& node, bool allow_empty);
// " (already at /routes/0/cache/prewarm/2)" when `value` is in `earlier`.
std::string earlier_position(const std::vector<std::string>& earlier, const std::string& value,
                             const std::string& array_path);
// One of a fixed set of words; `what` names the value in the message.
std::string read_choice(const Node& node, const std::string& what,
                        const std::vector<std::string>& choices);
// A relative path is relative to the config file's folder.
std::string path_near_config(const std::string& config_file, const std::string& path);
// A file the gateway reads at start-up and reload: readable now. `what`: "certificate"...
std::string read_pem_path(const Node& node, const std::string& what);
// "TLSv1.2" or "TLSv1.3" (older protocols are refused with a reason).
std::string read_tls_min_version(const Node& node);

}  // namespace torii::conf::detail

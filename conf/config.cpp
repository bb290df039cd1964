// Config loading and validation. Structure:
//   1. text helpers (quoting, JSON pointers, edit distance)
//   2. value parsers with explanations (durations, sizes, host:port)
//   3. Node / ObjectReader: a JSON value plus its path, so every error names
//      the exact place it comes from; ObjectReader rejects unknown keys
//   4. one reader per config section, then cross-section checks
//   5. JSON parsing (duplicate keys, line:column for syntax errors) and the API
#include "conf/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

namespace torii::conf {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------
// 1. Text helpers

// JSON-style quoting, so control characters in user input stay readable.
std::string quote(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string quote_list(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ", ";
    out += quote(item);
  }
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char lower_char(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
char upper_char(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string to_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), lower_char);
  return s;
}

std::string to_upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), upper_char);
  return s;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// One RFC 6901 reference token appended to a pointer ("~" -> "~0", "/" -> "~1").
std::string pointer_append(const std::string& base, std::string_view token) {
  std::string out = base;
  out += '/';
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// Optimal string alignment distance: insert, delete, substitute, or swap two
// adjacent characters, each costing 1 (so "atuo" is one edit from "auto").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean "x"?)" or "".
std::string suggestion_suffix(const std::string& word, const std::vector<std::string>& candidates) {
  if (auto best = did_you_mean(word, candidates)) return " (did you mean " + quote(*best) + "?)";
  return "";
}

// Short description of a JSON value for "expected X, got Y" messages.
std::string describe(const json& value) {
  constexpr size_t kMaxShown = 40;
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return value.get<bool>() ? "true" : "false";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "the number " + value.dump();
    case json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      if (s.size() > kMaxShown) return "the string " + quote(s.substr(0, kMaxShown)) + "...";
      return "the string " + quote(s);
    }
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

// ---------------------------------------------------------------------------
// 2. Value parsers. Each returns the value, or nullopt and sets *why to a
// short explanation used in validation messages (the public helpers pass
// a scratch string and only report success or failure).

constexpr std::string_view kDurationHint = "use a number with a unit ms, s, m or h, e.g. \"30s\"";
constexpr std::string_view kSizeHint =
    "use an integer with an optional unit B, KB, KiB, MB, MiB, GB or GiB, e.g. \"64MiB\"";

// Reads a run of decimal digits at `pos` into `out`, consuming all of them
// even on overflow (so the unit after them is still found); false on overflow.
bool read_digits(std::string_view s, size_t& pos, uint64_t& out) {
  out = 0;
  bool fits = true;
  for (; pos < s.size() && is_digit(s[pos]); ++pos) {
    const uint64_t digit = static_cast<uint64_t>(s[pos] - '0');
    if (out > (std::numeric_limits<uint64_t>::max() - digit) / 10) fits = false;
    if (fits) out = out * 10 + digit;
  }
  return fits;
}

std::optional<Millis> duration_from(std::string_view s, std::string* why) {
  constexpr size_t kMaxFractionDigits = 9;
  size_t pos = 0;
  uint64_t whole = 0;
  const bool fits = read_digits(s, pos, whole);
  if (pos == 0) {
    *why = std::string("expected a number first; ") + std::string(kDurationHint);
    return std::nullopt;
  }
  // Optional fraction, kept as an integer numerator over 10^digits so that
  // "1.5s" is exactly 1500 ms (no floating point rounding).
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  if (pos < s.size() && s[pos] == '.') {
    const size_t start = ++pos;
    while (pos < s.size() && is_digit(s[pos])) {
      if (pos - start == kMaxFractionDigits) {
        *why = "too many decimal places";
        return std::nullopt;
      }
      fraction = fraction * 10 + static_cast<uint64_t>(s[pos] - '0');
      fraction_scale *= 10;
      ++pos;
    }
    if (pos == start) {
      *why = "expected digits after the decimal point";
      return std::nullopt;
    }
  }
  const std::string_view unit = s.substr(pos);
  uint64_t unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60'000;
  } else if (unit == "h") {
    unit_ms = 3'600'000;
  } else {
    *why = (unit.empty() ? std::string("missing unit; ") : "unknown unit " + quote(unit) + "; ") +
           std::string(kDurationHint);
    return std::nullopt;
  }
  const uint64_t max_ms = static_cast<uint64_t>(std::numeric_limits<Millis::rep>::max());
  if (!fits || whole > max_ms / unit_ms) {
    *why = "too large";
    return std::nullopt;
  }
  // fraction < 10^9 and unit_ms <= 3.6e6, so the product fits in 64 bits.
  const uint64_t fraction_units = fraction * unit_ms;
  if (fraction_units % fraction_scale != 0) {
    *why = "finer than a millisecond";
    return std::nullopt;
  }
  const uint64_t fraction_ms = fraction_units / fraction_scale;
  if (whole * unit_ms > max_ms - fraction_ms) {
    *why = "too large";
    return std::nullopt;
  }
  return Millis(static_cast<Millis::rep>(whole * unit_ms + fraction_ms));
}

std::optional<uint64_t> size_from(std::string_view s, std::string* why) {
  size_t pos = 0;
  uint64_t count = 0;
  const bool fits = read_digits(s, pos, count);
  if (pos == 0) {
    *why = std::string("expected a number first; ") + std::string(kSizeHint);
    return std::nullopt;
  }
  const std::string_view unit = s.substr(pos);
  static constexpr std::pair<std::string_view, uint64_t> kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1000},
      {"KiB", 1ull << 10},
      {"MB", 1000000},
      {"MiB", 1ull << 20},
      {"GB", 1000000000},
      {"GiB", 1ull << 30},
  };
  const auto* found = std::find_if(std::begin(kUnits), std::end(kUnits),
                                   [&](const auto& entry) { return entry.first == unit; });
  if (found == std::end(kUnits)) {
    *why = "unknown unit " + quote(unit) + "; " + std::string(kSizeHint);
    return std::nullopt;
  }
  if (!fits || count > std::numeric_limits<uint64_t>::max() / found->second) {
    *why = "too large";
    return std::nullopt;
  }
  return count * found->second;
}

bool is_ipv4_literal(const std::string& host) {
  in_addr addr{};
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool is_ipv6_literal(const std::string& host) {
  in6_addr addr{};
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

bool is_ip_literal(const std::string& host) {
  return is_ipv4_literal(host) || is_ipv6_literal(host);
}

// DNS-style name: dot-separated labels of letters, digits, '-' and '_' (seen
// in real internal names), no label starting or ending with '-', and a last
// label that is not all digits (so "256.1.1.1" is not taken for a name).
bool is_host_name(std::string_view host) {
  constexpr size_t kMaxName = 253;
  constexpr size_t kMaxLabel = 63;
  if (host.empty() || host.size() > kMaxName) return false;
  std::string_view last_label;
  size_t start = 0;
  while (true) {
    const size_t dot = host.find('.', start);
    const std::string_view label =
        host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > kMaxLabel) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') return false;
    }
    last_label = label;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return !all_digits(last_label);
}

std::optional<HostPort> host_port_from(std::string_view s, std::string* why) {
  std::string_view host;
  std::string_view port;
  if (s.empty()) {
    *why = "empty address";
    return std::nullopt;
  }
  if (s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) {
      *why = "missing ']' after IPv6 address";
      return std::nullopt;
    }
    host = s.substr(1, close - 1);
    const std::string_view rest = s.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      *why = "missing port (expected \"[ipv6]:port\")";
      return std::nullopt;
    }
    port = rest.substr(1);
    if (!is_ipv6_literal(std::string(host))) {
      *why = "invalid IPv6 address " + quote(host);
      return std::nullopt;
    }
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      *why = "missing port (expected \"host:port\")";
      return std::nullopt;
    }
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      *why = "IPv6 addresses must be written in brackets, e.g. \"[::1]:8080\"";
      return std::nullopt;
    }
    if (host.empty()) {
      *why = "missing host (expected \"host:port\")";
      return std::nullopt;
    }
    if (!is_ipv4_literal(std::string(host)) && !is_host_name(host)) {
      *why = "invalid host " + quote(host);
      return std::nullopt;
    }
  }
  constexpr size_t kMaxPortDigits = 5;
  size_t pos = 0;
  uint64_t port_number = 0;
  if (!all_digits(port) || port.size() > kMaxPortDigits || !read_digits(port, pos, port_number) ||
      port_number > std::numeric_limits<uint16_t>::max()) {
    *why = "invalid port " + quote(port) + " (expected 0..65535)";
    return std::nullopt;
  }
  return HostPort{std::string(host), static_cast<uint16_t>(port_number)};
}

// Canonical text of an IP literal ("0:0::1" -> "::1") for comparing
// addresses; names are compared case-insensitively.
std::string canonical_host(const std::string& host) {
  char text[INET6_ADDRSTRLEN] = {};
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1 && inet_ntop(AF_INET6, &v6, text, sizeof text)) {
    return text;
  }
  return to_lower(host);
}

bool same_address(const HostPort& a, const HostPort& b) {
  return a.port == b.port && canonical_host(a.host) == canonical_host(b.host);
}

// ---------------------------------------------------------------------------
// 3. Node and ObjectReader

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

// ---------------------------------------------------------------------------
// Typed readers for single values.

std::string read_string(const Node& node) {
  if (!node.value().is_string()) node.fail_type("a string");
  return node.value().get<std::string>();
}

// Wording for an integer range: "a positive integer", "an integer between 1 and 256".
std::string integer_expectation(uint64_t min, uint64_t max) {
  constexpr uint64_t kOpenEnded = std::numeric_limits<uint32_t>::max();
  if (max >= kOpenEnded && min == 0) return "a non-negative integer";
  if (max >= kOpenEnded && min == 1) return "a positive integer";
  return "an integer between " + std::to_string(min) + " and " + std::to_string(max);
}

uint64_t read_uint(const Node& node, uint64_t min, uint64_t max) {
  const json& v = node.value();
  const std::string expected = integer_expectation(min, max);
  // Floats, negative numbers and non-numbers are all "not unsigned".
  if (!v.is_number_unsigned()) node.fail_type(expected);
  const uint64_t n = v.get<uint64_t>();
  if (n < min) node.fail_type(expected);
  if (n > max) node.fail("must be at most " + std::to_string(max) + ", got " + std::to_string(n));
  return n;
}

uint32_t read_u32(const Node& node, uint32_t min) {
  return static_cast<uint32_t>(read_uint(node, min, std::numeric_limits<uint32_t>::max()));
}

// A size: a string such as "64MiB" or a plain non-negative integer (bytes).
uint64_t read_size(const Node& node, uint64_t min, uint64_t max) {
  const json& v = node.value();
  uint64_t bytes = 0;
  if (v.is_number_unsigned()) {
    bytes = v.get<uint64_t>();
  } else if (v.is_string()) {
    std::string why;
    const auto parsed = size_from(v.get_ref<const std::string&>(), &why);
    if (!parsed) node.fail("invalid size " + quote(v.get_ref<const std::string&>()) + ": " + why);
    bytes = *parsed;
  } else {
    node.fail_type("a size such as \"64MiB\" or a non-negative number of bytes");
  }
  if (bytes < min) {
    node.fail("must be at least " + std::to_string(min) + (min == 1 ? " byte" : " bytes") +
              ", got " + describe(v));
  }
  if (bytes > max) {
    node.fail("must be at most " + std::to_string(max) + " bytes, got " + describe(v));
  }
  return bytes;
}

uint32_t read_size_u32(const Node& node, uint32_t min) {
  return static_cast<uint32_t>(read_size(node, min, std::numeric_limits<uint32_t>::max()));
}

// A duration string such as "30s"; zero is allowed.
Millis read_duration(const Node& node) {
  const json& v = node.value();
  if (!v.is_string()) node.fail_type("a duration string such as \"30s\"");
  const std::string& text = v.get_ref<const std::string&>();
  std::string why;
  const auto parsed = duration_from(text, &why);
  if (!parsed) node.fail("invalid duration " + quote(text) + ": " + why);
  return *parsed;
}

// A duration string that must be greater than zero (a zero timeout would
// fire at once, so it is always a mistake).
Millis read_timeout(const Node& node) {
  const Millis duration = read_duration(node);
  if (duration.count() == 0) {
    node.fail("must be greater than zero, got " + quote(node.value().get<std::string>()));
  }
  return duration;
}

// A duration of at least `min`, spelled `min_text` in the message ("1s").
Millis read_duration_at_least(const Node& node, Millis min, const std::string& min_text) {
  const Millis duration = read_duration(node);
  if (duration < min) {
    node.fail("must be at least " + min_text + ", got " + quote(node.value().get<std::string>()));
  }
  return duration;
}

// A timeout (greater than zero) of at most `max`, spelled `max_text` in the message ("10m").
Millis read_timeout_at_most(const Node& node, Millis max, const std::string& max_text) {
  const Millis duration = read_timeout(node);
  if (duration > max) {
    node.fail("must be at most " + max_text + ", got " + quote(node.value().get<std::string>()));
  }
  return duration;
}

bool read_bool(const Node& node) {
  if (!node.value().is_boolean()) node.fail_type("true or false");
  return node.value().get<bool>();
}

// "268435456 bytes (256MiB)": a byte count with its exact binary unit when
// it has one, for messages about memory budgets.
std::string describe_bytes(uint64_t bytes) {
  std::string out = std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
  static constexpr std::pair<uint64_t, std::string_view> kUnits[] = {
      {uint64_t{1} << 30, "GiB"}, {uint64_t{1} << 20, "MiB"}, {uint64_t{1} << 10, "KiB"}};
  for (const auto& [unit, name] : kUnits) {
    if (bytes >= unit && bytes % unit == 0) {
      return out + " (" + std::to_string(bytes / unit) + std::string(name) + ")";
    }
  }
  return out;
}

HostPort read_host_port(const Node& node) {
  const std::string text = read_string(node);
  std::string why;
  auto parsed = host_port_from(text, &why);
  if (!parsed) node.fail("invalid address " + quote(text) + ": " + why);
  return *parsed;
}

// Addresses we bind to: IP literals only (binding to a name would depend on
// resolution at start-up); port 0 lets the OS pick a free port (tests).
HostPort read_bind_address(const Node& node) {
  HostPort address = read_host_port(node);
  if (!is_ip_literal(address.host)) {
    node.fail("the host must be an IP address, not a name (" + quote(address.host) +
              "); use e.g. \"127.0.0.1:" + std::to_string(address.port) +
              "\" or \"[::1]:" + std::to_string(address.port) + "\"");
  }
  return address;
}

// Upstream servers: names are fine (resolved by the upstream module), but
// port 0 cannot be connected to.
HostPort read_server_address(const Node& node) {
  HostPort address = read_host_port(node);
  if (address.port == 0) {
    node.fail("invalid address " + quote(address.str()) + ": port must be 1..65535");
  }
  return address;
}

// Elements of an array (with their paths); optionally it must not be empty.
std::vector<Node> read_array(const Node& node, bool allow_empty) {
  if (!node.value().is_array()) node.fail_type("an array");
  if (!allow_empty && node.value().empty()) node.fail("must not be empty");
  std::vector<Node> elements;
  for (size_t i = 0; i < node.value().size(); ++i) elements.push_back(node.element(i));
  return elements;
}

// " (already at /routes/0/cache/prewarm/2)" when `value` is in `earlier`,
// whose elements sit at the same indexes of the array at `array_path`.
std::string earlier_position(const std::vector<std::string>& earlier, const std::string& value,
                             const std::string& array_path) {
  const auto found = std::find(earlier.begin(), earlier.end(), value);
  if (found == earlier.end()) return "";
  return " (already at " +
         pointer_append(array_path, std::to_string(static_cast<size_t>(found - earlier.begin()))) +
         ")";
}

// ---------------------------------------------------------------------------
// 4. Sections

constexpr uint32_t kMaxWorkers = 256;

uint32_t read_workers(const Node& node) {
  const json& v = node.value();
  const std::string expected =
      "\"auto\" or an integer between 1 and " + std::to_string(kMaxWorkers);
  if (v.is_string()) {
    if (v.get_ref<const std::string&>() != "auto") node.fail_type(expected);
    const unsigned cpus = std::thread::hardware_concurrency();  // 0 when unknown
    return std::clamp<uint32_t>(cpus, 1, kMaxWorkers);
  }
  if (!v.is_number_unsigned()) node.fail_type(expected);
  const uint64_t n = v.get<uint64_t>();
  if (n < 1 || n > kMaxWorkers) node.fail_type(expected);
  return static_cast<uint32_t>(n);
}

std::string read_log_level(const Node& node) {
  static const std::vector<std::string> kLevels = {"debug", "info", "warn", "error"};
  std::string level = read_string(node);
  if (std::find(kLevels.begin(), kLevels.end(), level) != kLevels.end()) return level;
  const std::string hint = suggestion_suffix(level, kLevels);
  node.fail("unknown log level " + quote(level) +
            (hint.empty() ? " (expected one of: " + quote_list(kLevels) + ")" : hint));
}

// Listener "tls". Certificate and key files are only checked for being
// readable here; their PEM contents, and whether each key matches its
// certificate, are checked when the TLS contexts are built from this config.

constexpr size_t kMaxTlsCertificates = 100;
constexpr Millis kMaxHandshakeTimeout{5 * 60'000};
constexpr Millis kMinTicketKeyRotation{10'000};
constexpr Millis kMaxTicketKeyRotation{7 * 24 * 3'600'000};

// A file path from the config: a relative path is relative to the config
// file's folder (kept as is when the config's name has no folder part).
std::string path_near_config(const std::string& config_file, const std::string& path) {
  if (path.front() == '/') return path;
  const size_t slash = config_file.rfind('/');
  if (slash == std::string::npos) return path;
  return config_file.substr(0, slash + 1) + path;
}

// A PEM file (`what`: "certificate", "private key") that the gateway reads at
// start-up and on every reload: it must be a regular file readable now.
std::string read_pem_path(const Node& node, const std::string& what) {
  const std::string text = read_string(node);
  if (text.empty()) node.fail("the " + what + " path must not be empty");
  if (text.find('\0') != std::string::npos) node.fail("the " + what + " path contains a NUL byte");
  std::string path = path_near_config(node.file(), text);
  const std::string shown =
      quote(path) + (path == text ? "" : " (" + quote(text) + " relative to the config file)");
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int error = errno;
    node.fail("cannot read " + what + " file " + shown + ": " + std::strerror(error));
  }
  struct stat info {};
  const bool stat_ok = ::fstat(fd, &info) == 0;
  ::close(fd);
  if (stat_ok && S_ISDIR(info.st_mode)) {
    node.fail("cannot read " + what + " file " + shown + ": it is a directory");
  }
  if (stat_ok && !S_ISREG(info.st_mode)) {
    node.fail("cannot read " + what + " file " + shown + ": not a regular file");
  }
  return path;
}

// Why `name` (lower case) is not a server name a certificate can serve, or
// "" when it is one: a DNS name ("api.example.com") or one leading wildcard
// label and at least two more ("*.example.com").
std::string server_name_problem(const std::string& name) {
  constexpr size_t kMaxName = 253;
  constexpr size_t kMaxLabel = 63;
  if (name.empty()) return "a server name must not be empty";
  if (name == "*") {
    return "\"*\" alone is not a server name (a wildcard stands for the first label only, as "
           "in \"*.example.com\"; the first certificate already serves unknown names)";
  }
  const bool wildcard = name.rfind("*.", 0) == 0;
  const std::string_view rest = std::string_view(name).substr(wildcard ? 2 : 0);
  if (rest.find('*') != std::string_view::npos) {
    return "'*' is only allowed once, as the whole first label, as in \"*.example.com\"";
  }
  if (name.size() > kMaxName) {
    return "longer than " + std::to_string(kMaxName) + " characters (" +
           std::to_string(name.size()) + ")";
  }
  size_t labels = 0;
  std::string_view last_label;
  size_t start = 0;
  while (true) {
    const size_t dot = rest.find('.', start);
    const std::string_view label =
        rest.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return "empty label (a leading, trailing or double dot)";
    if (label.size() > kMaxLabel) {
      return "label " + quote(label) + " is longer than " + std::to_string(kMaxLabel) +
             " characters";
    }
    for (char c : label) {
      if (is_alpha(c) || is_digit(c) || c == '-') continue;
      if (static_cast<unsigned char>(c) >= 0x80) {
        return "non-ASCII character; write an internationalized name in its \"xn--\" form";
      }
      return "invalid character " + quote(std::string(1, c)) +
             " (a name is made of letters, digits, '-' and '.')";
    }
    if (label.front() == '-' || label.back() == '-') {
      return "label " + quote(label) + " starts or ends with '-'";
    }
    ++labels;
    last_label = label;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (all_digits(last_label)) return "an IP address is not a server name (SNI carries names only)";
  if (wildcard && labels < 2) {
    return "a wildcard needs at least two labels after \"*.\", as in \"*.example.com\"";
  }
  return "";
}

std::vector<std::string> read_server_names(const Node& node) {
  if (!node.value().is_array()) {
    node.fail_type("an array of server names such as [\"example.com\", \"*.example.com\"]");
  }
  if (node.value().empty()) {
    node.fail(
        "must not be empty (leave \"names\" out to use the DNS names of the certificate's "
        "subjectAltName)");
  }
  std::vector<std::string> names;
  for (const Node& element : read_array(node, /*allow_empty=*/false)) {
    const std::string text = read_string(element);
    std::string name = to_lower(text);
    const std::string problem = server_name_problem(name);
    if (!problem.empty()) element.fail("invalid server name " + quote(text) + ": " + problem);
    const std::string earlier = earlier_position(names, name, node.path());
    if (!earlier.empty()) {
      element.fail("duplicate server name " + quote(name) + earlier +
                   " (names are case-insensitive)");
    }
    names.push_back(std::move(name));
  }
  return names;
}

TlsCertificate read_tls_certificate(const Node& node) {
  const ObjectReader obj(node, {"cert", "key", "names"});
  TlsCertificate certificate;
  certificate.cert_path = read_pem_path(obj.required("cert"), "certificate");
  certificate.key_path = read_pem_path(obj.required("key"), "private key");
  if (auto n = obj.optional("names")) certificate.names = read_server_names(*n);
  return certificate;
}

std::string read_tls_min_version(const Node& node) {
  static const std::vector<std::string> kVersions = {"TLSv1.2", "TLSv1.3"};
  std::string version = read_string(node);
  if (std::find(kVersions.begin(), kVersions.end(), version) != kVersions.end()) return version;
  // Older protocols however spelled ("TLSv1.1", "tls1.0", "SSLv3", "TLS 1.1").
  std::string plain;
  for (char c : to_lower(version)) {
    if (c != 'v' && c != ' ' && c != '_') plain += c;
  }
  static const std::set<std::string> kObsolete = {"tls1",   "tls1.0", "tls1.1", "ssl2",
                                                  "ssl2.0", "ssl3",   "ssl3.0"};
  if (kObsolete.count(plain) != 0) {
    node.fail(quote(version) +
              " is not supported: TLS 1.0 and 1.1 (and SSL) are obsolete and insecure (RFC "
              "8996); use \"TLSv1.2\" (the default) or \"TLSv1.3\"");
  }
  node.fail("unknown TLS version " + quote(version) + suggestion_suffix(version, kVersions) +
            "; expected \"TLSv1.2\" or \"TLSv1.3\" (TLS 1.0 and 1.1 are not supported)");
}

// An OpenSSL cipher list ("ciphers") or TLS 1.3 suite list ("ciphersuites");
// OpenSSL itself judges the names when the TLS contexts are built.
std::string read_cipher_list(const Node& node, const std::string& key) {
  std::string list = read_string(node);
  if (list.empty()) node.fail(key + " must not be empty (leave it out for the default)");
  for (char c : list) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= ' ' || byte >= 0x7f) {
      node.fail(key + " " + quote(list) +
                " must not contain spaces, control characters or non-ASCII bytes (separate the "
                "names with ':')");
    }
  }
  return list;
}

ListenerTls read_listener_tls(const Node& node) {
  const ObjectReader obj(node, {"certificates", "min_version", "ciphers", "ciphersuites",
                                "handshake_timeout", "session_tickets", "ticket_key_rotation"});
  ListenerTls tls;
  const Node certificates = obj.required("certificates");
  if (!certificates.value().is_array()) {
    certificates.fail_type("an array of {\"cert\": ..., \"key\": ...} objects");
  }
  if (certificates.value().empty()) {
    certificates.fail("must not be empty: a TLS listener needs at least one certificate");
  }
  if (certificates.value().size() > kMaxTlsCertificates) {
    certificates.fail("at most " + std::to_string(kMaxTlsCertificates) + " certificates, got " +
                      std::to_string(certificates.value().size()));
  }
  for (const Node& element : read_array(certificates, /*allow_empty=*/false)) {
    tls.certificates.push_back(read_tls_certificate(element));
  }
  if (auto n = obj.optional("min_version")) tls.min_version = read_tls_min_version(*n);
  if (auto n = obj.optional("ciphers")) tls.ciphers = read_cipher_list(*n, "ciphers");
  if (auto n = obj.optional("ciphersuites")) {
    tls.ciphersuites = read_cipher_list(*n, "ciphersuites");
  }
  if (auto n = obj.optional("handshake_timeout")) {
    tls.handshake_timeout = read_timeout_at_most(*n, kMaxHandshakeTimeout, "5m");
  }
  if (auto n = obj.optional("session_tickets")) tls.session_tickets = read_bool(*n);
  if (auto n = obj.optional("ticket_key_rotation")) {
    tls.ticket_key_rotation = read_duration_at_least(*n, kMinTicketKeyRotation, "10s");
    if (tls.ticket_key_rotation > kMaxTicketKeyRotation) {
      n->fail("must be at most 168h (7 days), got " + quote(n->value().get<std::string>()));
    }
  }
  return tls;
}

Listener read_listener(const Node& node) {
  const ObjectReader obj(node, {"address", "backlog", "tls"});
  Listener listener;
  listener.address = read_bind_address(obj.required("address"));
  if (auto n = obj.optional("backlog")) {
    listener.backlog = static_cast<int>(read_uint(*n, 1, 65535));
  }
  if (auto n = obj.optional("tls")) listener.tls = read_listener_tls(*n);
  return listener;
}

std::vector<Listener> read_listeners(const Node& node) {
  std::vector<Listener> listeners;
  for (const Node& element : read_array(node, /*allow_empty=*/false)) {
    Listener listener = read_listener(element);
    // Port 0 means "any free port", so two of those never collide.
    for (size_t i = 0; i < listeners.size(); ++i) {
      if (listener.address.port != 0 && same_address(listener.address, listeners[i].address)) {
        element.child("address").fail("address " + listener.address.str() + " is already used by " +
                                      pointer_append(node.path(), std::to_string(i)));
      }
    }
    listeners.push_back(std::move(listener));
  }
  return listeners;
}

Admin read_admin(const Node& node, const std::vector<Listener>& listeners) {
  const ObjectReader obj(node, {"address", "token"});
  const Node address_node = obj.required("address");
  Admin admin{read_bind_address(address_node), {}};
  if (auto n = obj.optional("token")) {
    admin.token = read_string(*n);
    if (admin.token.size() < 16) n->fail("token must be at least 16 characters");
    for (char c : admin.token) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
        n->fail("token must be printable, without spaces");
    }
  }
  for (size_t i = 0; i < listeners.size(); ++i) {
    if (admin.address.port != 0 && same_address(admin.address, listeners[i].address)) {
      address_node.fail("address " + admin.address.str() + " is already used by /listeners/" +
                        std::to_string(i));
    }
  }
  return admin;
}

AccessLog read_access_log(const Node& node, const std::string& config_file) {
  const ObjectReader obj(node, {"path", "format", "buffer", "flush_interval"});
  AccessLog log;
  if (auto n = obj.optional("path")) {
    log.path = read_string(*n);
    if (log.path.empty()) n->fail("path must not be empty (use \"off\" to disable)");
    if (log.path != "off" && log.path != "stdout" && log.path != "stderr" &&
        log.path.front() != '/') {
      const size_t slash = config_file.rfind('/');
      if (slash != std::string::npos) log.path = config_file.substr(0, slash + 1) + log.path;
    }
  }
  if (auto n = obj.optional("format")) {
    const std::string f = read_string(*n);
    if (f == "json") {
      log.format = AccessLogFormat::kJson;
    } else if (f == "combined") {
      log.format = AccessLogFormat::kCombined;
    } else {
      n->fail("unknown format " + quote(f) + suggestion_suffix(f, {"json", "combined"}) +
              " (expected \"json\" or \"combined\")");
    }
  }
  if (auto n = obj.optional("buffer")) log.buffer_bytes = read_size(*n, 1024, 64ull << 20);
  if (auto n = obj.optional("flush_interval")) log.flush_interval = read_timeout(*n);
  return log;
}

Limits read_limits(const Node& node) {
  const ObjectReader obj(node, {"max_request_line", "max_header_bytes", "max_header_count",
                                "max_body", "max_connections"});
  Limits limits;
  if (auto n = obj.optional("max_request_line")) limits.max_request_line = read_size_u32(*n, 1);
  if (auto n = obj.optional("max_header_bytes")) limits.max_header_bytes = read_size_u32(*n, 1);
  if (auto n = obj.optional("max_header_count")) limits.max_header_count = read_u32(*n, 1);
  // 0 is meaningful for the body: requests with a body are refused (413).
  if (auto n = obj.optional("max_body")) {
    limits.max_body_bytes = read_size(*n, 0, std::numeric_limits<uint64_t>::max());
  }
  if (auto n = obj.optional("max_connections")) limits.max_connections = read_u32(*n, 1);
  return limits;
}

Timeouts read_timeouts(const Node& node) {
  const ObjectReader obj(node, {"header_read", "body_read", "keepalive_idle", "send", "drain"});
  Timeouts timeouts;
  if (auto n = obj.optional("header_read")) timeouts.header_read = read_timeout(*n);
  if (auto n = obj.optional("body_read")) timeouts.body_read = read_timeout(*n);
  if (auto n = obj.optional("keepalive_idle")) timeouts.keepalive_idle = read_timeout(*n);
  if (auto n = obj.optional("send")) timeouts.send = read_timeout(*n);
  if (auto n = obj.optional("drain")) timeouts.drain = read_timeout(*n);
  return timeouts;
}

UpstreamPoolConfig read_pool(const Node& node) {
  const ObjectReader obj(node, {"max_connections", "max_idle", "idle_timeout", "max_pending"});
  UpstreamPoolConfig pool;
  if (auto n = obj.optional("max_connections")) pool.max_connections = read_u32(*n, 1);
  // 0 idle = no keep-alive reuse; 0 pending = 503 at once when the pool is full.
  if (auto n = obj.optional("max_idle")) pool.max_idle = read_u32(*n, 0);
  if (auto n = obj.optional("idle_timeout")) pool.idle_timeout = read_timeout(*n);
  if (auto n = obj.optional("max_pending")) pool.max_pending = read_u32(*n, 0);
  return pool;
}

// Upstream "tls": true (every default) or an object.
UpstreamTls read_upstream_tls(const Node& node) {
  UpstreamTls tls;
  if (node.value().is_boolean()) {
    if (!node.value().get<bool>()) {
      node.fail("leave \"tls\" out for a plain HTTP upstream (false is not a TLS setting)");
    }
    return tls;
  }
  const ObjectReader obj(
      node, {"verify", "ca", "server_name", "cert", "key", "min_version", "session_reuse"});
  if (auto n = obj.optional("verify")) tls.verify = read_bool(*n);
  if (auto n = obj.optional("ca")) tls.ca_path = read_pem_path(*n, "CA bundle");
  if (auto n = obj.optional("server_name")) {
    tls.server_name = to_lower(read_string(*n));
    if (!is_host_name(tls.server_name) && !is_ip_literal(tls.server_name)) {
      n->fail("invalid server name " + quote(tls.server_name) +
              " (a host name such as \"api.internal\" or an IP address)");
    }
  }
  auto cert = obj.optional("cert");
  auto key = obj.optional("key");
  if (cert.has_value() != key.has_value()) {
    (cert ? *cert : *key).fail("a client certificate needs both \"cert\" and \"key\"");
  }
  if (cert) {
    tls.cert_path = read_pem_path(*cert, "certificate");
    tls.key_path = read_pem_path(*key, "private key");
  }
  if (auto n = obj.optional("min_version")) tls.min_version = read_tls_min_version(*n);
  if (auto n = obj.optional("session_reuse")) tls.session_reuse = read_bool(*n);
  if (!tls.verify && !tls.ca_path.empty()) {
    obj.required("ca").fail("\"ca\" has no effect with \"verify\": false");
  }
  return tls;
}

// Upstream names show up in routes, logs and metric labels: keep them plain.
bool is_valid_upstream_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.';
  });
}

Upstream read_upstream(const Node& node, const std::string& name) {
  if (!is_valid_upstream_name(name)) {
    node.fail("invalid upstream name " + quote(name) + " (use letters, digits, '_', '-' and '.')");
  }
  const ObjectReader obj(node, {"servers", "connect_timeout", "response_timeout", "pool", "tls"});
  Upstream upstream;
  upstream.name = name;
  for (const Node& element : read_array(obj.required("servers"), /*allow_empty=*/false)) {
    HostPort server = read_server_address(element);
    for (const HostPort& earlier : upstream.servers) {
      if (same_address(server, earlier)) element.fail("duplicate server " + quote(server.str()));
    }
    upstream.servers.push_back(std::move(server));
  }
  if (auto n = obj.optional("connect_timeout")) upstream.connect_timeout = read_timeout(*n);
  if (auto n = obj.optional("response_timeout")) upstream.response_timeout = read_timeout(*n);
  if (auto n = obj.optional("pool")) upstream.pool = read_pool(*n);
  if (auto n = obj.optional("tls")) upstream.tls = read_upstream_tls(*n);
  return upstream;
}

std::vector<Upstream> read_upstreams(const Node& node) {
  if (!node.value().is_object()) node.fail_type("an object mapping names to upstreams");
  if (node.value().empty()) node.fail("must define at least one upstream");
  std::vector<Upstream> upstreams;
  for (const auto& item : node.value().items()) {
    upstreams.push_back(read_upstream(node.child(item.key()), item.key()));
  }
  std::sort(upstreams.begin(), upstreams.end(),
            [](const Upstream& a, const Upstream& b) { return a.name < b.name; });
  return upstreams;
}

// "*", an exact name, or "*.suffix"; stored lower-case (hosts are case-insensitive).
std::string read_route_host(const Node& node) {
  std::string host = to_lower(read_string(node));
  if (host == "*") return host;
  const bool wildcard = host.rfind("*.", 0) == 0;
  const std::string name = wildcard ? host.substr(2) : host;
  if (name.find(':') != std::string::npos) {
    node.fail("invalid host " + quote(host) + ": a route host is a name without a port");
  }
  if (!is_host_name(name) && !is_ipv4_literal(name)) {
    node.fail("invalid host " + quote(host) +
              " (expected \"*\", a name such as \"api.example.com\", or \"*.example.com\")");
  }
  return host;
}

std::string read_path_prefix(const Node& node) {
  std::string prefix = read_string(node);
  if (prefix.empty() || prefix.front() != '/') {
    node.fail("path prefix " + quote(prefix) + " must start with \"/\"");
  }
  for (char c : prefix) {
    // A prefix is matched against the request path, which never contains these.
    if (static_cast<unsigned char>(c) <= ' ' || c == '\x7f' || c == '?' || c == '#') {
      node.fail("path prefix " + quote(prefix) +
                " must not contain spaces, control characters, '?' or '#'");
    }
  }
  return prefix;
}

// RFC 9110 token characters, which is what a method name is made of.
bool is_token(const std::string& s) {
  static constexpr std::string_view kTokenSymbols = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return is_alpha(c) || is_digit(c) || kTokenSymbols.find(c) != std::string_view::npos;
  });
}

std::vector<std::string> read_methods(const Node& node) {
  if (!node.value().is_array()) node.fail_type("an array of method names such as [\"GET\"]");
  if (node.value().empty()) {
    node.fail("must not be empty (leave \"methods\" out to match any method)");
  }
  std::vector<std::string> methods;
  for (const Node& element : read_array(node, /*allow_empty=*/false)) {
    const std::string method = to_upper(read_string(element));
    if (!is_token(method)) element.fail("invalid method name " + quote(method));
    // Repeats are harmless; keep the first.
    if (std::find(methods.begin(), methods.end(), method) == methods.end()) {
      methods.push_back(method);
    }
  }
  return methods;
}

RouteMatch read_route_match(const Node& node) {
  const ObjectReader obj(node, {"host", "path_prefix", "methods"});
  RouteMatch match;
  if (auto n = obj.optional("host")) match.host = read_route_host(*n);
  if (auto n = obj.optional("path_prefix")) match.path_prefix = read_path_prefix(*n);
  if (auto n = obj.optional("methods")) match.methods = read_methods(*n);
  return match;
}

// ---------------------------------------------------------------------------
// Response cache: the top-level "cache" object and each route's "cache".

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kMinWorkerCacheMemory = kMiB;
constexpr Millis kMaxCacheWait{10 * 60'000};  // lock_timeout, prewarm_timeout
constexpr Millis kMinCacheTtl{1'000};
constexpr uint64_t kMaxCacheObjectSize = uint64_t{1} << 30;
constexpr size_t kMaxPrewarmPaths = 1000;
constexpr size_t kMaxPrewarmPathBytes = size_t{8} * 1024;
constexpr double kMinRefreshAt = 0.5;
constexpr double kMaxRefreshAt = 0.95;

// One of a fixed set of words; a near miss gets a did-you-mean, anything
// else the list. `what` names the value in the message ("query mode").
std::string read_choice(const Node& node, const std::string& what,
                        const std::vector<std::string>& choices) {
  std::string value = read_string(node);
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return value;
  const std::string hint = suggestion_suffix(value, choices);
  node.fail("unknown " + what + " " + quote(value) +
            (hint.empty() ? " (expected one of: " + quote_list(choices) + ")" : hint));
}

CacheGlobal read_cache_global(const Node& node, uint32_t workers) {
  const ObjectReader obj(node, {"memory", "lock_timeout", "prewarm_timeout"});
  CacheGlobal cache;
  if (auto n = obj.optional("memory")) {
    cache.memory = read_size(*n, 0, std::numeric_limits<uint64_t>::max());
    if (cache.memory < kMinWorkerCacheMemory) {
      n->fail("must be at least 1MiB, got " + describe(n->value()));
    }
    // Each worker has its own cache with an equal share of the budget.
    const uint64_t share = cache.memory / workers;
    if (share < kMinWorkerCacheMemory) {
      n->fail("the memory is split between the " + std::to_string(workers) +
              " workers, so each would get " + describe_bytes(share) +
              ", less than the 1MiB a worker needs; raise it to at least " +
              describe_bytes(kMinWorkerCacheMemory * workers) + " or use fewer workers");
    }
  }
  if (auto n = obj.optional("lock_timeout")) {
    cache.lock_timeout = read_timeout_at_most(*n, kMaxCacheWait, "10m");
  }
  if (auto n = obj.optional("prewarm_timeout")) {
    cache.prewarm_timeout = read_timeout_at_most(*n, kMaxCacheWait, "10m");
  }
  return cache;
}

// Prewarm entries: request targets ("/path?query") this route serves.
std::vector<std::string> read_prewarm(const Node& node, const std::string& path_prefix) {
  if (!node.value().is_array()) {
    node.fail_type("an array of paths such as [\"/\", \"/v1/items?page=1\"]");
  }
  if (node.value().size() > kMaxPrewarmPaths) {
    node.fail("at most " + std::to_string(kMaxPrewarmPaths) + " paths, got " +
              std::to_string(node.value().size()));
  }
  std::vector<std::string> paths;
  for (const Node& element : read_array(node, /*allow_empty=*/true)) {
    std::string path = read_string(element);
    if (path.size() > kMaxPrewarmPathBytes) {
      element.fail("a prewarm path may be at most 8KiB (8192 bytes), this one is " +
                   std::to_string(path.size()) + " bytes");
    }
    if (path.empty() || path.front() != '/') {
      element.fail("prewarm path " + quote(path) + " must start with \"/\"");
    }
    for (char c : path) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte <= ' ' || byte >= 0x7f || c == '#') {
        element.fail("prewarm path " + quote(path) +
                     " must not contain spaces, control characters, '#' or non-ASCII bytes"
                     " (percent-encode them, as a client would)");
      }
    }
    // path_prefix has no '?', so this compares the path part of the target.
    if (path.rfind(path_prefix, 0) != 0) {
      element.fail("prewarm path " + quote(path) + " does not start with the route's path_prefix " +
                   quote(path_prefix) + ", so this route would not serve it");
    }
    const std::string earlier = earlier_position(paths, path, node.path());
    if (!earlier.empty()) element.fail("duplicate prewarm path " + quote(path) + earlier);
    paths.push_back(std::move(path));
  }
  return paths;
}

CacheKeyConfig read_cache_key(const Node& node) {
  const ObjectReader obj(node, {"query", "ignore_params", "headers"});
  CacheKeyConfig key;
  if (auto n = obj.optional("query")) {
    const std::string mode = read_choice(*n, "query mode", {"keep", "sort", "drop"});
    if (mode == "keep") {
      key.query = QueryKeyMode::kKeep;
    } else if (mode == "sort") {
      key.query = QueryKeyMode::kSort;
    } else {
      key.query = QueryKeyMode::kDrop;
    }
  }
  if (auto n = obj.optional("ignore_params")) {
    if (!n->value().is_array()) n->fail_type("an array of query parameter names");
    for (const Node& element : read_array(*n, /*allow_empty=*/true)) {
      std::string name = read_string(element);
      if (name.empty()) element.fail("a parameter name must not be empty");
      for (char c : name) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= ' ' || byte == 0x7f || c == '&' || c == '=' || c == '#') {
          element.fail("invalid parameter name " + quote(name) +
                       ": it may not contain '&', '=', '#', spaces or control characters");
        }
      }
      const std::string earlier = earlier_position(key.ignore_params, name, n->path());
      if (!earlier.empty()) element.fail("duplicate parameter name " + quote(name) + earlier);
      key.ignore_params.push_back(std::move(name));
    }
  }
  if (auto n = obj.optional("headers")) {
    if (!n->value().is_array()) n->fail_type("an array of header names");
    for (const Node& element : read_array(*n, /*allow_empty=*/true)) {
      const std::string text = read_string(element);
      std::string name = to_lower(text);
      if (!is_token(name)) element.fail("invalid header name " + quote(text));
      if (name == "host") {
        element.fail("\"host\" is always part of the cache key; remove it from \"headers\"");
      }
      const std::string earlier = earlier_position(key.headers, name, n->path());
      if (!earlier.empty()) {
        element.fail("duplicate header " + quote(name) + earlier +
                     " (header names are case-insensitive)");
      }
      key.headers.push_back(std::move(name));
    }
  }
  return key;
}

RouteCache read_route_cache(const Node& node, const RouteMatch& match) {
  const ObjectReader obj(
      node, {"enabled", "ttl", "prewarm", "max_object_size", "key", "cache_set_cookie",
             "client_no_cache", "stale_while_revalidate", "stale_if_error", "refresh_at"});
  RouteCache cache;
  if (auto n = obj.optional("enabled")) cache.enabled = read_bool(*n);
  if (auto n = obj.optional("ttl")) cache.ttl = read_duration_at_least(*n, kMinCacheTtl, "1s");
  if (auto n = obj.optional("prewarm")) cache.prewarm = read_prewarm(*n, match.path_prefix);
  if (auto n = obj.optional("max_object_size")) {
    cache.max_object_size = read_size(*n, 1, kMaxCacheObjectSize);
  }
  if (auto n = obj.optional("key")) cache.key = read_cache_key(*n);
  if (auto n = obj.optional("cache_set_cookie")) cache.cache_set_cookie = read_bool(*n);
  if (auto n = obj.optional("client_no_cache")) {
    const std::string mode = read_choice(*n, "client_no_cache mode", {"ignore", "revalidate"});
    cache.client_no_cache = mode == "ignore" ? ClientNoCache::kIgnore : ClientNoCache::kRevalidate;
  }
  if (auto n = obj.optional("stale_while_revalidate")) {
    cache.stale_while_revalidate = read_duration(*n);
  }
  if (auto n = obj.optional("stale_if_error")) cache.stale_if_error = read_duration(*n);
  if (auto n = obj.optional("refresh_at")) {
    const std::string expected =
        "a number between 0.5 and 0.95 (the fraction of a prewarmed entry's lifetime after which "
        "it is refreshed)";
    if (!n->value().is_number()) n->fail_type(expected);
    const double fraction = n->value().get<double>();
    if (!(fraction >= kMinRefreshAt && fraction <= kMaxRefreshAt)) n->fail_type(expected);
    cache.refresh_at = fraction;
  }
  return cache;
}

Route read_route(const Node& node, const std::vector<Upstream>& upstreams) {
  const ObjectReader obj(
      node, {"name", "match", "upstream", "response_headers", "cache", "https_redirect", "hsts"});
  Route route;
  if (auto n = obj.optional("https_redirect")) route.https_redirect = read_bool(*n);
  if (auto n = obj.optional("hsts")) {
    route.hsts = read_string(*n);
    if (route.hsts.rfind("max-age=", 0) != 0) {
      n->fail(
          "hsts must start with max-age=<seconds>, e.g. \"max-age=31536000; includeSubDomains\"");
    }
    for (char c : route.hsts) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        n->fail("hsts may not contain control characters");
    }
  }
  if (auto n = obj.optional("match")) route.match = read_route_match(*n);
  if (auto n = obj.optional("cache")) {
    route.cache = read_route_cache(*n, route.match);
    // Only GET responses are stored (HEAD is answered from them).
    const std::vector<std::string>& methods = route.match.methods;
    const bool serves_get = methods.empty() ||
                            std::find(methods.begin(), methods.end(), "GET") != methods.end() ||
                            std::find(methods.begin(), methods.end(), "HEAD") != methods.end();
    if (!serves_get) {
      n->fail("a cached route must allow GET, but its match.methods is [" + quote_list(methods) +
              "] (add \"GET\" there or remove \"cache\")");
    }
  }
  if (auto n = obj.optional("response_headers")) {
    if (!n->value().is_object()) n->fail_type("an object of header names to values");
    for (const auto& item : n->value().items()) {
      const Node value = n->child(item.key());
      if (!is_token(item.key())) value.fail("invalid header name " + quote(item.key()));
      std::string v = read_string(value);
      for (char c : v) {
        if (c == '\r' || c == '\n' || c == '\0') {
          value.fail("header values may not contain CR, LF or NUL");
        }
      }
      route.response_headers.emplace_back(item.key(), std::move(v));
    }
  }
  if (auto n = obj.optional("name")) {
    route.name = read_string(*n);
    if (route.name.empty() || route.name.size() > 64) n->fail("name must be 1 to 64 characters");
    for (char c : route.name) {
      if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\' || c == 0x7f) {
        n->fail("name must be printable, without quotes or backslashes");
      }
    }
  } else {
    route.name = route.match.host + route.match.path_prefix;
  }
  const Node upstream_node = obj.required("upstream");
  route.upstream = read_string(upstream_node);
  const auto found = std::find_if(upstreams.begin(), upstreams.end(),
                                  [&](const Upstream& u) { return u.name == route.upstream; });
  if (found == upstreams.end()) {
    std::vector<std::string> names;
    names.reserve(upstreams.size());
    for (const Upstream& u : upstreams) names.push_back(u.name);
    const std::string hint = suggestion_suffix(route.upstream, names);
    upstream_node.fail("unknown upstream " + quote(route.upstream) +
                       (hint.empty() ? " (defined upstreams: " + quote_list(names) + ")" : hint));
  }
  route.upstream_index = static_cast<size_t>(found - upstreams.begin());
  return route;
}

Config read_config(const Node& root) {
  if (!root.value().is_object()) root.fail_type("a JSON object at the top level");
  const ObjectReader obj(root, {"workers", "log_level", "listeners", "admin", "limits", "timeouts",
                                "access_log", "stats", "pid_file", "cache", "upstreams", "routes"});
  Config config;
  config.source_path = root.file();
  if (auto n = obj.optional("workers")) config.workers = read_workers(*n);
  if (auto n = obj.optional("log_level")) config.log_level = read_log_level(*n);
  config.listeners = read_listeners(obj.required("listeners"));
  if (auto n = obj.optional("admin")) config.admin = read_admin(*n, config.listeners);
  if (auto n = obj.optional("limits")) config.limits = read_limits(*n);
  if (auto n = obj.optional("timeouts")) config.timeouts = read_timeouts(*n);
  if (auto n = obj.optional("access_log")) config.access_log = read_access_log(*n, root.file());
  if (auto n = obj.optional("cache")) config.cache = read_cache_global(*n, config.workers);
  if (auto n = obj.optional("pid_file")) {
    config.pid_file = read_string(*n);
    if (config.pid_file.empty()) n->fail("pid_file must not be empty");
    if (config.pid_file.front() != '/') {
      const size_t slash = root.file().rfind('/');
      if (slash != std::string::npos)
        config.pid_file = root.file().substr(0, slash + 1) + config.pid_file;
    }
  }
  if (auto n = obj.optional("stats")) {
    const ObjectReader stats(*n, {"enabled"});
    if (auto e = stats.optional("enabled")) config.stats_enabled = read_bool(*e);
  }
  config.upstreams = read_upstreams(obj.required("upstreams"));
  const Node routes_node = obj.required("routes");
  for (const Node& element : read_array(routes_node, /*allow_empty=*/false)) {
    config.routes.push_back(read_route(element, config.upstreams));
  }
  // An HTTPS redirect needs somewhere to go.
  const bool any_tls = std::any_of(config.listeners.begin(), config.listeners.end(),
                                   [](const Listener& l) { return l.tls.has_value(); });
  for (size_t i = 0; i < config.routes.size(); ++i) {
    if (config.routes[i].https_redirect && !any_tls) {
      routes_node.element(i)
          .child("https_redirect")
          .fail("https_redirect needs a listener with \"tls\" to redirect to");
    }
  }
  // Route names label metrics and logs: they must tell routes apart.
  for (size_t i = 0; i < config.routes.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (config.routes[i].name == config.routes[j].name) {
        routes_node.element(i).fail("route name " + quote(config.routes[i].name) +
                                    " is already used by /routes/" + std::to_string(j) +
                                    " (give one of them a \"name\")");
      }
    }
  }
  return config;
}

// ---------------------------------------------------------------------------
// 5. JSON text -> json value

// nlohmann keeps the last of duplicate keys silently; in a config file a
// duplicate is nearly always a mistake, so this parse callback tracks the
// current path and rejects them.
class DuplicateKeyGuard {
 public:
  explicit DuplicateKeyGuard(const std::string& file) : file_(&file) {}

  // For a "key" event, `parsed` holds the key.
  bool operator()(json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        enter_element();
        frames_.push_back(Frame{event == json::parse_event_t::object_start, {}, 0, {}});
        break;
      case json::parse_event_t::key: {
        Frame& frame = frames_.back();
        frame.current = parsed.get<std::string>();
        if (!frame.seen.insert(frame.current).second) {
          throw ConfigError(*file_, path(), "duplicate key " + quote(frame.current));
        }
        break;
      }
      case json::parse_event_t::value:
        enter_element();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        break;
    }
    return true;  // keep every value
  }

 private:
  struct Frame {
    bool is_object;
    std::string current;  // key or index of the child being parsed
    size_t next_index;
    std::set<std::string> seen;
  };

  // A new value starts; inside an array it is the next element.
  void enter_element() {
    if (!frames_.empty() && !frames_.back().is_object) {
      frames_.back().current = std::to_string(frames_.back().next_index++);
    }
  }

  std::string path() const {
    std::string out;
    for (const Frame& frame : frames_) out = pointer_append(out, frame.current);
    return out;
  }

  const std::string* file_;
  std::vector<Frame> frames_;
};

// "line L, column C" of a 1-based byte count as reported by nlohmann.
std::string line_column(const std::string& text, size_t byte) {
  const size_t index = std::min(byte == 0 ? 0 : byte - 1, text.size());
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < index; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(index - line_start + 1);
}

// nlohmann's message without its "[json.exception.x.y] " tag and "parse error
// at line L, column C: " lead-in (we print our own position). The rest quotes
// the input ("last read: ..."), so control bytes and non-ASCII bytes, which
// may be invalid UTF-8, are shown as \xNN to keep the message printable.
std::string parse_error_detail(const std::string& what) {
  std::string_view detail = what;
  if (detail.rfind("[json.exception.", 0) == 0) {
    const size_t tag_end = detail.find("] ");
    if (tag_end != std::string_view::npos) detail.remove_prefix(tag_end + 2);
  }
  if (detail.rfind("parse error", 0) == 0) {
    const size_t colon = detail.find(": ");
    if (colon != std::string_view::npos) detail.remove_prefix(colon + 2);
  }
  std::string out;
  for (char c : detail) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

json parse_json(const std::string& text, const std::string& source_name) {
  DuplicateKeyGuard guard(source_name);
  const json::parser_callback_t callback = [&guard](int /*depth*/, json::parse_event_t event,
                                                    json& parsed) { return guard(event, parsed); };
  try {
    return json::parse(text, callback, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    throw ConfigError(
        source_name, "",
        "invalid JSON at " + line_column(text, e.byte) + ": " + parse_error_detail(e.what()));
  } catch (const json::exception& e) {
    // e.g. a number too large for a double ("1e999").
    throw ConfigError(source_name, "",
                      std::string("invalid JSON: ") + parse_error_detail(e.what()));
  }
}

std::string format_error(const std::string& file, const std::string& json_path,
                         const std::string& problem) {
  std::string out;
  if (!file.empty()) out += file + ": ";
  if (!json_path.empty()) out += json_path + ": ";
  return out + problem;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public API

std::string HostPort::str() const {
  const std::string port_text = std::to_string(port);
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port_text;
  return host + ":" + port_text;
}

ConfigError::ConfigError(std::string file, std::string json_path, std::string problem)
    : std::runtime_error(format_error(file, json_path, problem)),
      file_(std::move(file)),
      json_path_(std::move(json_path)),
      problem_(std::move(problem)) {}

Config parse_config(const std::string& json_text, const std::string& source_name) {
  const json document = parse_json(json_text, source_name);
  return read_config(Node(source_name, document, ""));
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, "", std::string("cannot open file: ") + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  // Reading a directory "opens" but fails here (EISDIR).
  if (in.bad() || text.fail()) {
    throw ConfigError(path, "", std::string("cannot read file: ") + std::strerror(errno));
  }
  return parse_config(text.str(), path);
}

std::optional<Millis> parse_duration(const std::string& s) {
  std::string why;
  return duration_from(s, &why);
}

std::optional<uint64_t> parse_size(const std::string& s) {
  std::string why;
  return size_from(s, &why);
}

std::optional<HostPort> parse_host_port(const std::string& s) {
  std::string why;
  return host_port_from(s, &why);
}

std::optional<std::string> did_you_mean(const std::string& word,
                                        const std::vector<std::string>& candidates) {
  // Close enough: within 2 edits (or a third of the word for long words),
  // and not a complete rewrite of the word. Case is ignored.
  const std::string lowered = to_lower(word);
  const size_t allowed = std::max<size_t>(2, word.size() / 3);
  std::optional<std::string> best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : candidates) {
    const size_t distance = edit_distance(lowered, to_lower(candidate));
    if (distance <= allowed && distance < word.size() && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace torii::conf

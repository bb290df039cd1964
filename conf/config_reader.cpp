// Building blocks of config reading (see config.cpp for the structure):
// text helpers, value parsers with explanations, Node / ObjectReader, and
// the typed readers every section uses.
#include "conf/config_reader.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

namespace torii::conf::detail {

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

}  // namespace torii::conf::detail

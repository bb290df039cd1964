// Config loading and validation. Structure:
//   1-3. in config_reader: text helpers, value parsers, Node / ObjectReader
//        (a JSON value plus its path, so every error names the exact place it
//        comes from; ObjectReader rejects unknown keys) and typed readers
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

#include "conf/config_policies.hpp"
#include "conf/config_reader.hpp"

namespace torii::conf {
namespace {

using namespace detail;  // NOLINT(google-build-using-namespace): the readers are this file's
                         // vocabulary

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
  const ObjectReader obj(
      node, {"servers", "connect_timeout", "response_timeout", "pool", "tls", "balance",
             "outlier_detection", "health_check", "max_requests", "resolve_interval"});
  Upstream upstream;
  upstream.name = name;
  for (const Node& element : read_array(obj.required("servers"), /*allow_empty=*/false)) {
    uint32_t weight = 1;
    HostPort server = read_weighted_server(element, weight);
    upstream.weights.push_back(weight);
    for (const HostPort& earlier : upstream.servers) {
      if (same_address(server, earlier)) element.fail("duplicate server " + quote(server.str()));
    }
    upstream.servers.push_back(std::move(server));
  }
  if (auto n = obj.optional("connect_timeout")) upstream.connect_timeout = read_timeout(*n);
  if (auto n = obj.optional("response_timeout")) upstream.response_timeout = read_timeout(*n);
  if (auto n = obj.optional("pool")) upstream.pool = read_pool(*n);
  if (auto n = obj.optional("tls")) upstream.tls = read_upstream_tls(*n);
  if (auto n = obj.optional("balance")) upstream.balance = read_balance(*n);
  if (auto n = obj.optional("outlier_detection")) {
    upstream.outlier_detection = read_outlier_detection(*n);
  }
  if (auto n = obj.optional("health_check")) upstream.health_check = read_health_check(*n);
  if (auto n = obj.optional("resolve_interval")) {
    upstream.resolve_interval = read_duration_at_least(*n, Millis{1'000}, "1s");
  }
  if (auto n = obj.optional("max_requests")) {
    upstream.max_requests = static_cast<uint32_t>(read_uint(*n, 0, 1'000'000));
  }
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
      node, {"name", "match", "upstream", "response_headers", "cache", "https_redirect", "hsts",
             "retry", "timeouts", "rate_limit", "auth"});
  Route route;
  if (auto n = obj.optional("retry")) route.retry = read_retry(*n);
  if (auto n = obj.optional("timeouts")) route.timeouts = read_route_timeouts(*n);
  if (auto n = obj.optional("rate_limit")) route.rate_limit = read_rate_limit(*n);
  if (auto n = obj.optional("auth")) route.auth = read_route_auth(*n);
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

// HTTP caching rules for a shared cache (RFC 9111); see policy.hpp.
#include "cache/policy.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include "common/http_types.hpp"

namespace torii::cache {

namespace {

using http::iequals;
using http::trim_ows;

// RFC 9111 1.2.2: a delta-seconds too large to represent counts as 2^31.
constexpr int64_t kDeltaMax = int64_t{1} << 31;
constexpr int64_t kMsPerSecond = 1000;

bool is_ows(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool has_header(const http::HeaderList& headers, std::string_view name) {
  for (const http::Header& h : headers) {
    if (iequals(h.name, name)) return true;
  }
  return false;
}

// 1*DIGIT, clamped to 2^31; nullopt when not all digits or empty.
std::optional<int64_t> parse_delta_seconds(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    if (v < kDeltaMax) v = v * 10 + (c - '0');
  }
  return std::min(v, kDeltaMax);
}

// Skips a quoted-string starting at s[i] == '"'; returns the index after it
// (s.size() when unterminated).
size_t skip_quoted(std::string_view s, size_t i) {
  ++i;
  while (i < s.size()) {
    const char c = s[i++];
    if (c == '\\') {
      if (i < s.size()) ++i;
    } else if (c == '"') {
      return i;
    }
  }
  return s.size();
}

// One directive of a Cache-Control (or Pragma) field.
struct Directive {
  std::string_view name;
  bool has_arg = false;
  std::string arg;  // unquoted
  bool well_formed = true;
};

// Calls fn(directive) for every element of
//   #( token [ "=" ( token / quoted-string ) ] )
// Quoted strings may hold commas. A malformed element (junk after the
// argument, unterminated quote, empty argument) is still reported, with
// well_formed false; elements without a name are skipped.
template <typename Fn>
void for_each_directive(std::string_view field, Fn&& fn) {
  const size_t n = field.size();
  size_t i = 0;
  auto skip_ows = [&] {
    while (i < n && is_ows(field[i])) ++i;
  };
  while (i < n) {
    while (i < n && (is_ows(field[i]) || field[i] == ',')) ++i;
    if (i >= n) break;
    Directive d;
    const size_t name_start = i;
    while (i < n && http::is_token_char(static_cast<unsigned char>(field[i]))) ++i;
    d.name = field.substr(name_start, i - name_start);
    skip_ows();
    if (i < n && field[i] == '=') {
      ++i;
      skip_ows();
      d.has_arg = true;
      if (i < n && field[i] == '"') {
        ++i;
        bool closed = false;
        while (i < n) {
          const char c = field[i++];
          if (c == '\\') {
            if (i >= n) break;
            d.arg += field[i++];
          } else if (c == '"') {
            closed = true;
            break;
          } else {
            d.arg += c;
          }
        }
        if (!closed) d.well_formed = false;
      } else {
        const size_t arg_start = i;
        while (i < n && http::is_token_char(static_cast<unsigned char>(field[i]))) ++i;
        d.arg = field.substr(arg_start, i - arg_start);
        if (d.arg.empty()) d.well_formed = false;
      }
      skip_ows();
    }
    if (i < n && field[i] != ',') {
      // Junk: the element ends at the next comma outside a quoted string.
      d.well_formed = false;
      while (i < n && field[i] != ',') {
        if (field[i] == '"') {
          i = skip_quoted(field, i);
        } else {
          ++i;
        }
      }
    }
    if (d.name.empty()) continue;
    fn(d);
  }
}

// Directives that take a delta-seconds argument, for "first one wins".
enum DeltaSlot : unsigned {
  kMaxAge = 1U << 0,
  kSMaxAge = 1U << 1,
  kSwr = 1U << 2,
  kSie = 1U << 3,
  kMinFresh = 1U << 4,
  kMaxStale = 1U << 5,
};

// ---------------------------------------------------------------- dates

constexpr std::array<std::string_view, 7> kDayNames = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDayNames = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonthNames = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};

Civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2 ? 1 : 0), m, d};
}

bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30,
                                                     31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// A strict left-to-right reader over a date string.
class DateReader {
 public:
  explicit DateReader(std::string_view s) : s_(s) {}

  bool done() const { return i_ == s_.size(); }
  bool literal(std::string_view lit) {
    if (s_.size() - i_ < lit.size() || !iequals(s_.substr(i_, lit.size()), lit)) return false;
    i_ += lit.size();
    return true;
  }
  // Exactly n ASCII digits.
  std::optional<unsigned> digits(size_t n) {
    if (s_.size() - i_ < n) return std::nullopt;
    unsigned v = 0;
    for (size_t k = 0; k < n; ++k) {
      const char c = s_[i_ + k];
      if (!is_digit(c)) return std::nullopt;
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    i_ += n;
    return v;
  }
  // Index+1 of the name matched (case-insensitive), 0 when none.
  template <size_t N>
  unsigned one_of(const std::array<std::string_view, N>& names) {
    for (size_t k = 0; k < N; ++k) {
      if (literal(names[k])) return static_cast<unsigned>(k + 1);
    }
    return 0;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

struct DateParts {
  int64_t year = 0;
  unsigned month = 0, day = 0, hour = 0, minute = 0, second = 0;
};

// time-of-day = hour ":" minute ":" second
bool read_time(DateReader& r, DateParts& p) {
  const auto h = r.digits(2);
  if (!h || !r.literal(":")) return false;
  const auto m = r.digits(2);
  if (!m || !r.literal(":")) return false;
  const auto s = r.digits(2);
  if (!s) return false;
  p.hour = *h;
  p.minute = *m;
  p.second = *s;
  return true;
}

std::optional<int64_t> to_unix(const DateParts& p) {
  if (p.month < 1 || p.month > 12) return std::nullopt;
  if (p.day < 1 || p.day > days_in_month(p.year, p.month)) return std::nullopt;
  // second 60: a leap second (RFC 5322 allows it); it counts as the next second.
  if (p.hour > 23 || p.minute > 59 || p.second > 60) return std::nullopt;
  return days_from_civil(p.year, p.month, p.day) * 86400 + int64_t{p.hour} * 3600 +
         int64_t{p.minute} * 60 + int64_t{p.second};
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<int64_t> parse_imf_fixdate(std::string_view s) {
  DateReader r(s);
  DateParts p;
  if (r.one_of(kDayNames) == 0 || !r.literal(", ")) return std::nullopt;
  const auto day = r.digits(2);
  if (!day || !r.literal(" ")) return std::nullopt;
  p.day = *day;
  p.month = r.one_of(kMonthNames);
  if (p.month == 0 || !r.literal(" ")) return std::nullopt;
  const auto year = r.digits(4);
  if (!year || !r.literal(" ")) return std::nullopt;
  p.year = *year;
  if (!read_time(r, p) || !r.literal(" GMT") || !r.done()) return std::nullopt;
  return to_unix(p);
}

// RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<int64_t> parse_rfc850(std::string_view s) {
  DateReader r(s);
  DateParts p;
  if (r.one_of(kLongDayNames) == 0 || !r.literal(", ")) return std::nullopt;
  const auto day = r.digits(2);
  if (!day || !r.literal("-")) return std::nullopt;
  p.day = *day;
  p.month = r.one_of(kMonthNames);
  if (p.month == 0 || !r.literal("-")) return std::nullopt;
  const auto year = r.digits(2);
  if (!year || !r.literal(" ")) return std::nullopt;
  p.year = *year >= 50 ? 1900 + *year : 2000 + *year;
  if (!read_time(r, p) || !r.literal(" GMT") || !r.done()) return std::nullopt;
  return to_unix(p);
}

// asctime: "Sun Nov  6 08:49:37 1994" (day as 2DIGIT or SP DIGIT)
std::optional<int64_t> parse_asctime(std::string_view s) {
  DateReader r(s);
  DateParts p;
  if (r.one_of(kDayNames) == 0 || !r.literal(" ")) return std::nullopt;
  p.month = r.one_of(kMonthNames);
  if (p.month == 0 || !r.literal(" ")) return std::nullopt;
  std::optional<unsigned> day;
  if (r.literal(" ")) {
    day = r.digits(1);
  } else {
    day = r.digits(2);
  }
  if (!day || !r.literal(" ")) return std::nullopt;
  p.day = *day;
  if (!read_time(r, p) || !r.literal(" ")) return std::nullopt;
  const auto year = r.digits(4);
  if (!year || !r.done()) return std::nullopt;
  p.year = *year;
  return to_unix(p);
}

// ------------------------------------------------------- field values

// Every field called `name` joined with ","; nullopt when there is none.
// With `normalise`, whitespace around commas (outside quoted strings) is removed.
std::optional<std::string> combined_value(const http::HeaderList& headers, std::string_view name,
                                          bool normalise) {
  std::optional<std::string> out;
  for (const http::Header& h : headers) {
    if (!iequals(h.name, name)) continue;
    if (out) {
      *out += ',';
    } else {
      out.emplace();
    }
    *out += trim_ows(h.value);
  }
  if (!out || !normalise) return out;
  std::string norm;
  norm.reserve(out->size());
  const std::string_view v = *out;
  size_t i = 0;
  while (i < v.size()) {
    const char c = v[i];
    if (c == '"') {
      const size_t end = skip_quoted(v, i);
      norm.append(v.substr(i, end - i));
      i = end;
    } else if (c == ',') {
      while (!norm.empty() && is_ows(norm.back())) norm.pop_back();
      norm += ',';
      ++i;
      while (i < v.size() && is_ows(v[i])) ++i;
    } else {
      norm += c;
      ++i;
    }
  }
  return norm;
}

// "name:value" when the request has the field, "name" when it does not, so
// an absent field differs from an empty one.
void append_field_part(std::string& out, const http::HeaderList& headers, std::string_view name,
                       bool normalise) {
  out += to_lower(name);
  if (auto v = combined_value(headers, name, normalise)) {
    out += ':';
    out += *v;
  }
}

// Content-Length of a response head, 0 when unknown.
uint64_t content_length_of(const http::MessageHead& resp) {
  uint64_t len = resp.framing == http::BodyFraming::kContentLength ? resp.content_length : 0;
  const std::string_view v = trim_ows(resp.get("Content-Length"));
  if (!v.empty()) {
    uint64_t parsed = 0;
    bool ok = true;
    for (char c : v) {
      if (!is_digit(c)) {
        ok = false;
        break;
      }
      const auto digit = static_cast<uint64_t>(c - '0');
      if (parsed > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
        parsed = std::numeric_limits<uint64_t>::max();
        break;
      }
      parsed = parsed * 10 + digit;
    }
    if (ok) len = std::max(len, parsed);
  }
  return len;
}

// Statuses stored with the default TTL when the origin gives no freshness
// (RFC 9110 15.1 "heuristically cacheable").
bool heuristically_cacheable(int status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

// W/"x" -> "x" (RFC 9110 8.8.3.2 weak comparison).
std::string_view strip_weak(std::string_view tag) {
  tag = trim_ows(tag);
  if (tag.size() >= 2 && tag[0] == 'W' && tag[1] == '/') tag.remove_prefix(2);
  return tag;
}

// If-None-Match list against a stored ETag (weak comparison).
bool if_none_match_matches(std::string_view list, std::string_view etag) {
  const std::string_view stored = strip_weak(etag);
  const size_t n = list.size();
  size_t i = 0;
  while (i < n) {
    while (i < n && (is_ows(list[i]) || list[i] == ',')) ++i;
    if (i >= n) break;
    if (list[i] == '*') return true;
    const size_t start = i;
    if (list.substr(i, 2) == "W/") i += 2;
    if (i < n && list[i] == '"') {
      // etagc excludes DQUOTE (no escapes), but commas may appear inside.
      const size_t close = list.find('"', i + 1);
      if (close == std::string_view::npos) return false;  // unterminated: nothing more
      i = close + 1;
      if (!stored.empty() && strip_weak(list.substr(start, i - start)) == stored) return true;
      if (i < n && list[i] != ',' && !is_ows(list[i])) {
        while (i < n && list[i] != ',') ++i;  // junk after the tag
      }
    } else {
      while (i < n && list[i] != ',') ++i;  // not an entity-tag
    }
  }
  return false;
}

}  // namespace

// ------------------------------------------------------------ Cache-Control

CacheControl parse_cache_control(const http::HeaderList& headers, MessageKind kind) {
  CacheControl cc;
  unsigned seen = 0;
  const bool response = kind == MessageKind::kResponse;
  auto delta = [&](const Directive& d, DeltaSlot slot, std::optional<int64_t>& out,
                   bool zero_if_malformed) {
    if ((seen & slot) != 0) return;  // duplicates: the first one wins
    seen |= slot;
    std::optional<int64_t> v;
    if (d.has_arg && d.well_formed) v = parse_delta_seconds(d.arg);
    if (!v && zero_if_malformed) v = 0;
    out = v;
  };
  for (const http::Header& h : headers) {
    if (!iequals(h.name, "Cache-Control")) continue;
    cc.present = true;
    for_each_directive(h.value, [&](const Directive& d) {
      const std::string_view n = d.name;
      if (iequals(n, "no-store")) {
        cc.no_store = true;
      } else if (iequals(n, "no-cache")) {
        // With field names we still revalidate the whole response.
        cc.no_cache = true;
      } else if (iequals(n, "private")) {
        // With field names we still refuse the whole response.
        cc.is_private = true;
      } else if (iequals(n, "public")) {
        cc.is_public = true;
      } else if (iequals(n, "must-revalidate")) {
        cc.must_revalidate = true;
      } else if (iequals(n, "proxy-revalidate")) {
        cc.proxy_revalidate = true;
      } else if (iequals(n, "only-if-cached")) {
        cc.only_if_cached = true;
      } else if (iequals(n, "max-age")) {
        delta(d, kMaxAge, cc.max_age, response);
      } else if (iequals(n, "s-maxage")) {
        delta(d, kSMaxAge, cc.s_maxage, response);
      } else if (iequals(n, "stale-while-revalidate")) {
        delta(d, kSwr, cc.stale_while_revalidate, false);
      } else if (iequals(n, "stale-if-error")) {
        delta(d, kSie, cc.stale_if_error, false);
      } else if (iequals(n, "min-fresh")) {
        delta(d, kMinFresh, cc.min_fresh, false);
      } else if (iequals(n, "max-stale")) {
        if ((seen & kMaxStale) != 0) return;
        if (!d.has_arg && d.well_formed) {
          seen |= kMaxStale;
          cc.max_stale = kDeltaMax;  // any staleness
        } else {
          delta(d, kMaxStale, cc.max_stale, false);
        }
      }
    });
  }
  if (!cc.present) {
    // RFC 9111 5.4: Pragma: no-cache counts only without Cache-Control.
    for (const http::Header& h : headers) {
      if (!iequals(h.name, "Pragma")) continue;
      for_each_directive(h.value, [&](const Directive& d) {
        if (iequals(d.name, "no-cache")) cc.no_cache = true;
      });
    }
  }
  return cc;
}

CacheControl parse_cache_control(const http::HeaderList& headers) {
  return parse_cache_control(headers, MessageKind::kResponse);
}

// -------------------------------------------------------------------- dates

std::optional<int64_t> parse_http_date(std::string_view s) {
  s = trim_ows(s);
  if (auto v = parse_imf_fixdate(s)) return v;
  if (auto v = parse_rfc850(s)) return v;
  return parse_asctime(s);
}

std::string format_http_date(int64_t unix_s) {
  // Years 0000..9999 keep the output at 29 characters.
  constexpr int64_t kMin = -62167219200;  // 0000-01-01T00:00:00Z
  constexpr int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  unix_s = std::clamp(unix_s, kMin, kMax);
  int64_t days = unix_s / 86400;
  int64_t secs = unix_s % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  const Civil c = civil_from_days(days);
  const auto weekday = static_cast<size_t>(((days % 7) + 11) % 7);  // 1970-01-01: Thursday
  const auto two = [](std::string& out, int64_t v) {
    out += static_cast<char>('0' + v / 10);
    out += static_cast<char>('0' + v % 10);
  };
  std::string out;
  out.reserve(29);
  out += kDayNames[weekday];
  out += ", ";
  two(out, c.day);
  out += ' ';
  out += kMonthNames[c.month - 1];
  out += ' ';
  two(out, c.year / 100);
  two(out, c.year % 100);
  out += ' ';
  two(out, secs / 3600);
  out += ':';
  two(out, secs / 60 % 60);
  out += ':';
  two(out, secs % 60);
  out += " GMT";
  return out;
}

// ------------------------------------------------------------------ storing

StorePolicy store_policy(const conf::RouteCache& route) {
  StorePolicy p;
  p.default_ttl_ms = route.ttl.count();
  p.default_swr_ms = route.stale_while_revalidate.count();
  p.default_sie_ms = route.stale_if_error.count();
  p.cache_set_cookie = route.cache_set_cookie;
  p.max_object_size = route.max_object_size;
  return p;
}

StoreDecision decide_store(const http::MessageHead& req, const http::MessageHead& resp,
                           const StorePolicy& policy, int64_t response_time_ms) {
  StoreDecision no;
  auto refuse = [&no](std::string_view reason) {
    no.reason = reason;
    return no;
  };
  if (req.method != "GET") return refuse("method");
  const CacheControl req_cc = parse_cache_control(req.headers, MessageKind::kRequest);
  const CacheControl cc = parse_cache_control(resp.headers, MessageKind::kResponse);
  if (req_cc.no_store || cc.no_store) return refuse("no-store");
  if (cc.is_private) return refuse("private");
  if (has_header(req.headers, "Authorization") && !cc.is_public && !cc.s_maxage &&
      !cc.must_revalidate) {
    return refuse("authorization");
  }
  if (has_header(resp.headers, "Set-Cookie") && !policy.cache_set_cookie) {
    return refuse("set-cookie");
  }
  for (const std::string& name : vary_names(resp)) {
    if (name == "*") return refuse("vary-star");
  }
  if (content_length_of(resp) > policy.max_object_size) return refuse("too-large");

  const bool has_expires = has_header(resp.headers, "Expires");
  const bool explicit_freshness = cc.s_maxage || cc.max_age || has_expires;
  const int status = resp.status;
  if (status < 200 || status == 206 || status == 304) return refuse("status");
  if (!heuristically_cacheable(status) && !explicit_freshness) return refuse("status");

  StoreDecision d;
  d.storable = true;
  if (cc.s_maxage) {
    d.lifetime_ms = *cc.s_maxage * kMsPerSecond;
  } else if (cc.max_age) {
    d.lifetime_ms = *cc.max_age * kMsPerSecond;
  } else if (has_expires) {
    const auto expires = parse_http_date(resp.get("Expires"));
    if (expires) {
      const auto date = parse_http_date(resp.get("Date"));
      const int64_t date_ms = date ? *date * kMsPerSecond : response_time_ms;
      d.lifetime_ms = std::max<int64_t>(0, *expires * kMsPerSecond - date_ms);
    }  // else: an invalid Expires means already expired (lifetime 0)
  } else {
    d.lifetime_ms = std::max<int64_t>(0, policy.default_ttl_ms);
  }
  d.no_stale = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.has_value();
  if (!d.no_stale) {
    d.swr_ms = cc.stale_while_revalidate ? *cc.stale_while_revalidate * kMsPerSecond
                                         : policy.default_swr_ms;
    d.sie_ms = cc.stale_if_error ? *cc.stale_if_error * kMsPerSecond : policy.default_sie_ms;
  }
  d.always_revalidate = cc.no_cache;
  return d;
}

int64_t initial_age_ms(const http::MessageHead& resp, int64_t request_time_ms,
                       int64_t response_time_ms) {
  int64_t apparent_age = 0;
  if (const auto date = parse_http_date(resp.get("Date"))) {
    apparent_age = std::max<int64_t>(0, response_time_ms - *date * kMsPerSecond);
  }
  const int64_t response_delay = std::max<int64_t>(0, response_time_ms - request_time_ms);
  const int64_t age_value =
      parse_delta_seconds(trim_ows(resp.get("Age"))).value_or(0) * kMsPerSecond;
  return std::max(apparent_age, age_value + response_delay);
}

// ------------------------------------------------------------- validation

bool not_modified(const http::MessageHead& req, std::string_view etag,
                  std::string_view last_modified) {
  if (req.method != "GET" && req.method != "HEAD") return false;
  if (auto inm = combined_value(req.headers, "If-None-Match", false)) {
    return if_none_match_matches(*inm, etag);
  }
  if (!has_header(req.headers, "If-Modified-Since")) return false;
  const auto ims = parse_http_date(req.get("If-Modified-Since"));
  const auto lm = parse_http_date(last_modified);
  if (!ims || !lm) return false;
  return *lm <= *ims;
}

// -------------------------------------------------------------------- Vary

std::vector<std::string> vary_names(const http::MessageHead& resp) {
  std::vector<std::string> names;
  for (const http::Header& h : resp.headers) {
    if (!iequals(h.name, "Vary")) continue;
    http::for_each_list_token(h.value, [&names](std::string_view token) {
      std::string name = to_lower(token);
      if (std::find(names.begin(), names.end(), name) == names.end()) {
        names.push_back(std::move(name));
      }
    });
  }
  return names;
}

std::string vary_values(const http::MessageHead& req, const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += '\n';
    append_field_part(out, req.headers, names[i], true);
  }
  return out;
}

// --------------------------------------------------------------------- keys

void make_cache_key(std::string& out, std::string_view scheme, std::string_view host,
                    std::string_view target, const conf::CacheKeyConfig& key,
                    const http::MessageHead& req) {
  std::string_view path = target;
  std::string_view query;
  if (const size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }

  out.clear();
  out += scheme;
  out += '\n';
  for (char c : host) out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  out += '\n';
  out += path;
  out += '\n';

  if (key.query != conf::QueryKeyMode::kDrop && !query.empty()) {
    if (key.query == conf::QueryKeyMode::kKeep && key.ignore_params.empty()) {
      out += query;
    } else {
      struct Param {
        std::string_view name, value, whole;
      };
      std::vector<Param> params;
      size_t start = 0;
      while (start <= query.size()) {
        size_t amp = query.find('&', start);
        if (amp == std::string_view::npos) amp = query.size();
        const std::string_view whole = query.substr(start, amp - start);
        start = amp + 1;
        const size_t eq = whole.find('=');
        Param p{whole.substr(0, eq), eq == std::string_view::npos ? "" : whole.substr(eq + 1),
                whole};
        const bool ignored = std::find(key.ignore_params.begin(), key.ignore_params.end(),
                                       p.name) != key.ignore_params.end();
        if (ignored) continue;
        // Sorting normalises: empty parameters ("a=1&&b=2") carry nothing.
        if (key.query == conf::QueryKeyMode::kSort && whole.empty()) continue;
        params.push_back(p);
      }
      if (key.query == conf::QueryKeyMode::kSort) {
        std::stable_sort(params.begin(), params.end(), [](const Param& a, const Param& b) {
          return a.name != b.name ? a.name < b.name : a.value < b.value;
        });
      }
      std::string joined;
      for (size_t i = 0; i < params.size(); ++i) {
        if (i > 0) joined += '&';
        joined += params[i].whole;
      }
      // "a=1&utm_source=x&" minus utm_source leaves "a=1&"; only all-empty counts as none.
      if (joined.find_first_not_of('&') != std::string::npos) out += joined;
    }
  }

  for (const std::string& name : key.headers) {
    out += '\n';
    append_field_part(out, req.headers, name, false);
  }
}

std::string make_cache_key(std::string_view scheme, std::string_view host, std::string_view target,
                           const conf::CacheKeyConfig& key, const http::MessageHead& req) {
  std::string out;
  make_cache_key(out, scheme, host, target, key, req);
  return out;
}

bool client_wants_revalidation(const http::MessageHead& req) {
  const CacheControl cc = parse_cache_control(req.headers, MessageKind::kRequest);
  return cc.no_cache || (cc.max_age && *cc.max_age == 0);
}

}  // namespace torii::cache

#include "upstream/server_health.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>

namespace torii::upstream {

// ---- StatusRanges ---------------------------------------------------------------

StatusRanges StatusRanges::range(int first, int last) {
  StatusRanges ranges;
  ranges.add(first, last);
  return ranges;
}

void StatusRanges::add(int first, int last) {
  assert(kMin <= first && first <= last && last <= kMax);
  for (int status = first; status <= last; ++status) codes_.set(static_cast<size_t>(status - kMin));
}

namespace {

std::string_view trim(std::string_view s) {
  constexpr std::string_view kBlank = " \t";
  const size_t first = s.find_first_not_of(kBlank);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kBlank) - first + 1);
}

// Exactly three digits, nothing else.
std::optional<int> parse_status(std::string_view s) {
  if (s.size() != 3) return std::nullopt;
  int value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

std::optional<StatusRanges> StatusRanges::parse(std::string_view spec, std::string& error) {
  if (trim(spec).empty()) {
    error = "no statuses given (expected e.g. \"200-399\" or \"200,204,3xx\")";
    return std::nullopt;
  }
  auto out_of_bounds = [&](int status) {
    error = "status " + std::to_string(status) + " is outside 100-599";
    return std::nullopt;
  };
  StatusRanges ranges;
  std::string_view rest = spec;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    if (item.empty()) {
      error = "empty item in " + quoted(spec);
      return std::nullopt;
    }
    const size_t dash = item.find('-');
    if (item.size() == 3 && (item[1] == 'x' || item[1] == 'X') &&
        (item[2] == 'x' || item[2] == 'X') && item[0] >= '1' && item[0] <= '5') {
      const int first = (item[0] - '0') * 100;
      ranges.add(first, first + 99);
    } else if (dash == std::string_view::npos) {
      const std::optional<int> status = parse_status(item);
      if (!status) {
        error = quoted(item) + " is not a status, range (200-399) or class (2xx)";
        return std::nullopt;
      }
      if (*status < kMin || *status > kMax) return out_of_bounds(*status);
      ranges.add(*status, *status);
    } else {
      const std::optional<int> first = parse_status(trim(item.substr(0, dash)));
      const std::optional<int> last = parse_status(trim(item.substr(dash + 1)));
      if (!first || !last) {
        error = quoted(item) + " is not a status range (expected e.g. 200-399)";
        return std::nullopt;
      }
      if (*first < kMin || *first > kMax) return out_of_bounds(*first);
      if (*last < kMin || *last > kMax) return out_of_bounds(*last);
      if (*last < *first) {
        error = "range " + std::string(item) + " ends before it starts";
        return std::nullopt;
      }
      ranges.add(*first, *last);
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return ranges;
}

std::string StatusRanges::to_string() const {
  std::string out;
  for (int status = kMin; status <= kMax; ++status) {
    if (!contains(status)) continue;
    int last = status;
    while (last < kMax && contains(last + 1)) ++last;
    if (!out.empty()) out += ',';
    out += std::to_string(status);
    if (last != status) out += '-' + std::to_string(last);
    status = last;
  }
  return out;
}

// ---- OutlierState ---------------------------------------------------------------

void OutlierState::record_success(uint64_t now_ms) {
  if (ejected(now_ms)) return;
  consecutive_5xx_ = 0;
  consecutive_connect_failures_ = 0;
}

bool OutlierState::record_failure(FailureKind kind, uint64_t now_ms,
                                  const OutlierSettings& settings) {
  if (ejected(now_ms)) return false;
  switch (kind) {
    case FailureKind::k5xx:
    case FailureKind::kTimeout:
      ++consecutive_5xx_;
      consecutive_connect_failures_ = 0;
      break;
    case FailureKind::kConnectFailure:
      ++consecutive_connect_failures_;
      break;
  }
  const bool too_many_5xx =
      settings.consecutive_5xx != 0 && consecutive_5xx_ >= settings.consecutive_5xx;
  const bool too_many_connect_failures =
      settings.consecutive_connect_failures != 0 &&
      consecutive_connect_failures_ >= settings.consecutive_connect_failures;
  return too_many_5xx || too_many_connect_failures;
}

uint32_t OutlierState::ejection_level(uint64_t now_ms, const OutlierSettings& settings) const {
  if (ejected(now_ms) || settings.ejection_decay_ms == 0) return level_;
  const uint64_t periods_back = (now_ms - ejected_until_ms_) / settings.ejection_decay_ms;
  return periods_back >= level_ ? 0 : level_ - static_cast<uint32_t>(periods_back);
}

uint64_t OutlierState::eject(uint64_t now_ms, const OutlierSettings& settings) {
  level_ = ejection_level(now_ms, settings) + 1;
  // base × 2^(level − 1), doubling stopped at the cap (and before overflow).
  uint64_t duration = settings.base_ejection_ms;
  for (uint32_t i = 1; i < level_ && duration < settings.max_ejection_ms; ++i) duration *= 2;
  duration = std::min(duration, settings.max_ejection_ms);
  ejected_until_ms_ = now_ms + duration;
  ++total_ejections_;
  consecutive_5xx_ = 0;
  consecutive_connect_failures_ = 0;
  return ejected_until_ms_;
}

// ---- ActiveCheckState -----------------------------------------------------------

bool ActiveCheckState::record(bool passed, const ActiveCheckSettings& settings) {
  const bool first_result = !checked_;
  checked_ = true;
  const bool was_healthy = healthy_;
  if (passed) {
    ++consecutive_passes_;
    consecutive_failures_ = 0;
    // A server that started out unchecked comes in on its first pass.
    if (!healthy_ && (first_result || consecutive_passes_ >= settings.healthy_threshold)) {
      healthy_ = true;
    }
  } else {
    ++consecutive_failures_;
    consecutive_passes_ = 0;
    if (healthy_ && consecutive_failures_ >= settings.unhealthy_threshold) healthy_ = false;
  }
  return healthy_ != was_healthy;
}

// ---- ServerHealth / HealthGroup ---------------------------------------------------

std::string_view health_state_name(HealthState state) {
  switch (state) {
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
    case HealthState::kEjected:
      return "ejected";
  }
  return "unknown";
}

HealthState ServerHealth::state(uint64_t now_ms) const {
  if (!active.healthy()) return HealthState::kUnhealthy;
  if (outlier.ejected(now_ms)) return HealthState::kEjected;
  return HealthState::kHealthy;
}

HealthGroup::HealthGroup(size_t server_count, const HealthSettings& settings)
    : settings_(settings), servers_(server_count, ServerHealth(settings.active)) {}

void HealthGroup::record_success(size_t server, uint64_t now_ms) {
  servers_[server].outlier.record_success(now_ms);
}

FailureOutcome HealthGroup::record_failure(size_t server, FailureKind kind, uint64_t now_ms) {
  OutlierState& outlier = servers_[server].outlier;
  if (outlier.ejected(now_ms)) return FailureOutcome::kIgnored;
  if (!outlier.record_failure(kind, now_ms, settings_.outlier)) return FailureOutcome::kCounted;
  if (!ejection_allowed(now_ms)) return FailureOutcome::kEjectionCapped;
  outlier.eject(now_ms, settings_.outlier);
  return FailureOutcome::kEjected;
}

bool HealthGroup::record_check(size_t server, bool passed) {
  return servers_[server].active.record(passed, settings_.active);
}

void HealthGroup::fill_eligible(uint64_t now_ms, ServerMask& mask) const {
  assert(mask.size() == servers_.size());
  for (size_t i = 0; i < servers_.size(); ++i) mask.set(i, servers_[i].eligible(now_ms));
}

size_t HealthGroup::ejected_count(uint64_t now_ms) const {
  return static_cast<size_t>(
      std::count_if(servers_.begin(), servers_.end(),
                    [&](const ServerHealth& s) { return s.outlier.ejected(now_ms); }));
}

bool HealthGroup::ejection_allowed(uint64_t now_ms) const {
  // Strictly at most the percentage: (ejected + 1) / size <= percent / 100.
  return (ejected_count(now_ms) + 1) * 100 <=
         static_cast<uint64_t>(settings_.outlier.max_ejection_percent) * servers_.size();
}

}  // namespace torii::upstream

#include "gateway/route_policies.hpp"

#include "metrics/stats.hpp"

namespace torii::gateway {

RoutePolicies::RoutePolicies(const conf::Config& config, const RouteAuthenticators& auth,
                             std::optional<RateLimitTable> table)
    : auth_(auth), table_(table) {
  limits_.resize(config.routes.size());
  for (size_t i = 0; i < config.routes.size(); ++i) {
    const conf::Route& route = config.routes[i];
    if (!route.rate_limit) continue;
    Limit l;
    l.policy.requests = route.rate_limit->requests;
    l.policy.window_seconds = static_cast<uint32_t>(route.rate_limit->per.count() / 1000);
    l.policy.burst = route.rate_limit->burst;
    l.route_id = static_cast<uint32_t>(rate_limit_key(0, route.name));
    l.header = route.rate_limit->key == conf::RateLimitKey::kHeader ? route.rate_limit->header : "";
    l.name = route.name;
    l.policy_value = rate_limit_policy_value(l.name, l.policy);
    limits_[i] = std::move(l);
  }
}

PolicyVerdict RoutePolicies::check(size_t route, const http::MessageHead& request,
                                   std::string_view client_ip, uint64_t now_monotonic_ms,
                                   int64_t now_unix_s) const {
  PolicyVerdict v;
  // The rate limit comes first: it also bounds the cost of checking credentials.
  if (route < limits_.size() && limits_[route] && table_) {
    const Limit& l = *limits_[route];
    const std::string_view key = l.header.empty() ? client_ip : request.get(l.header);
    const RateLimitDecision d =
        table_->try_acquire(rate_limit_key(l.route_id, key), l.policy, now_monotonic_ms);
    if (!d.allowed) {
      v.error = Error::kTooManyRequests;
      v.rate_limited = true;
      v.reason = "rate limit";
      v.reply_lines.append("Retry-After: ").append(retry_after_value(d.retry_after_ms));
      v.reply_lines.append("\r\nRateLimit-Policy: ").append(l.policy_value);
      v.reply_lines.append("\r\nRateLimit: ").append(rate_limit_value(l.name, d)).append("\r\n");
      return v;
    }
  }
  if (const RouteAuthenticator* a = auth(route)) {
    AuthDecision d = a->check(request, now_unix_s);
    switch (d.outcome) {
      case AuthOutcome::kAllowed:
        if (!d.subject.empty() && is_safe_header_value(d.subject)) v.subject = std::move(d.subject);
        return v;
      case AuthOutcome::kForbidden:
        v.error = Error::kForbidden;
        v.auth_reason = 2;
        break;
      case AuthOutcome::kMissing:
        v.error = Error::kUnauthorized;
        v.auth_reason = 0;
        break;
      case AuthOutcome::kInvalid:
        v.error = Error::kUnauthorized;
        v.auth_reason = 1;
        break;
    }
    v.reason = d.reason;
    if (!d.challenge.empty()) {
      v.reply_lines.append("WWW-Authenticate: ").append(d.challenge).append("\r\n");
    }
  }
  return v;
}

}  // namespace torii::gateway

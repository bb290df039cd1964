#include "gateway/route_auth.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "gateway/router.hpp"

namespace torii::gateway {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string_view query_of(std::string_view target) {
  const RequestTarget t = split_target(target);
  const std::string_view pq = t.path_and_query;
  const size_t q = pq.find('?');
  return q == std::string_view::npos ? std::string_view() : pq.substr(q + 1);
}

// "ApiKey realm=..." tells a client which credential to send (no
// registered scheme exists for API keys; the parameter names it).
std::string api_key_challenge(const conf::RouteAuth& auth) {
  std::string c = "ApiKey realm=\"" + auth.realm + "\"";
  if (!auth.api_key->header.empty()) {
    c += ", header=\"" + auth.api_key->header + "\"";
  } else {
    c += ", query=\"" + auth.api_key->query + "\"";
  }
  return c;
}

}  // namespace

bool is_safe_header_value(std::string_view value) {
  for (char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\t') || byte == 0x7f) return false;
  }
  return true;
}

std::shared_ptr<const RouteAuthenticator> RouteAuthenticator::create(const conf::RouteAuth& auth,
                                                                     const std::string& config_file,
                                                                     const std::string& json_base) {
  std::shared_ptr<RouteAuthenticator> self(new RouteAuthenticator(auth));
  auto fail = [&](const std::string& path, const std::string& problem) {
    throw conf::ConfigError(config_file, json_base + path, problem);
  };
  if (auth.api_key) {
    ApiKeySet keys;
    for (size_t i = 0; i < auth.api_key->keys.size(); ++i) {
      // "name:key" names the key for logs; a bare key is named "key-N".
      const std::string_view entry = auth.api_key->keys[i];
      const size_t colon = entry.find(':');
      try {
        if (colon == std::string_view::npos) {
          keys.add(entry);
        } else {
          keys.add(entry.substr(colon + 1), entry.substr(0, colon));
        }
      } catch (const std::invalid_argument& e) {
        fail("/api_key/keys/" + std::to_string(i), e.what());
      }
    }
    if (!auth.api_key->file.empty()) {
      try {
        keys.add_file_text(read_file(auth.api_key->file), auth.api_key->file);
      } catch (const std::invalid_argument& e) {
        fail("/api_key/file", e.what());
      }
    }
    if (keys.empty()) fail("/api_key", "no API key configured (the file has none)");
    self->api_keys_ = std::move(keys);
  }
  if (auth.jwt) {
    const conf::JwtAuth& j = *auth.jwt;
    const bool from_jwks = !j.jwks_file.empty();
    const std::string at = from_jwks ? "/jwt/jwks" : "/jwt/secret_file";
    try {
      std::string text = read_file(from_jwks ? j.jwks_file : j.secret_file);
      if (!from_jwks) {
        // A secret file usually ends with a newline that is not part of the secret.
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
      }
      JwtKeySet keys = from_jwks ? JwtKeySet::from_jwks(text) : JwtKeySet::from_hmac_secret(text);
      JwtVerifierOptions options;
      for (const std::string& name : j.algorithms) {
        if (auto alg = jwt_alg_from_name(name)) options.algorithms.push_back(*alg);
      }
      options.issuer = j.issuer;
      options.audiences = j.audiences;
      options.leeway_s = j.leeway.count() / 1000;
      self->jwt_.emplace(std::move(keys), std::move(options));
    } catch (const std::invalid_argument& e) {
      fail(at, e.what());
    }
  }
  return self;
}

AuthDecision RouteAuthenticator::check(const http::MessageHead& request, int64_t now_unix_s) const {
  AuthDecision d;
  bool presented = false;
  if (api_keys_) {
    const conf::ApiKeyAuth& a = *config_.api_key;
    std::optional<std::string> from_query;
    std::string_view key;
    if (!a.header.empty()) {
      key = request.get(a.header);
    } else {
      from_query = query_parameter(query_of(request.target), a.query);
      if (from_query) key = *from_query;
    }
    if (!key.empty()) {
      presented = true;
      if (auto name = api_keys_->match(key)) {
        d.outcome = AuthOutcome::kAllowed;
        d.via_api_key = true;
        d.key_name = *name;
        return d;
      }
      d.outcome = AuthOutcome::kInvalid;
      d.reason = "unknown api key";
    }
  }
  if (jwt_) {
    const std::string_view token = bearer_token(request.get("authorization"));
    if (!token.empty()) {
      presented = true;
      const JwtResult r = jwt_->verify(token, now_unix_s);
      if (r.ok()) {
        d = AuthDecision{};
        d.subject = r.subject;
        return d;
      }
      d.reason = jwt_error_name(r.error);
      if (r.error == JwtError::kWrongAudience) {
        d.outcome = AuthOutcome::kForbidden;
        return d;
      }
      d.outcome = AuthOutcome::kInvalid;
      d.challenge = bearer_challenge(config_.realm, r);
    }
  }
  if (!presented) {
    d.outcome = AuthOutcome::kMissing;
    d.reason = "no credentials";
  }
  // A 401 names every scheme the route accepts (RFC 9110 11.6.1).
  if (d.challenge.empty() && jwt_) d.challenge = bearer_challenge(config_.realm);
  if (api_keys_) {
    if (!d.challenge.empty()) d.challenge += "\r\nWWW-Authenticate: ";
    d.challenge += api_key_challenge(config_);
  }
  return d;
}

std::string_view RouteAuthenticator::api_key_header() const {
  return config_.api_key ? std::string_view(config_.api_key->header) : std::string_view();
}

std::string_view RouteAuthenticator::api_key_query() const {
  return config_.api_key ? std::string_view(config_.api_key->query) : std::string_view();
}

std::string_view RouteAuthenticator::subject_header() const {
  return config_.jwt ? std::string_view(config_.jwt->forward_subject) : std::string_view();
}

RouteAuthenticators build_route_authenticators(const conf::Config& config) {
  RouteAuthenticators out(config.routes.size());
  for (size_t i = 0; i < config.routes.size(); ++i) {
    if (!config.routes[i].auth) continue;
    out[i] = RouteAuthenticator::create(*config.routes[i].auth, config.source_path,
                                        "/routes/" + std::to_string(i) + "/auth");
  }
  return out;
}

}  // namespace torii::gateway

// JWT bearer-token verification (pure: no I/O), RFC 7519 / 7515 / 7518.
// Signed tokens only (JWS compact form), with HS256, RS256 or ES256 and keys
// given by the configuration: a JWKS document (RFC 7517), a PEM public key or
// an HMAC secret. Keys named by the token itself (jku, jwk, x5u) are never
// used, "alg": "none" is always refused and a token's alg must match the
// type of the key that checks it (so an RSA public key can never be turned
// into an HMAC secret). Then exp / nbf (with leeway), iss and aud are checked.
// Also the two HTTP helpers around it: extracting the token from an
// Authorization header and building the WWW-Authenticate challenge of a 401
// (RFC 6750).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace torii::gateway {

enum class JwtAlg : uint8_t { kHS256, kRS256, kES256 };

// "HS256", "RS256", "ES256".
std::string_view jwt_alg_name(JwtAlg alg);
// The algorithm of a name (exact case, as RFC 7518 names them); nullopt otherwise.
std::optional<JwtAlg> jwt_alg_from_name(std::string_view name);

struct JwtKey;  // one verification key (defined in auth_jwt.cpp)

// The keys a verifier may use. Built once per configuration load (startup,
// reload); copies share the keys. The factories throw std::invalid_argument
// with a message naming what is wrong (for JWKS: the key index and field).
class JwtKeySet {
 public:
  JwtKeySet();
  ~JwtKeySet();
  JwtKeySet(const JwtKeySet&);
  JwtKeySet& operator=(const JwtKeySet&);
  JwtKeySet(JwtKeySet&&) noexcept;
  JwtKeySet& operator=(JwtKeySet&&) noexcept;

  // A JWKS document: {"keys": [...]} with kty "RSA" (n, e; 2048 bits or
  // more), "EC" (crv "P-256", x, y) or "oct" (k; 32 bytes or more, HS256).
  // Keys with "use" other than "sig", "key_ops" without "verify", or an
  // "alg" / "kty" this gateway does not verify (RS384, OKP...) are skipped
  // and listed in skipped().
  // Throws if a key is malformed or no usable key remains.
  static JwtKeySet from_jwks(std::string_view jwks_json);
  // A PEM "PUBLIC KEY" (SubjectPublicKeyInfo) or "CERTIFICATE": RSA (2048
  // bits or more, RS256) or EC P-256 (ES256). `kid` empty: the key has no kid.
  static JwtKeySet from_pem(std::string_view pem, std::string_view kid = {});
  // An HS256 secret, used as is (bytes); 32 bytes or more (RFC 7518 3.2).
  static JwtKeySet from_hmac_secret(std::string_view secret, std::string_view kid = {});

  // Adds every key of `other` (e.g. a JWKS file plus a configured secret).
  void merge(const JwtKeySet& other);

  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }
  // True when some key verifies `alg`.
  bool has_key_for(JwtAlg alg) const;
  // One line per JWKS key that was skipped, e.g. "key 2 (kid \"x\"): use is \"enc\"".
  const std::vector<std::string>& skipped() const { return skipped_; }

 private:
  friend class JwtVerifier;

  std::vector<std::shared_ptr<const JwtKey>> keys_;
  std::vector<std::string> skipped_;
};

enum class JwtError : uint8_t {
  kNone,
  kMalformed,      // not a compact JWS, bad base64url, not JSON objects, bad claim types, too large
  kForbiddenAlg,   // "none", an alg not allowed, or not matching the selected key's type
  kUnknownKid,     // the token names a kid no configured key has
  kBadSignature,   // no candidate key verifies the signature
  kExpired,        // now >= exp + leeway
  kNotYetValid,    // now + leeway < nbf
  kWrongIssuer,    // iss missing or not the required issuer
  kWrongAudience,  // aud missing or none of its values accepted
  kMissingExp,     // exp required but absent
};

// "malformed", "forbidden_alg", ... (for logs and metrics labels).
std::string_view jwt_error_name(JwtError error);

struct JwtResult {
  JwtError error = JwtError::kNone;
  // A short fixed description ("token expired"); never contains token
  // content, so it is safe to send back in error_description.
  std::string_view message;
  // On success: the "sub" claim ("" when absent) and the algorithm used.
  std::string subject;
  JwtAlg alg = JwtAlg::kHS256;
  // On success: every top-level claim whose value is a string, sorted by
  // name (email, iss, sub...). Values are only as trustworthy as the
  // issuer: check them (no CR/LF...) before putting one in a header.
  std::vector<std::pair<std::string, std::string>> string_claims;

  bool ok() const { return error == JwtError::kNone; }
  // The string value of top-level claim `name`; nullopt when absent or not a string.
  std::optional<std::string_view> claim(std::string_view name) const;
};

struct JwtVerifierOptions {
  // Accepted algorithms; empty: all three. Either way restricted to the
  // algorithms the key set has keys for.
  std::vector<JwtAlg> algorithms;
  // Required "iss" (exact match); empty: iss is not checked.
  std::string issuer;
  // Accepted audiences: "aud" (a string or an array of strings) must contain
  // one of them; empty: aud is not checked.
  std::vector<std::string> audiences;
  // Clock skew tolerated on exp and nbf, in seconds.
  int64_t leeway_s = 60;
  // Refuse tokens without exp (a token that never expires).
  bool require_exp = true;
  // Longer tokens are refused before any decoding.
  size_t max_token_bytes = 8192;
};

class JwtVerifier {
 public:
  // Throws std::invalid_argument when no key matches any allowed algorithm
  // or the options are invalid (negative leeway).
  JwtVerifier(JwtKeySet keys, JwtVerifierOptions options);

  // Verifies a compact JWS at time `now_unix_s` (seconds since the epoch).
  JwtResult verify(std::string_view token, int64_t now_unix_s) const;

  const JwtVerifierOptions& options() const { return options_; }
  // The algorithms accepted after restriction to the key set.
  const std::vector<JwtAlg>& algorithms() const { return algorithms_; }

 private:
  JwtKeySet keys_;
  JwtVerifierOptions options_;
  std::vector<JwtAlg> algorithms_;
};

// The token of an "Authorization: Bearer <token>" value: scheme
// case-insensitive, exactly one space, a non-empty b64token (RFC 6750 2.1).
// Empty when the value is anything else.
std::string_view bearer_token(std::string_view authorization_header);

// A WWW-Authenticate value (RFC 6750 3): `Bearer realm="torii"`, plus
// `, error="<error>"` and `, error_description="<description>"` when given.
// Quotes and backslashes are escaped, control characters replaced by spaces.
// Use no error for a request without credentials, "invalid_token" for a
// token that failed verification (401), "insufficient_scope" with a 403.
std::string bearer_challenge(std::string_view realm, std::string_view error = {},
                             std::string_view description = {});
// The challenge for a failed verification: error="invalid_token" and the
// result's message as description.
std::string bearer_challenge(std::string_view realm, const JwtResult& failed);

// base64url (RFC 4648 5) decoding, padded or not; nullopt on any character
// outside the alphabet, misplaced '=', an impossible length or non-zero
// trailing bits. Exposed for tests and the key loaders.
std::optional<std::string> base64url_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);

}  // namespace torii::gateway

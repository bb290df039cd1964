// JWT verification with OpenSSL 3 (EVP only) and nlohmann-json; see auth_jwt.hpp.
#include "gateway/auth_jwt.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace torii::gateway {

namespace {

using nlohmann::json;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct MacFree {
  void operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using MacPtr = std::unique_ptr<EVP_MAC, MacFree>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;

constexpr size_t kMinRsaBits = 2048;        // RFC 7518 3.3
constexpr size_t kMinHmacSecretBytes = 32;  // RFC 7518 3.2: at least the hash size
constexpr size_t kP256CoordinateBytes = 32;
constexpr size_t kEs256SignatureBytes = 2 * kP256CoordinateBytes;  // raw r || s (RFC 7518 3.4)
constexpr size_t kSha256Bytes = 32;

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Failed OpenSSL calls leave errors on the thread's queue; drop them so they
// are not reported later by unrelated code (TLS error logging reads it).
void clear_openssl_errors() { ERR_clear_error(); }

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// base64url

std::optional<std::string> base64url_decode(std::string_view text) {
  // Padding is optional, but when present it must complete the last quantum.
  if (!text.empty() && text.back() == '=') {
    if (text.size() % 4 != 0) return std::nullopt;
    text.remove_suffix(1);
    if (!text.empty() && text.back() == '=') text.remove_suffix(1);
    if (text.size() % 4 == 0) return std::nullopt;  // "=" where no padding was due
  }
  if (text.size() % 4 == 1) return std::nullopt;  // 6 bits cannot make a byte
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int acc_bits = 0;
  for (const char c : text) {
    const int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    acc_bits += 6;
    if (acc_bits >= 8) {
      acc_bits -= 8;
      out.push_back(static_cast<char>((acc >> acc_bits) & 0xff));
    }
  }
  // Non-zero leftover bits: a second spelling of the same bytes; refuse it
  // so each token has one encoding.
  if ((acc & ((1U << acc_bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string base64url_encode(std::string_view bytes) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int acc_bits = 0;
  for (const char c : bytes) {
    acc = (acc << 8) | static_cast<unsigned char>(c);
    acc_bits += 8;
    while (acc_bits >= 6) {
      acc_bits -= 6;
      out.push_back(kAlphabet[(acc >> acc_bits) & 0x3f]);
    }
  }
  if (acc_bits > 0) out.push_back(kAlphabet[(acc << (6 - acc_bits)) & 0x3f]);
  return out;
}

// ---------------------------------------------------------------------------
// Algorithms and errors

std::string_view jwt_alg_name(JwtAlg alg) {
  switch (alg) {
    case JwtAlg::kHS256:
      return "HS256";
    case JwtAlg::kRS256:
      return "RS256";
    case JwtAlg::kES256:
      return "ES256";
  }
  return "?";
}

std::optional<JwtAlg> jwt_alg_from_name(std::string_view name) {
  for (const JwtAlg alg : {JwtAlg::kHS256, JwtAlg::kRS256, JwtAlg::kES256}) {
    if (name == jwt_alg_name(alg)) return alg;
  }
  return std::nullopt;
}

std::string_view jwt_error_name(JwtError error) {
  switch (error) {
    case JwtError::kNone:
      return "none";
    case JwtError::kMalformed:
      return "malformed";
    case JwtError::kForbiddenAlg:
      return "forbidden_alg";
    case JwtError::kUnknownKid:
      return "unknown_kid";
    case JwtError::kBadSignature:
      return "bad_signature";
    case JwtError::kExpired:
      return "expired";
    case JwtError::kNotYetValid:
      return "not_yet_valid";
    case JwtError::kWrongIssuer:
      return "wrong_issuer";
    case JwtError::kWrongAudience:
      return "wrong_audience";
    case JwtError::kMissingExp:
      return "missing_exp";
  }
  return "?";
}

std::optional<std::string_view> JwtResult::claim(std::string_view name) const {
  for (const auto& [claim_name, value] : string_claims) {
    if (claim_name == name) return std::string_view(value);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Keys

// One verification key: a public key (RS256, ES256) or a keyed HMAC context
// (HS256) that each verification duplicates, so the secret is set up once.
struct JwtKey {
  JwtAlg alg = JwtAlg::kHS256;
  std::string kid;  // empty: the key has no kid
  PkeyPtr public_key;
  MacCtxPtr hmac_template;
};

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

std::shared_ptr<JwtKey> make_hmac_key(std::string_view secret, std::string_view kid,
                                      const std::string& where) {
  if (secret.size() < kMinHmacSecretBytes) {
    fail(where + "HS256 secret is " + std::to_string(secret.size()) + " bytes, at least " +
         std::to_string(kMinHmacSecretBytes) + " are required");
  }
  // Fetched once: fetching per verification would take the provider lock.
  static EVP_MAC* const hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (hmac == nullptr) {
    clear_openssl_errors();
    fail(where + "OpenSSL has no HMAC");
  }
  MacCtxPtr ctx(EVP_MAC_CTX_new(hmac));
  char digest_name[] = "SHA256";
  const std::array<OSSL_PARAM, 2> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end()};
  if (!ctx || EVP_MAC_init(ctx.get(), bytes_of(secret), secret.size(), params.data()) != 1) {
    clear_openssl_errors();
    fail(where + "cannot set up HMAC-SHA256");
  }
  auto key = std::make_shared<JwtKey>();
  key->alg = JwtAlg::kHS256;
  key->kid = std::string(kid);
  key->hmac_template = std::move(ctx);
  return key;
}

// The algorithm an RSA or EC P-256 public key verifies; throws for other keys.
JwtAlg classify_public_key(EVP_PKEY* pkey, const std::string& where) {
  if (EVP_PKEY_is_a(pkey, "RSA") == 1) {
    const int bits = EVP_PKEY_get_bits(pkey);
    if (bits < static_cast<int>(kMinRsaBits)) {
      fail(where + "RSA key has " + std::to_string(bits) + " bits, at least " +
           std::to_string(kMinRsaBits) + " are required");
    }
    return JwtAlg::kRS256;
  }
  if (EVP_PKEY_is_a(pkey, "EC") == 1) {
    std::array<char, 64> group{};
    size_t group_len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size(),
                                       &group_len) != 1) {
      clear_openssl_errors();
      fail(where + "EC key without a named curve");
    }
    const std::string_view name(group.data(), group_len);
    if (name != "prime256v1" && name != "P-256") {
      fail(where + "EC key on curve " + std::string(name) + ", only P-256 (ES256) is supported");
    }
    return JwtAlg::kES256;
  }
  fail(where + "unsupported key type " + std::string(EVP_PKEY_get0_type_name(pkey)) +
       " (RSA or EC P-256 expected)");
}

// OpenSSL's own consistency check of a public key built from JWK numbers
// (e.g. an EC point that is not on the curve).
void check_public_key(EVP_PKEY* pkey, const std::string& where) {
  const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
  if (!ctx || EVP_PKEY_public_check(ctx.get()) != 1) {
    clear_openssl_errors();
    fail(where + "invalid public key");
  }
}

PkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* builder, const std::string& where) {
  const ParamPtr params(OSSL_PARAM_BLD_to_param(builder));
  const PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    clear_openssl_errors();
    fail(where + "OpenSSL refused the " + type + " key parameters");
  }
  PkeyPtr pkey(raw);
  check_public_key(pkey.get(), where);
  return pkey;
}

// A base64url member of JWK `jwk` (required).
std::string jwk_bytes(const json& jwk, const char* field, const std::string& where) {
  const auto it = jwk.find(field);
  if (it == jwk.end()) fail(where + "missing \"" + field + "\"");
  if (!it->is_string()) fail(where + "\"" + field + "\" is not a string");
  auto decoded = base64url_decode(it->get_ref<const std::string&>());
  if (!decoded) fail(where + "\"" + field + "\" is not valid base64url");
  if (decoded->empty()) fail(where + "\"" + field + "\" is empty");
  return std::move(*decoded);
}

PkeyPtr rsa_from_jwk(const json& jwk, const std::string& where) {
  const std::string n = jwk_bytes(jwk, "n", where);
  const std::string e = jwk_bytes(jwk, "e", where);
  const BnPtr modulus(BN_bin2bn(bytes_of(n), static_cast<int>(n.size()), nullptr));
  const BnPtr exponent(BN_bin2bn(bytes_of(e), static_cast<int>(e.size()), nullptr));
  const ParamBldPtr builder(OSSL_PARAM_BLD_new());
  if (!modulus || !exponent || !builder ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, modulus.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, exponent.get()) != 1) {
    clear_openssl_errors();
    fail(where + "cannot build the RSA parameters");
  }
  return pkey_from_params("RSA", builder.get(), where);
}

PkeyPtr ec_from_jwk(const json& jwk, const std::string& where) {
  const auto crv = jwk.find("crv");
  if (crv == jwk.end()) fail(where + "missing \"crv\"");
  if (!crv->is_string() || crv->get_ref<const std::string&>() != "P-256") {
    fail(where + "\"crv\" must be \"P-256\" (ES256)");
  }
  const std::string x = jwk_bytes(jwk, "x", where);
  const std::string y = jwk_bytes(jwk, "y", where);
  if (x.size() != kP256CoordinateBytes) fail(where + "\"x\" is not 32 bytes");
  if (y.size() != kP256CoordinateBytes) fail(where + "\"y\" is not 32 bytes");
  // SEC 1 uncompressed point: 0x04 || x || y.
  std::string point = "\x04" + x + y;
  char group[] = "prime256v1";
  const ParamBldPtr builder(OSSL_PARAM_BLD_new());
  if (!builder ||
      OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    clear_openssl_errors();
    fail(where + "cannot build the EC parameters");
  }
  return pkey_from_params("EC", builder.get(), where);
}

// An optional string member of a JWK; throws when present with another type.
std::optional<std::string> jwk_optional_string(const json& jwk, const char* field,
                                               const std::string& where) {
  const auto it = jwk.find(field);
  if (it == jwk.end()) return std::nullopt;
  if (!it->is_string()) fail(where + "\"" + field + "\" is not a string");
  return it->get<std::string>();
}

}  // namespace

JwtKeySet::JwtKeySet() = default;
JwtKeySet::~JwtKeySet() = default;
JwtKeySet::JwtKeySet(const JwtKeySet&) = default;
JwtKeySet& JwtKeySet::operator=(const JwtKeySet&) = default;
JwtKeySet::JwtKeySet(JwtKeySet&&) noexcept = default;
JwtKeySet& JwtKeySet::operator=(JwtKeySet&&) noexcept = default;

JwtKeySet JwtKeySet::from_jwks(std::string_view jwks_json) {
  const json doc = json::parse(jwks_json.begin(), jwks_json.end(), nullptr, false);
  if (doc.is_discarded()) fail("JWKS: not valid JSON");
  if (!doc.is_object()) fail("JWKS: not a JSON object");
  const auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array()) fail("JWKS: \"keys\" array missing");

  JwtKeySet set;
  for (size_t index = 0; index < keys->size(); ++index) {
    const json& jwk = (*keys)[index];
    std::string where = "JWKS key " + std::to_string(index) + ": ";
    if (!jwk.is_object()) fail(where + "not a JSON object");
    const auto kid = jwk_optional_string(jwk, "kid", where);
    if (kid) where = "JWKS key " + std::to_string(index) + " (kid \"" + *kid + "\"): ";
    const auto kty = jwk_optional_string(jwk, "kty", where);
    if (!kty) fail(where + "missing \"kty\"");
    const auto use = jwk_optional_string(jwk, "use", where);
    const auto alg_name = jwk_optional_string(jwk, "alg", where);

    if (use && *use != "sig") {
      set.skipped_.push_back(where + "use is \"" + *use + "\"");
      continue;
    }
    // RFC 7517 4.3: a key_ops list without "verify" means not for us.
    if (const auto ops = jwk.find("key_ops"); ops != jwk.end()) {
      if (!ops->is_array()) fail(where + "\"key_ops\" is not an array");
      if (std::find(ops->begin(), ops->end(), json("verify")) == ops->end()) {
        set.skipped_.push_back(where + "key_ops has no \"verify\"");
        continue;
      }
    }
    std::optional<JwtAlg> declared_alg;
    if (alg_name) {
      declared_alg = jwt_alg_from_name(*alg_name);
      if (!declared_alg) {
        set.skipped_.push_back(where + "alg \"" + *alg_name + "\" is not supported");
        continue;
      }
    }

    std::shared_ptr<JwtKey> key;
    if (*kty == "RSA") {
      key = std::make_shared<JwtKey>();
      key->public_key = rsa_from_jwk(jwk, where);
      key->alg = classify_public_key(key->public_key.get(), where);
    } else if (*kty == "EC") {
      key = std::make_shared<JwtKey>();
      key->public_key = ec_from_jwk(jwk, where);
      key->alg = classify_public_key(key->public_key.get(), where);
    } else if (*kty == "oct") {
      std::string secret = jwk_bytes(jwk, "k", where);
      key = make_hmac_key(secret, kid.value_or(""), where);
      OPENSSL_cleanse(secret.data(), secret.size());
    } else {
      set.skipped_.push_back(where + "kty \"" + *kty + "\" is not supported");
      continue;
    }
    if (declared_alg && *declared_alg != key->alg) {
      fail(where + "\"alg\" " + *alg_name + " does not match kty " + *kty);
    }
    key->kid = kid.value_or("");
    set.keys_.push_back(std::move(key));
  }
  if (set.keys_.empty()) fail("JWKS: no usable signing key (HS256, RS256 or ES256)");
  return set;
}

JwtKeySet JwtKeySet::from_pem(std::string_view pem, std::string_view kid) {
  const std::string where = "PEM public key: ";
  const BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) fail(where + "out of memory");
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) {
    // Not a bare public key: maybe a certificate carrying one.
    clear_openssl_errors();
    BIO_reset(bio.get());
    const X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert) pkey.reset(X509_get_pubkey(cert.get()));
  }
  if (!pkey) {
    clear_openssl_errors();
    fail(where + "no \"PUBLIC KEY\" or \"CERTIFICATE\" PEM block found");
  }
  auto key = std::make_shared<JwtKey>();
  key->alg = classify_public_key(pkey.get(), where);
  key->kid = std::string(kid);
  key->public_key = std::move(pkey);
  JwtKeySet set;
  set.keys_.push_back(std::move(key));
  return set;
}

JwtKeySet JwtKeySet::from_hmac_secret(std::string_view secret, std::string_view kid) {
  JwtKeySet set;
  set.keys_.push_back(make_hmac_key(secret, kid, "HMAC secret: "));
  return set;
}

void JwtKeySet::merge(const JwtKeySet& other) {
  keys_.insert(keys_.end(), other.keys_.begin(), other.keys_.end());
  skipped_.insert(skipped_.end(), other.skipped_.begin(), other.skipped_.end());
}

bool JwtKeySet::has_key_for(JwtAlg alg) const {
  return std::any_of(keys_.begin(), keys_.end(),
                     [alg](const std::shared_ptr<const JwtKey>& key) { return key->alg == alg; });
}

// ---------------------------------------------------------------------------
// Signature checks

namespace {

bool verify_hs256(const JwtKey& key, std::string_view signing_input, std::string_view signature) {
  if (signature.size() != kSha256Bytes) return false;
  const MacCtxPtr ctx(EVP_MAC_CTX_dup(key.hmac_template.get()));
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  size_t mac_len = 0;
  if (!ctx || EVP_MAC_update(ctx.get(), bytes_of(signing_input), signing_input.size()) != 1 ||
      EVP_MAC_final(ctx.get(), mac.data(), &mac_len, mac.size()) != 1 || mac_len != kSha256Bytes) {
    clear_openssl_errors();
    return false;
  }
  // Constant time: a byte-by-byte early exit would let a client find a valid
  // MAC for its own payload one byte at a time.
  return CRYPTO_memcmp(mac.data(), signature.data(), kSha256Bytes) == 0;
}

bool verify_digest_signature(EVP_PKEY* pkey, std::string_view signing_input,
                             const unsigned char* signature, size_t signature_len) {
  const MdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ok = ctx &&
                  EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
                  EVP_DigestVerify(ctx.get(), signature, signature_len, bytes_of(signing_input),
                                   signing_input.size()) == 1;
  if (!ok) clear_openssl_errors();
  return ok;
}

bool verify_rs256(const JwtKey& key, std::string_view signing_input, std::string_view signature) {
  // RSASSA-PKCS1-v1_5 signatures are exactly the modulus size.
  if (signature.size() != static_cast<size_t>(EVP_PKEY_get_size(key.public_key.get()))) {
    return false;
  }
  return verify_digest_signature(key.public_key.get(), signing_input, bytes_of(signature),
                                 signature.size());
}

bool verify_es256(const JwtKey& key, std::string_view signing_input, std::string_view signature) {
  // JWS carries raw r || s; EVP wants the DER ECDSA-Sig-Value.
  if (signature.size() != kEs256SignatureBytes) return false;
  EcdsaSigPtr sig(ECDSA_SIG_new());
  constexpr int kHalf = static_cast<int>(kP256CoordinateBytes);
  BnPtr r(BN_bin2bn(bytes_of(signature), kHalf, nullptr));
  BnPtr s(BN_bin2bn(bytes_of(signature) + kHalf, kHalf, nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    clear_openssl_errors();
    return false;
  }
  // ECDSA_SIG_set0 took r and s.
  static_cast<void>(r.release());
  static_cast<void>(s.release());
  const int der_len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (der_len <= 0) {
    clear_openssl_errors();
    return false;
  }
  std::string der(static_cast<size_t>(der_len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &out) != der_len) {
    clear_openssl_errors();
    return false;
  }
  return verify_digest_signature(key.public_key.get(), signing_input, bytes_of(der), der.size());
}

// The key's own algorithm decides how the signature is checked; `alg` (the
// token's) must agree, never select.
bool verify_signature(const JwtKey& key, JwtAlg alg, std::string_view signing_input,
                      std::string_view signature) {
  if (key.alg != alg) return false;
  switch (key.alg) {
    case JwtAlg::kHS256:
      return verify_hs256(key, signing_input, signature);
    case JwtAlg::kRS256:
      return verify_rs256(key, signing_input, signature);
    case JwtAlg::kES256:
      return verify_es256(key, signing_input, signature);
  }
  return false;
}

JwtResult failure(JwtError error, std::string_view message) {
  JwtResult result;
  result.error = error;
  result.message = message;
  return result;
}

// A JSON object from its text; nullopt when it is not valid JSON or not an object.
std::optional<json> parse_json_object(std::string_view text) {
  json value = json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded() || !value.is_object()) return std::nullopt;
  return value;
}

// A NumericDate claim (RFC 7519 2: integer or not); nullopt when absent;
// sets `malformed` when present but not a finite number.
std::optional<double> numeric_date(const json& claims, const char* name, bool& malformed) {
  const auto it = claims.find(name);
  if (it == claims.end()) return std::nullopt;
  if (!it->is_number()) {
    malformed = true;
    return std::nullopt;
  }
  const double value = it->get<double>();
  if (!std::isfinite(value)) {
    malformed = true;
    return std::nullopt;
  }
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------
// Verifier

JwtVerifier::JwtVerifier(JwtKeySet keys, JwtVerifierOptions options)
    : keys_(std::move(keys)), options_(std::move(options)) {
  if (options_.leeway_s < 0) throw std::invalid_argument("JWT leeway must not be negative");
  std::vector<JwtAlg> wanted = options_.algorithms;
  if (wanted.empty()) wanted = {JwtAlg::kHS256, JwtAlg::kRS256, JwtAlg::kES256};
  for (const JwtAlg alg : wanted) {
    const bool seen = std::find(algorithms_.begin(), algorithms_.end(), alg) != algorithms_.end();
    if (!seen && keys_.has_key_for(alg)) algorithms_.push_back(alg);
  }
  if (algorithms_.empty()) {
    throw std::invalid_argument("JWT: no key for any of the allowed algorithms");
  }
}

JwtResult JwtVerifier::verify(std::string_view token, int64_t now_unix_s) const {
  if (token.size() > options_.max_token_bytes) {
    return failure(JwtError::kMalformed, "token too large");
  }
  // Compact JWS: header.payload.signature (a JWE has five parts).
  const size_t first_dot = token.find('.');
  const size_t second_dot =
      first_dot == std::string_view::npos ? first_dot : token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos ||
      token.find('.', second_dot + 1) != std::string_view::npos) {
    return failure(JwtError::kMalformed, "token is not header.payload.signature");
  }
  const std::string_view header_segment = token.substr(0, first_dot);
  const std::string_view payload_segment = token.substr(first_dot + 1, second_dot - first_dot - 1);
  const std::string_view signature_segment = token.substr(second_dot + 1);
  const std::string_view signing_input = token.substr(0, second_dot);

  const auto header_json = base64url_decode(header_segment);
  const auto header = header_json ? parse_json_object(*header_json) : std::nullopt;
  if (!header) return failure(JwtError::kMalformed, "token header is not a base64url JSON object");
  const auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) {
    return failure(JwtError::kMalformed, "token header has no alg");
  }
  const auto& alg_name = alg_it->get_ref<const std::string&>();
  if (lower_ascii(alg_name) == "none") {
    return failure(JwtError::kForbiddenAlg, "unsigned tokens (alg none) are not accepted");
  }
  const auto alg = jwt_alg_from_name(alg_name);
  if (!alg || std::find(algorithms_.begin(), algorithms_.end(), *alg) == algorithms_.end()) {
    return failure(JwtError::kForbiddenAlg, "token alg is not accepted");
  }
  // RFC 7515 4.1.11: extensions marked critical must be understood; none are.
  if (header->contains("crit")) {
    return failure(JwtError::kMalformed, "token has critical header extensions");
  }
  std::string_view kid;
  bool has_kid = false;
  if (const auto kid_it = header->find("kid"); kid_it != header->end()) {
    if (!kid_it->is_string()) return failure(JwtError::kMalformed, "token kid is not a string");
    kid = kid_it->get_ref<const std::string&>();
    has_kid = true;
  }

  // Candidate keys. A kid picks the keys carrying it; keys configured without
  // a kid (a PEM or a secret) accept any kid. Only keys of the alg's type are
  // ever used, whatever the token claims.
  std::vector<const JwtKey*> candidates;
  bool kid_known = false;
  if (has_kid) {
    for (const auto& key : keys_.keys_) {
      if (key->kid != kid) continue;
      kid_known = true;
      if (key->alg == *alg) candidates.push_back(key.get());
    }
    if (kid_known && candidates.empty()) {
      return failure(JwtError::kForbiddenAlg, "token alg does not match its key");
    }
  }
  if (!kid_known) {
    for (const auto& key : keys_.keys_) {
      if (key->alg == *alg && (!has_kid || key->kid.empty())) candidates.push_back(key.get());
    }
    if (candidates.empty()) return failure(JwtError::kUnknownKid, "token kid is unknown");
  }

  // Decode the other two segments before any crypto, so a garbled token is
  // reported as such rather than as a bad signature.
  const auto signature = base64url_decode(signature_segment);
  if (!signature) return failure(JwtError::kMalformed, "token signature is not base64url");
  const auto payload_json = base64url_decode(payload_segment);
  if (!payload_json) return failure(JwtError::kMalformed, "token payload is not base64url");
  const bool verified = std::any_of(candidates.begin(), candidates.end(), [&](const JwtKey* key) {
    return verify_signature(*key, *alg, signing_input, *signature);
  });
  if (!verified) return failure(JwtError::kBadSignature, "token signature is invalid");

  // Claims are only looked at once they are known to come from the issuer.
  const auto claims = parse_json_object(*payload_json);
  if (!claims) return failure(JwtError::kMalformed, "token claims are not a JSON object");

  bool malformed_date = false;
  const auto exp = numeric_date(*claims, "exp", malformed_date);
  const auto nbf = numeric_date(*claims, "nbf", malformed_date);
  if (malformed_date) return failure(JwtError::kMalformed, "token exp or nbf is not a number");
  const double now = static_cast<double>(now_unix_s);
  const auto leeway = static_cast<double>(options_.leeway_s);
  if (!exp && options_.require_exp) return failure(JwtError::kMissingExp, "token has no exp");
  if (exp && now >= *exp + leeway) return failure(JwtError::kExpired, "token expired");
  if (nbf && now + leeway < *nbf) return failure(JwtError::kNotYetValid, "token not yet valid");

  if (!options_.issuer.empty()) {
    const auto iss = claims->find("iss");
    if (iss == claims->end() || !iss->is_string() ||
        iss->get_ref<const std::string&>() != options_.issuer) {
      return failure(JwtError::kWrongIssuer, "token issuer is not accepted");
    }
  }
  if (!options_.audiences.empty()) {
    const auto aud = claims->find("aud");
    auto accepted = [this](const json& value) {
      return value.is_string() &&
             std::find(options_.audiences.begin(), options_.audiences.end(),
                       value.get_ref<const std::string&>()) != options_.audiences.end();
    };
    bool match = false;
    if (aud != claims->end()) {
      if (aud->is_array()) {
        match = std::any_of(aud->begin(), aud->end(), accepted);
      } else {
        match = accepted(*aud);
      }
    }
    if (!match) return failure(JwtError::kWrongAudience, "token audience is not accepted");
  }

  JwtResult result;
  result.alg = *alg;
  if (const auto sub = claims->find("sub"); sub != claims->end()) {
    if (!sub->is_string()) return failure(JwtError::kMalformed, "token sub is not a string");
    result.subject = sub->get<std::string>();
  }
  for (const auto& [name, value] : claims->items()) {
    if (value.is_string()) result.string_claims.emplace_back(name, value.get<std::string>());
  }
  return result;
}

// ---------------------------------------------------------------------------
// HTTP helpers

std::string_view bearer_token(std::string_view authorization_header) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization_header.size() <= kScheme.size()) return {};
  if (lower_ascii(authorization_header.substr(0, kScheme.size())) != kScheme) return {};
  const std::string_view token = authorization_header.substr(kScheme.size());
  // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
  const size_t body_end = token.find_last_not_of('=');
  if (body_end == std::string_view::npos) return {};
  for (size_t i = 0; i <= body_end; ++i) {
    const char c = token[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
    if (!ok) return {};
  }
  return token;
}

namespace {

// An RFC 9110 quoted-string; control characters (which it cannot carry and
// which would split a header) become spaces.
void append_quoted(std::string& out, std::string_view value) {
  out += '"';
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += ' ';
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

std::string bearer_challenge(std::string_view realm, std::string_view error,
                             std::string_view description) {
  std::string out = "Bearer realm=";
  append_quoted(out, realm);
  if (!error.empty()) {
    out += ", error=";
    append_quoted(out, error);
  }
  if (!description.empty()) {
    out += ", error_description=";
    append_quoted(out, description);
  }
  return out;
}

std::string bearer_challenge(std::string_view realm, const JwtResult& failed) {
  return bearer_challenge(realm, "invalid_token", failed.message);
}

}  // namespace torii::gateway

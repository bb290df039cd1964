// Unit tests for gateway/auth_jwt: JWT verification (HS256, RS256, ES256),
// key sets from JWKS / PEM / secrets, and the Bearer header helpers. Keys are
// made at test time and tokens are signed here with a small EVP signer.
#include <doctest/doctest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/auth_jwt.hpp"
#include "tests/unit/support/tls_certs.hpp"

namespace {

using torii::gateway::base64url_decode;
using torii::gateway::base64url_encode;
using torii::gateway::bearer_challenge;
using torii::gateway::bearer_token;
using torii::gateway::jwt_error_name;
using torii::gateway::JwtAlg;
using torii::gateway::JwtError;
using torii::gateway::JwtKeySet;
using torii::gateway::JwtResult;
using torii::gateway::JwtVerifier;
using torii::gateway::JwtVerifierOptions;
using torii::test::KeyType;
using torii::test::make_key;
using torii::test::openssl_check;
using torii::test::PkeyPtr;

constexpr int64_t kNow = 1'700'000'000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-hs256-test-secret";

std::string_view as_chars(const unsigned char* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// --- Signing (the test's side of the protocol) ------------------------------

std::string hmac_sha256(std::string_view secret, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  size_t mac_len = 0;
  char digest[] = "SHA256";
  const std::array<OSSL_PARAM, 2> params = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  openssl_check(EVP_Q_mac(nullptr, "HMAC", nullptr, nullptr, params.data(), secret.data(),
                          secret.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size(), mac.data(), mac.size(), &mac_len) != nullptr,
                "EVP_Q_mac");
  return std::string(as_chars(mac.data(), mac_len));
}

// A SHA-256 signature by `key`: PKCS#1 v1.5 for RSA, DER ECDSA for EC.
std::string digest_sign(EVP_PKEY* key, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  openssl_check(ctx && EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1,
                "EVP_DigestSignInit");
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  size_t len = 0;
  openssl_check(EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) == 1, "EVP_DigestSign");
  std::string sig(len, '\0');
  openssl_check(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                               data.size()) == 1,
                "EVP_DigestSign");
  sig.resize(len);
  return sig;
}

// DER ECDSA-Sig-Value -> the JWS form, r || s, 32 bytes each.
std::string der_to_raw_es256(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())), &ECDSA_SIG_free);
  openssl_check(sig != nullptr, "d2i_ECDSA_SIG");
  std::array<unsigned char, 64> raw{};
  openssl_check(BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), raw.data(), 32) == 32 &&
                    BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), raw.data() + 32, 32) == 32,
                "BN_bn2binpad");
  return std::string(as_chars(raw.data(), raw.size()));
}

struct Signer {
  std::string alg;  // the header's alg
  EVP_PKEY* key = nullptr;
  std::string secret;

  std::string sign(std::string_view input) const {
    if (alg == "HS256") return hmac_sha256(secret, input);
    if (alg == "RS256") return digest_sign(key, input);
    if (alg == "ES256") return der_to_raw_es256(digest_sign(key, input));
    return {};  // "none"
  }
};

// A compact JWS of the given header and payload JSON texts.
std::string make_token(const Signer& signer, std::string_view header_json,
                       std::string_view payload_json) {
  const std::string input = base64url_encode(header_json) + "." + base64url_encode(payload_json);
  return input + "." + base64url_encode(signer.sign(input));
}

std::string header_for(const std::string& alg, const std::string& kid = {}) {
  std::string h = R"({"typ":"JWT","alg":")" + alg + "\"";
  if (!kid.empty()) h += R"(,"kid":")" + kid + "\"";
  return h + "}";
}

// Claims valid at kNow: exp in an hour.
std::string claims(const std::string& extra = {}) {
  std::string c =
      R"({"sub":"user-42","iss":"https://issuer.test","exp":)" + std::to_string(kNow + 3600);
  if (!extra.empty()) c += "," + extra;
  return c + "}";
}

// --- Keys as the configuration would give them -----------------------------

std::string bn_param_bytes(EVP_PKEY* key, const char* name, int pad_to = 0) {
  BIGNUM* bn = nullptr;
  openssl_check(EVP_PKEY_get_bn_param(key, name, &bn) == 1, "EVP_PKEY_get_bn_param");
  const int len = pad_to > 0 ? pad_to : BN_num_bytes(bn);
  std::string out(static_cast<size_t>(len), '\0');
  const int written = BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), len);
  BN_free(bn);
  openssl_check(written == len, "BN_bn2binpad");
  return out;
}

std::string rsa_jwk(EVP_PKEY* key, const std::string& kid, const std::string& more = {}) {
  return R"({"kty":"RSA","kid":")" + kid + R"(","n":")" +
         base64url_encode(bn_param_bytes(key, OSSL_PKEY_PARAM_RSA_N)) + R"(","e":")" +
         base64url_encode(bn_param_bytes(key, OSSL_PKEY_PARAM_RSA_E)) + "\"" + more + "}";
}

std::string ec_jwk(EVP_PKEY* key, const std::string& kid, const std::string& more = {}) {
  return R"({"kty":"EC","crv":"P-256","kid":")" + kid + R"(","x":")" +
         base64url_encode(bn_param_bytes(key, OSSL_PKEY_PARAM_EC_PUB_X, 32)) + R"(","y":")" +
         base64url_encode(bn_param_bytes(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"" + more + "}";
}

std::string public_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  openssl_check(bio && PEM_write_bio_PUBKEY(bio.get(), key) == 1, "PEM_write_bio_PUBKEY");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string jwks(const std::vector<std::string>& keys) {
  std::string out = R"({"keys":[)";
  for (size_t i = 0; i < keys.size(); ++i) out += (i == 0 ? "" : ",") + keys[i];
  return out + "]}";
}

// The message of the std::invalid_argument `make` throws ("" if none).
template <typename Make>
std::string load_error(Make make) {
  try {
    make();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

JwtVerifier verifier_for(JwtKeySet keys, JwtVerifierOptions options = {}) {
  return JwtVerifier(std::move(keys), std::move(options));
}

std::string error_of(const JwtResult& r) { return std::string(jwt_error_name(r.error)); }

// `token` with its decoded signature changed by `change`.
template <typename Change>
std::string with_signature(const std::string& token, Change change) {
  const size_t dot = token.rfind('.');
  auto sig = base64url_decode(std::string_view(token).substr(dot + 1));
  REQUIRE(sig);
  change(*sig);
  return token.substr(0, dot + 1) + base64url_encode(*sig);
}

// Flips one bit in the middle of the signature.
void flip_bit(std::string& sig) {
  REQUIRE(!sig.empty());
  sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);
}

struct Keys {
  PkeyPtr rsa = make_key(KeyType::kRsa2048);
  PkeyPtr ec = make_key(KeyType::kEcP256);
  PkeyPtr ec2 = make_key(KeyType::kEcP256);
};

}  // namespace

TEST_SUITE("auth jwt") {
  TEST_CASE("base64url decodes padded and unpadded text and rejects anything else") {
    CHECK(base64url_decode("") == std::string());
    CHECK(base64url_decode("Zm9v") == std::string("foo"));
    CHECK(base64url_decode("Zm8") == std::string("fo"));
    CHECK(base64url_decode("Zm8=") == std::string("fo"));
    CHECK(base64url_decode("Zg") == std::string("f"));
    CHECK(base64url_decode("Zg==") == std::string("f"));
    CHECK(base64url_decode("-_8") == std::string("\xfb\xff"));
    CHECK_FALSE(base64url_decode("+/8"));      // standard alphabet
    CHECK_FALSE(base64url_decode("Zm9v!"));    // invalid char
    CHECK_FALSE(base64url_decode("Zm 9v"));    // whitespace
    CHECK_FALSE(base64url_decode("Z"));        // impossible length
    CHECK_FALSE(base64url_decode("Zg="));      // incomplete padding
    CHECK_FALSE(base64url_decode("Zm9v==="));  // too much padding
    CHECK_FALSE(base64url_decode("Zm9v===="));
    CHECK_FALSE(base64url_decode("Z=g="));  // '=' inside
    CHECK_FALSE(base64url_decode("Zh"));    // non-zero trailing bits
    const std::string bytes("\x00\x01\xfe\xff rest", 8);
    CHECK(base64url_decode(base64url_encode(bytes)) == bytes);
    CHECK(base64url_encode("fo") == "Zm8");
  }

  TEST_CASE("valid HS256, RS256 and ES256 tokens are accepted") {
    Keys keys;
    SUBCASE("HS256") {
      const auto v = verifier_for(JwtKeySet::from_hmac_secret(kSecret));
      const auto r = v.verify(make_token({"HS256", nullptr, kSecret}, header_for("HS256"),
                                         claims(R"("email":"u@example.com","admin":true)")),
                              kNow);
      CHECK_MESSAGE(r.ok(), r.message);
      CHECK(r.subject == "user-42");
      CHECK(r.alg == JwtAlg::kHS256);
      CHECK(r.claim("email") == std::string_view("u@example.com"));
      CHECK(r.claim("iss") == std::string_view("https://issuer.test"));
      CHECK_FALSE(r.claim("admin"));  // not a string
      CHECK_FALSE(r.claim("missing"));
    }
    SUBCASE("RS256 from a PEM public key") {
      const auto v = verifier_for(JwtKeySet::from_pem(public_pem(keys.rsa.get())));
      const auto r =
          v.verify(make_token({"RS256", keys.rsa.get(), {}}, header_for("RS256"), claims()), kNow);
      CHECK_MESSAGE(r.ok(), r.message);
      CHECK(r.subject == "user-42");
      CHECK(r.alg == JwtAlg::kRS256);
    }
    SUBCASE("ES256 from a PEM public key, kid ignored by a key without kid") {
      const auto v = verifier_for(JwtKeySet::from_pem(public_pem(keys.ec.get())));
      const auto r = v.verify(
          make_token({"ES256", keys.ec.get(), {}}, header_for("ES256", "any-kid"), claims()), kNow);
      CHECK_MESSAGE(r.ok(), r.message);
      CHECK(r.alg == JwtAlg::kES256);
    }
    SUBCASE("RS256 and ES256 from a JWKS") {
      const auto v = verifier_for(
          JwtKeySet::from_jwks(jwks({rsa_jwk(keys.rsa.get(), "r1", R"(,"use":"sig","alg":"RS256")"),
                                     ec_jwk(keys.ec.get(), "e1", R"(,"alg":"ES256")")})));
      CHECK(v.algorithms().size() == 2);
      CHECK(v.verify(make_token({"RS256", keys.rsa.get(), {}}, header_for("RS256", "r1"), claims()),
                     kNow)
                .ok());
      CHECK(v.verify(make_token({"ES256", keys.ec.get(), {}}, header_for("ES256", "e1"), claims()),
                     kNow)
                .ok());
    }
    SUBCASE("HS256 from a JWKS oct key") {
      const auto v = verifier_for(JwtKeySet::from_jwks(
          jwks({R"({"kty":"oct","kid":"h1","k":")" + base64url_encode(kSecret) + "\"}"})));
      CHECK(v.verify(make_token({"HS256", nullptr, kSecret}, header_for("HS256", "h1"), claims()),
                     kNow)
                .ok());
    }
    SUBCASE("no sub: accepted with an empty subject") {
      const auto v = verifier_for(JwtKeySet::from_hmac_secret(kSecret));
      const auto r = v.verify(make_token({"HS256", nullptr, kSecret}, header_for("HS256"),
                                         R"({"exp":)" + std::to_string(kNow + 10) + "}"),
                              kNow);
      CHECK(r.ok());
      CHECK(r.subject.empty());
    }
  }

  TEST_CASE("kid selects the key of a JWKS") {
    Keys keys;
    const auto v = verifier_for(JwtKeySet::from_jwks(jwks(
        {ec_jwk(keys.ec.get(), "a"), ec_jwk(keys.ec2.get(), "b"), rsa_jwk(keys.rsa.get(), "r")})));
    const Signer by_a{"ES256", keys.ec.get(), {}};
    const Signer by_b{"ES256", keys.ec2.get(), {}};
    CHECK(v.verify(make_token(by_a, header_for("ES256", "a"), claims()), kNow).ok());
    CHECK(v.verify(make_token(by_b, header_for("ES256", "b"), claims()), kNow).ok());
    // kid names the other key: that key alone is tried.
    CHECK(v.verify(make_token(by_b, header_for("ES256", "a"), claims()), kNow).error ==
          JwtError::kBadSignature);
    // No kid: every key of the alg's type is tried.
    CHECK(v.verify(make_token(by_b, header_for("ES256"), claims()), kNow).ok());
    // Unknown kid.
    const auto unknown = v.verify(make_token(by_a, header_for("ES256", "zzz"), claims()), kNow);
    CHECK(unknown.error == JwtError::kUnknownKid);
    CHECK(error_of(unknown) == "unknown_kid");
    // kid of an RSA key on an ES256 token: the key's type decides.
    CHECK(v.verify(make_token(by_a, header_for("ES256", "r"), claims()), kNow).error ==
          JwtError::kForbiddenAlg);
    // kid must be a string.
    CHECK(v.verify(make_token(by_a, R"({"alg":"ES256","kid":7})", claims()), kNow).error ==
          JwtError::kMalformed);
  }

  TEST_CASE("exp and nbf, with leeway") {
    const auto v = verifier_for(JwtKeySet::from_hmac_secret(kSecret));
    const Signer s{"HS256", nullptr, kSecret};
    auto token_with = [&](const std::string& payload) {
      return make_token(s, header_for("HS256"), payload);
    };
    const auto past = [](int64_t delta) { return std::to_string(kNow - delta); };

    const auto expired = v.verify(token_with(R"({"exp":)" + past(3600) + "}"), kNow);
    CHECK(expired.error == JwtError::kExpired);
    CHECK(expired.message == "token expired");
    // Expired 30 s ago: within the default 60 s leeway.
    CHECK(v.verify(token_with(R"({"exp":)" + past(30) + "}"), kNow).ok());
    // Exactly at exp + leeway: expired.
    CHECK(v.verify(token_with(R"({"exp":)" + past(60) + "}"), kNow).error == JwtError::kExpired);
    // Floating-point NumericDate.
    CHECK(v.verify(token_with(R"({"exp":)" + std::to_string(kNow + 10) + ".5}"), kNow).ok());
    CHECK(v.verify(token_with(R"({"exp":)" + past(100) + ".5}"), kNow).error == JwtError::kExpired);
    // Not a finite number.
    CHECK(v.verify(token_with(R"({"exp":1e999})"), kNow).error == JwtError::kMalformed);
    CHECK(v.verify(token_with(R"({"exp":")" + std::to_string(kNow + 10) + "\"}"), kNow).error ==
          JwtError::kMalformed);
    // Missing exp: refused by default, accepted when not required.
    const auto missing = v.verify(token_with(R"({"sub":"x"})"), kNow);
    CHECK(missing.error == JwtError::kMissingExp);
    JwtVerifierOptions lax;
    lax.require_exp = false;
    CHECK(verifier_for(JwtKeySet::from_hmac_secret(kSecret), lax)
              .verify(token_with(R"({"sub":"x"})"), kNow)
              .ok());
    // No leeway.
    JwtVerifierOptions strict;
    strict.leeway_s = 0;
    const auto v0 = verifier_for(JwtKeySet::from_hmac_secret(kSecret), strict);
    CHECK(v0.verify(token_with(R"({"exp":)" + past(1) + "}"), kNow).error == JwtError::kExpired);
    CHECK(v0.verify(token_with(R"({"exp":)" + past(-1) + "}"), kNow).ok());

    // nbf in the future.
    const std::string exp = R"("exp":)" + std::to_string(kNow + 7200);
    const auto early =
        v.verify(token_with("{" + exp + R"(,"nbf":)" + std::to_string(kNow + 600) + "}"), kNow);
    CHECK(early.error == JwtError::kNotYetValid);
    CHECK(v.verify(token_with("{" + exp + R"(,"nbf":)" + std::to_string(kNow + 30) + "}"), kNow)
              .ok());
    CHECK(v.verify(token_with("{" + exp + R"(,"nbf":)" + past(10) + "}"), kNow).ok());
    CHECK(v0.verify(token_with("{" + exp + R"(,"nbf":)" + std::to_string(kNow + 1) + "}"), kNow)
              .error == JwtError::kNotYetValid);
  }

  TEST_CASE("issuer and audience") {
    JwtVerifierOptions options;
    options.issuer = "https://issuer.test";
    options.audiences = {"api://orders", "api://billing"};
    const auto v = verifier_for(JwtKeySet::from_hmac_secret(kSecret), options);
    const Signer s{"HS256", nullptr, kSecret};
    auto verify = [&](const std::string& payload) {
      return v.verify(make_token(s, header_for("HS256"), payload), kNow);
    };
    const std::string exp = R"("exp":)" + std::to_string(kNow + 60);
    const std::string iss = R"("iss":"https://issuer.test")";

    CHECK(verify("{" + exp + "," + iss + R"(,"aud":"api://orders"})").ok());
    CHECK(verify("{" + exp + "," + iss + R"(,"aud":["other","api://billing"]})").ok());

    CHECK(verify("{" + exp + R"(,"iss":"https://evil.test","aud":"api://orders"})").error ==
          JwtError::kWrongIssuer);
    CHECK(verify("{" + exp + R"(,"aud":"api://orders"})").error == JwtError::kWrongIssuer);
    CHECK(verify("{" + exp + R"(,"iss":42,"aud":"api://orders"})").error == JwtError::kWrongIssuer);

    const auto wrong_aud = verify("{" + exp + "," + iss + R"(,"aud":"api://other"})");
    CHECK(wrong_aud.error == JwtError::kWrongAudience);
    CHECK(error_of(wrong_aud) == "wrong_audience");
    CHECK(verify("{" + exp + "," + iss + R"(,"aud":["api://other","x"]})").error ==
          JwtError::kWrongAudience);
    CHECK(verify("{" + exp + "," + iss + R"(,"aud":[]})").error == JwtError::kWrongAudience);
    CHECK(verify("{" + exp + "," + iss + "}").error == JwtError::kWrongAudience);
    CHECK(verify("{" + exp + "," + iss + R"(,"aud":["API://ORDERS"]})").error ==
          JwtError::kWrongAudience);

    // Without configured issuer / audiences, neither is checked.
    const auto open = verifier_for(JwtKeySet::from_hmac_secret(kSecret));
    CHECK(open.verify(make_token(s, header_for("HS256"), "{" + exp + R"(,"aud":"whatever"})"), kNow)
              .ok());
  }

  TEST_CASE("a changed signature or payload is a bad signature") {
    Keys keys;
    JwtKeySet set = JwtKeySet::from_hmac_secret(kSecret);
    set.merge(JwtKeySet::from_pem(public_pem(keys.rsa.get())));
    set.merge(JwtKeySet::from_pem(public_pem(keys.ec.get())));
    const auto v = verifier_for(set);
    for (const Signer& s : {Signer{"HS256", nullptr, kSecret}, Signer{"RS256", keys.rsa.get(), {}},
                            Signer{"ES256", keys.ec.get(), {}}}) {
      CAPTURE(s.alg);
      const std::string token = make_token(s, header_for(s.alg), claims());
      REQUIRE(v.verify(token, kNow).ok());
      const auto flipped = v.verify(with_signature(token, flip_bit), kNow);
      CHECK(flipped.error == JwtError::kBadSignature);
      CHECK(flipped.message == "token signature is invalid");

      // Same signature, other claims.
      const size_t first_dot = token.find('.');
      const size_t second_dot = token.find('.', first_dot + 1);
      const std::string forged = token.substr(0, first_dot + 1) +
                                 base64url_encode(claims(R"("role":"admin")")) +
                                 token.substr(second_dot);
      CHECK(v.verify(forged, kNow).error == JwtError::kBadSignature);

      // Truncated, empty or over-long signatures.
      CHECK(v.verify(with_signature(token, [](std::string& sig) { sig.pop_back(); }), kNow).error ==
            JwtError::kBadSignature);
      CHECK(v.verify(token.substr(0, second_dot + 1), kNow).error == JwtError::kBadSignature);
      CHECK(v.verify(with_signature(token, [](std::string& sig) { sig += '\0'; }), kNow).error ==
            JwtError::kBadSignature);
    }
    // Signed by another key of the right type.
    const Signer other_ec{"ES256", keys.ec2.get(), {}};
    CHECK(v.verify(make_token(other_ec, header_for("ES256"), claims()), kNow).error ==
          JwtError::kBadSignature);
    const Signer other_secret{"HS256", nullptr, kSecret + "x"};
    CHECK(v.verify(make_token(other_secret, header_for("HS256"), claims()), kNow).error ==
          JwtError::kBadSignature);
    // An ES256 signature in DER form (a common signer bug) is refused.
    const std::string input =
        base64url_encode(header_for("ES256")) + "." + base64url_encode(claims());
    CHECK(v.verify(input + "." + base64url_encode(digest_sign(keys.ec.get(), input)), kNow).error ==
          JwtError::kBadSignature);
  }

  TEST_CASE("alg none is always refused") {
    Keys keys;
    JwtKeySet set = JwtKeySet::from_hmac_secret(kSecret);
    set.merge(JwtKeySet::from_pem(public_pem(keys.rsa.get())));
    JwtVerifierOptions lax;
    lax.require_exp = false;
    const auto v = verifier_for(set, lax);
    const Signer none{"none", nullptr, {}};
    for (const std::string alg : {"none", "None", "NONE", "nOnE"}) {
      CAPTURE(alg);
      const std::string unsigned_token = make_token(none, header_for(alg), claims());
      REQUIRE(unsigned_token.back() == '.');  // empty signature
      const auto r = v.verify(unsigned_token, kNow);
      CHECK(r.error == JwtError::kForbiddenAlg);
      CHECK(error_of(r) == "forbidden_alg");
      CHECK(r.message == "unsigned tokens (alg none) are not accepted");
      // With a signature (an HMAC by the real secret) it is still refused.
      const std::string input =
          base64url_encode(header_for(alg)) + "." + base64url_encode(claims());
      CHECK(v.verify(input + "." + base64url_encode(hmac_sha256(kSecret, input)), kNow).error ==
            JwtError::kForbiddenAlg);
    }
    // Other algorithms this gateway does not verify.
    for (const std::string alg : {"HS512", "RS384", "PS256", "EdDSA", "hs256", ""}) {
      CAPTURE(alg);
      const std::string input =
          base64url_encode(header_for(alg)) + "." + base64url_encode(claims());
      CHECK(v.verify(input + "." + base64url_encode(hmac_sha256(kSecret, input)), kNow).error ==
            JwtError::kForbiddenAlg);
    }
  }

  TEST_CASE("an RSA public key is never used as an HMAC secret") {
    Keys keys;
    const std::string pem = public_pem(keys.rsa.get());
    // The classic forgery: HS256 with the (public) PEM bytes as the secret.
    const Signer forger{"HS256", nullptr, pem};
    const std::string forged = make_token(forger, header_for("HS256"), claims());

    const auto rsa_only = verifier_for(JwtKeySet::from_pem(pem));
    CHECK(rsa_only.verify(forged, kNow).error == JwtError::kForbiddenAlg);
    // From a JWKS too, even with the kid of the RSA key.
    const auto from_jwks = verifier_for(JwtKeySet::from_jwks(jwks({rsa_jwk(keys.rsa.get(), "r")})));
    CHECK(from_jwks.verify(forged, kNow).error == JwtError::kForbiddenAlg);
    CHECK(from_jwks.verify(make_token(forger, header_for("HS256", "r"), claims()), kNow).error ==
          JwtError::kForbiddenAlg);
    // With an HMAC key present as well, HS256 is checked against that key only.
    JwtKeySet both = JwtKeySet::from_pem(pem);
    both.merge(JwtKeySet::from_hmac_secret(kSecret));
    CHECK(verifier_for(both).verify(forged, kNow).error == JwtError::kBadSignature);
    // A configured algorithm list narrows further.
    JwtVerifierOptions rs_only;
    rs_only.algorithms = {JwtAlg::kRS256};
    const auto narrowed = verifier_for(both, rs_only);
    CHECK(narrowed.algorithms() == std::vector<JwtAlg>{JwtAlg::kRS256});
    CHECK(narrowed
              .verify(make_token({"HS256", nullptr, kSecret}, header_for("HS256"), claims()), kNow)
              .error == JwtError::kForbiddenAlg);
    // ES256 header over an RSA signature.
    const std::string input =
        base64url_encode(header_for("ES256")) + "." + base64url_encode(claims());
    CHECK(rsa_only.verify(input + "." + base64url_encode(digest_sign(keys.rsa.get(), input)), kNow)
              .error == JwtError::kForbiddenAlg);
  }

  TEST_CASE("malformed tokens") {
    const auto v = verifier_for(JwtKeySet::from_hmac_secret(kSecret));
    const Signer s{"HS256", nullptr, kSecret};
    const std::string good = make_token(s, header_for("HS256"), claims());
    REQUIRE(v.verify(good, kNow).ok());
    const size_t first_dot = good.find('.');
    const size_t second_dot = good.find('.', first_dot + 1);
    auto expect_malformed = [&](const std::string& token) {
      CAPTURE(token.substr(0, 200));
      const auto r = v.verify(token, kNow);
      CHECK(r.error == JwtError::kMalformed);
      CHECK(error_of(r) == "malformed");
      CHECK_FALSE(r.message.empty());
    };
    expect_malformed("");
    expect_malformed("abc");
    expect_malformed(good.substr(0, second_dot));      // two parts
    expect_malformed(good + ".extra");                 // four parts
    expect_malformed(good + ".a.b");                   // five parts (JWE)
    expect_malformed("!!!" + good.substr(first_dot));  // header not base64url
    expect_malformed(good.substr(0, first_dot + 1) + "e30*" + good.substr(second_dot));
    expect_malformed(good.substr(0, second_dot + 1) + "sig%");  // signature not base64url
    expect_malformed(good.substr(0, second_dot + 1) + "A");     // impossible length
    // Signed, but the header or the payload is not a JSON object.
    expect_malformed(make_token(s, "not json", claims()));
    expect_malformed(make_token(s, R"(["alg","HS256"])", claims()));
    expect_malformed(make_token(s, header_for("HS256"), "not json"));
    expect_malformed(make_token(s, header_for("HS256"), R"(["sub","exp"])"));
    expect_malformed(make_token(s, header_for("HS256"), R"("just a string")"));
    expect_malformed(make_token(s, header_for("HS256"), claims() + "x"));
    // Header without alg / with a non-string alg.
    expect_malformed(make_token(s, R"({"typ":"JWT"})", claims()));
    expect_malformed(make_token(s, R"({"alg":256})", claims()));
    // Critical extensions are not understood.
    expect_malformed(make_token(s, R"({"alg":"HS256","crit":["b64"],"b64":false})", claims()));
    // sub must be a string.
    expect_malformed(make_token(s, header_for("HS256"),
                                R"({"sub":42,"exp":)" + std::to_string(kNow + 60) + "}"));
    // Invalid UTF-8 in the claims.
    expect_malformed(make_token(s, header_for("HS256"), "{\"sub\":\"\xff\"}"));
    // Too large, before any decoding.
    const std::string huge =
        make_token(s, header_for("HS256"), claims(R"("pad":")" + std::string(9000, 'x') + "\""));
    const auto r = v.verify(huge, kNow);
    CHECK(r.error == JwtError::kMalformed);
    CHECK(r.message == "token too large");
    JwtVerifierOptions roomy;
    roomy.max_token_bytes = size_t{64} * 1024;
    CHECK(verifier_for(JwtKeySet::from_hmac_secret(kSecret), roomy).verify(huge, kNow).ok());
  }

  TEST_CASE("JWKS parsing errors name the key and the field") {
    Keys keys;
    const std::string good_ec = ec_jwk(keys.ec.get(), "e");
    const std::string x =
        base64url_encode(bn_param_bytes(keys.ec.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32));
    const std::string y =
        base64url_encode(bn_param_bytes(keys.ec.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32));
    auto error_for = [](const std::string& text) {
      return load_error([&] { static_cast<void>(JwtKeySet::from_jwks(text)); });
    };

    CHECK(error_for("not json") == "JWKS: not valid JSON");
    CHECK(error_for("[]") == "JWKS: not a JSON object");
    CHECK(error_for("{}") == R"(JWKS: "keys" array missing)");
    CHECK(error_for(R"({"keys":{}})") == R"(JWKS: "keys" array missing)");
    CHECK(error_for(R"({"keys":[]})") == "JWKS: no usable signing key (HS256, RS256 or ES256)");
    CHECK(error_for(jwks({good_ec, "42"})) == "JWKS key 1: not a JSON object");
    CHECK(error_for(jwks({good_ec, R"({"n":"AQAB"})"})) == R"(JWKS key 1: missing "kty")");
    // RSA without n / with bad e.
    CHECK(error_for(jwks({good_ec, R"({"kty":"RSA","kid":"r","e":"AQAB"})"})) ==
          R"(JWKS key 1 (kid "r"): missing "n")");
    CHECK(error_for(jwks({R"({"kty":"RSA","n":"AQAB","e":"A*"})"})) ==
          R"(JWKS key 0: "e" is not valid base64url)");
    CHECK(error_for(jwks({R"({"kty":"RSA","n":123,"e":"AQAB"})"})) ==
          R"(JWKS key 0: "n" is not a string)");
    // A short RSA modulus.
    PkeyPtr small_rsa(EVP_RSA_gen(1024));
    REQUIRE(small_rsa);
    CHECK(error_for(jwks({rsa_jwk(small_rsa.get(), "s")})) ==
          R"(JWKS key 0 (kid "s"): RSA key has 1024 bits, at least 2048 are required)");
    // EC: bad or missing crv, wrong coordinate sizes, a point off the curve.
    CHECK(error_for(jwks({R"({"kty":"EC","crv":"P-384","x":")" + x + R"(","y":")" + y + "\"}"})) ==
          R"(JWKS key 0: "crv" must be "P-256" (ES256))");
    CHECK(error_for(jwks({R"({"kty":"EC","x":")" + x + R"(","y":")" + y + "\"}"})) ==
          R"(JWKS key 0: missing "crv")");
    CHECK(error_for(jwks({R"({"kty":"EC","crv":"P-256","x":")" + x + "\"}"})) ==
          R"(JWKS key 0: missing "y")");
    CHECK(error_for(jwks({R"({"kty":"EC","crv":"P-256","x":"AQAB","y":")" + y + "\"}"})) ==
          R"(JWKS key 0: "x" is not 32 bytes)");
    const std::string off_curve = base64url_encode(std::string(31, '\0') + "\x05");
    CHECK(error_for(
              jwks({R"({"kty":"EC","crv":"P-256","x":")" + x + R"(","y":")" + off_curve + "\"}"}))
              .starts_with("JWKS key 0: "));
    // RSA: an even modulus is not a valid public key.
    std::string even_n = bn_param_bytes(keys.rsa.get(), OSSL_PKEY_PARAM_RSA_N);
    even_n.back() = static_cast<char>(even_n.back() & 0xfe);
    CHECK(error_for(jwks({R"({"kty":"RSA","n":")" + base64url_encode(even_n) +
                          R"(","e":"AQAB"})"})) == "JWKS key 0: invalid public key");
    // oct: short secret.
    CHECK(error_for(jwks({R"({"kty":"oct","k":")" + base64url_encode("short") + "\"}"})) ==
          "JWKS key 0: HS256 secret is 5 bytes, at least 32 are required");
    // alg disagreeing with kty, kid of the wrong type.
    CHECK(error_for(jwks({ec_jwk(keys.ec.get(), "e", R"(,"alg":"RS256")")})) ==
          R"(JWKS key 0 (kid "e"): "alg" RS256 does not match kty EC)");
    CHECK(error_for(jwks({R"({"kty":"EC","kid":5})"})) == R"(JWKS key 0: "kid" is not a string)");
    CHECK(error_for(jwks({R"({"kty":"EC","key_ops":"verify"})"})) ==
          R"(JWKS key 0: "key_ops" is not an array)");
    CHECK(error_for(jwks({good_ec, R"({"kty":"EC","use":1})"})) ==
          R"(JWKS key 1: "use" is not a string)");
  }

  TEST_CASE("JWKS keys for other uses or algorithms are skipped") {
    Keys keys;
    const auto set = JwtKeySet::from_jwks(
        jwks({ec_jwk(keys.ec.get(), "enc-key", R"(,"use":"enc")"),
              rsa_jwk(keys.rsa.get(), "r384", R"(,"alg":"RS384")"),
              R"({"kty":"OKP","crv":"Ed25519","x":"abc","kid":"ed"})",
              ec_jwk(keys.ec.get(), "sign-only", R"(,"key_ops":["sign"])"),
              ec_jwk(keys.ec2.get(), "sig-key", R"(,"use":"sig","key_ops":["verify"])")}));
    CHECK(set.size() == 1);
    CHECK(set.has_key_for(JwtAlg::kES256));
    CHECK_FALSE(set.has_key_for(JwtAlg::kRS256));
    REQUIRE(set.skipped().size() == 4);
    CHECK(set.skipped()[0] == R"(JWKS key 0 (kid "enc-key"): use is "enc")");
    CHECK(set.skipped()[1] == R"(JWKS key 1 (kid "r384"): alg "RS384" is not supported)");
    CHECK(set.skipped()[2] == R"(JWKS key 2 (kid "ed"): kty "OKP" is not supported)");
    CHECK(set.skipped()[3] == R"(JWKS key 3 (kid "sign-only"): key_ops has no "verify")");
    // The encryption key is not used even when a token names it.
    const auto v = verifier_for(set);
    CHECK(
        v.verify(make_token({"ES256", keys.ec.get(), {}}, header_for("ES256", "enc-key"), claims()),
                 kNow)
            .error == JwtError::kUnknownKid);
    // Only skipped keys: an error.
    CHECK(load_error([&] {
            static_cast<void>(
                JwtKeySet::from_jwks(jwks({ec_jwk(keys.ec.get(), "enc-key", R"(,"use":"enc")")})));
          }) == "JWKS: no usable signing key (HS256, RS256 or ES256)");
  }

  TEST_CASE("PEM keys and HMAC secrets") {
    Keys keys;
    CHECK(JwtKeySet::from_pem(public_pem(keys.rsa.get())).has_key_for(JwtAlg::kRS256));
    CHECK(JwtKeySet::from_pem(public_pem(keys.ec.get())).has_key_for(JwtAlg::kES256));
    // A certificate carrying the key.
    torii::test::TestPki pki;
    const auto leaf = pki.leaf({"issuer.test"});
    const auto from_cert = JwtKeySet::from_pem(torii::test::to_pem(leaf.cert.get()));
    const auto v = verifier_for(from_cert);
    CHECK(v.verify(make_token({"ES256", leaf.key.get(), {}}, header_for("ES256"), claims()), kNow)
              .ok());
    // A private key is not what is expected, nor is garbage.
    CHECK(load_error([&] {
            static_cast<void>(JwtKeySet::from_pem(torii::test::to_pem(keys.ec.get())));
          }) == R"(PEM public key: no "PUBLIC KEY" or "CERTIFICATE" PEM block found)");
    CHECK_FALSE(load_error([] { static_cast<void>(JwtKeySet::from_pem("garbage")); }).empty());
    // Other curves.
    PkeyPtr p384(EVP_EC_gen("P-384"));
    REQUIRE(p384);
    CHECK(load_error([&] { static_cast<void>(JwtKeySet::from_pem(public_pem(p384.get()))); }) ==
          "PEM public key: EC key on curve secp384r1, only P-256 (ES256) is supported");
    // Short HMAC secrets.
    CHECK(load_error([] { static_cast<void>(JwtKeySet::from_hmac_secret("too-short")); }) ==
          "HMAC secret: HS256 secret is 9 bytes, at least 32 are required");
    // A verifier needs a key for one of its algorithms.
    JwtVerifierOptions es_only;
    es_only.algorithms = {JwtAlg::kES256};
    CHECK(load_error([&] { verifier_for(JwtKeySet::from_hmac_secret(kSecret), es_only); }) ==
          "JWT: no key for any of the allowed algorithms");
    CHECK_FALSE(load_error([] { verifier_for(JwtKeySet{}); }).empty());
    JwtVerifierOptions negative;
    negative.leeway_s = -1;
    CHECK_FALSE(
        load_error([&] { verifier_for(JwtKeySet::from_hmac_secret(kSecret), negative); }).empty());
  }

  TEST_CASE("bearer_token takes the token of an Authorization header") {
    CHECK(bearer_token("Bearer abc.def.ghi") == "abc.def.ghi");
    CHECK(bearer_token("bearer abc") == "abc");
    CHECK(bearer_token("BEARER a-b_c~d+e/f==") == "a-b_c~d+e/f==");
    CHECK(bearer_token("Bearer ").empty());
    CHECK(bearer_token("Bearer").empty());
    CHECK(bearer_token("Bearer  abc").empty());  // two spaces
    CHECK(bearer_token("Bearer\tabc").empty());
    CHECK(bearer_token("Bearer abc def").empty());
    CHECK(bearer_token("Bearer ===").empty());
    CHECK(bearer_token("Bearer a=b").empty());  // '=' only at the end
    CHECK(bearer_token("Basic dXNlcjpwYXNz").empty());
    CHECK(bearer_token("Bearerabc").empty());
    CHECK(bearer_token("").empty());
  }

  TEST_CASE("bearer_challenge builds WWW-Authenticate values") {
    CHECK(bearer_challenge("torii") == R"(Bearer realm="torii")");
    CHECK(bearer_challenge("torii", "invalid_token", "token expired") ==
          R"(Bearer realm="torii", error="invalid_token", error_description="token expired")");
    CHECK(bearer_challenge(R"(my "api"\x)", "invalid_request", "a\r\nSet-Cookie: x") ==
          R"(Bearer realm="my \"api\"\\x", error="invalid_request", )"
          R"(error_description="a  Set-Cookie: x")");
    JwtResult failed;
    failed.error = JwtError::kExpired;
    failed.message = "token expired";
    CHECK(bearer_challenge("torii", failed) ==
          R"(Bearer realm="torii", error="invalid_token", error_description="token expired")");
  }
}

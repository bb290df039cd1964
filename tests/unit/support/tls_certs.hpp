// Test certificates made at test time with the OpenSSL 3 C API (nothing in
// git): a self-signed CA (EC P-256), leaf certificates it signs (EC P-256 or
// RSA 2048, with given subjectAltName DNS names and validity), written as PEM
// files into a temporary directory that the destructor removes; and client
// SSL_CTXs that trust that CA.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace torii::test {

struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct SslSessionFree {
  void operator()(SSL_SESSION* p) const { SSL_SESSION_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, SslSessionFree>;

enum class KeyType : uint8_t { kEcP256, kRsa2048 };

// The reason of the oldest error on the thread's OpenSSL queue (and clears it).
inline std::string openssl_error_text() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

inline void openssl_check(bool ok, const char* what) {
  if (!ok)
    throw std::runtime_error(std::string("test cert helper: ") + what + ": " +
                             openssl_error_text());
}

// A fresh EC P-256 key; RSA 2048 keys are slow to make, so one is made per
// process and shared (tests needing distinct keys use EC ones).
inline PkeyPtr make_key(KeyType type) {
  if (type == KeyType::kEcP256) {
    PkeyPtr key(EVP_EC_gen("P-256"));
    openssl_check(key != nullptr, "EVP_EC_gen");
    return key;
  }
  // Never freed: reachable from this static for the whole run.
  static EVP_PKEY* const rsa = [] {
    EVP_PKEY* k = EVP_RSA_gen(2048);
    openssl_check(k != nullptr, "EVP_RSA_gen");
    return k;
  }();
  openssl_check(EVP_PKEY_up_ref(rsa) == 1, "EVP_PKEY_up_ref");
  return PkeyPtr(rsa);
}

inline std::string to_pem(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  openssl_check(bio && PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

inline std::string to_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  openssl_check(
      bio && PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
      "PEM_write_bio_PrivateKey");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// The DNS names of a certificate's subjectAltName, in order.
inline std::vector<std::string> san_dns_names(const X509* cert) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = gn->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

namespace detail {

inline void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  openssl_check(ext != nullptr, "X509V3_EXT_conf_nid");
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  openssl_check(ok == 1, "X509_add_ext");
}

inline void set_name(X509_NAME* name, const std::string& cn) {
  openssl_check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                           reinterpret_cast<const unsigned char*>("Torii tests"),
                                           -1, -1, 0) == 1,
                "X509_NAME_add_entry_by_txt");
  openssl_check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                           reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                           -1, 0) == 1,
                "X509_NAME_add_entry_by_txt");
}

// A v3 certificate for `key`, with a random serial and the given validity
// (seconds from now), subject CN=`cn`; not signed yet.
inline X509Ptr new_cert(EVP_PKEY* key, const std::string& cn, long not_before_s, long not_after_s) {
  X509Ptr cert(X509_new());
  openssl_check(cert != nullptr, "X509_new");
  openssl_check(X509_set_version(cert.get(), X509_VERSION_3) == 1, "X509_set_version");
  unsigned char serial[16];
  openssl_check(RAND_bytes(serial, sizeof serial) == 1, "RAND_bytes");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  openssl_check(bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get())),
                "serial");
  BN_free(bn);
  openssl_check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), not_before_s) != nullptr,
                "notBefore");
  openssl_check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), not_after_s) != nullptr,
                "notAfter");
  openssl_check(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  set_name(X509_get_subject_name(cert.get()), cn);
  return cert;
}

}  // namespace detail

// A temporary directory, removed (with its content) by the destructor.
class TempDir {
 public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    unsigned char rnd[4];
    RAND_bytes(rnd, sizeof rnd);
    const std::string name = "torii-tls-test-" + std::to_string(::getpid()) + "-" +
                             std::to_string(counter++) + "-" +
                             std::to_string((unsigned{rnd[0]} << 8) | rnd[1]);
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

  // Writes `content` to `name` in the directory; returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    const auto p = path_ / name;
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << content;
    f.close();
    if (!f) throw std::runtime_error("cannot write " + p.string());
    return p.string();
  }

 private:
  std::filesystem::path path_;
};

struct LeafOptions {
  std::vector<std::string> dns_names;  // subjectAltName DNS names; the first is also the CN
  KeyType key_type = KeyType::kEcP256;
  long not_before_s = -3600;  // validity, seconds from now
  long not_after_s = 30L * 24 * 3600;
  bool with_chain = false;  // append the CA certificate to the cert file
};

// A leaf certificate and key, as objects and as PEM files.
struct Leaf {
  std::string cert_path;
  std::string key_path;
  X509Ptr cert;
  PkeyPtr key;
};

// Let clients cap their protocol range, ALPN and signature algorithms.
struct ClientOptions {
  int min_version = 0;  // TLS1_2_VERSION...; 0: OpenSSL's default
  int max_version = 0;
  std::vector<std::string> alpn;  // offered protocols, e.g. {"h2", "http/1.1"}; empty: none
  // Signature algorithms (SSL_CTX_set1_sigalgs_list syntax), e.g. "ECDSA+SHA256"
  // or "RSA-PSS+SHA256:RSA+SHA256"; empty: OpenSSL's default.
  std::string sigalgs;
};

// A test CA (EC P-256, self-signed) that issues leaf certificates into its
// own temporary directory, and makes client contexts that trust it.
class TestPki {
 public:
  TestPki() {
    ca_key_ = make_key(KeyType::kEcP256);
    ca_cert_ = detail::new_cert(ca_key_.get(), "Torii Test CA", -24 * 3600, 365L * 24 * 3600);
    detail::set_name(X509_get_issuer_name(ca_cert_.get()), "Torii Test CA");
    detail::add_ext(ca_cert_.get(), ca_cert_.get(), NID_basic_constraints, "critical,CA:TRUE");
    detail::add_ext(ca_cert_.get(), ca_cert_.get(), NID_key_usage,
                    "critical,keyCertSign,cRLSign,digitalSignature");
    detail::add_ext(ca_cert_.get(), ca_cert_.get(), NID_subject_key_identifier, "hash");
    openssl_check(X509_sign(ca_cert_.get(), ca_key_.get(), EVP_sha256()) > 0, "X509_sign (CA)");
    ca_path_ = dir_.write("ca.pem", to_pem(ca_cert_.get()));
  }

  X509* ca_cert() const { return ca_cert_.get(); }
  const std::string& ca_path() const { return ca_path_; }
  const TempDir& dir() const { return dir_; }

  // Issues a leaf certificate; files "<stem>.crt" and "<stem>.key"
  // (stem defaults to leaf-N).
  Leaf issue(const LeafOptions& opt, std::string stem = {}) {
    if (stem.empty()) stem = "leaf-" + std::to_string(count_);
    ++count_;
    Leaf leaf;
    leaf.key = make_key(opt.key_type);
    const std::string cn = opt.dns_names.empty() ? std::string("torii-test") : opt.dns_names[0];
    leaf.cert = detail::new_cert(leaf.key.get(), cn, opt.not_before_s, opt.not_after_s);
    X509* c = leaf.cert.get();
    openssl_check(X509_set_issuer_name(c, X509_get_subject_name(ca_cert_.get())) == 1,
                  "X509_set_issuer_name");
    detail::add_ext(c, ca_cert_.get(), NID_basic_constraints, "critical,CA:FALSE");
    detail::add_ext(c, ca_cert_.get(), NID_key_usage,
                    opt.key_type == KeyType::kRsa2048 ? "critical,digitalSignature,keyEncipherment"
                                                      : "critical,digitalSignature");
    detail::add_ext(c, ca_cert_.get(), NID_ext_key_usage, "serverAuth");
    detail::add_ext(c, ca_cert_.get(), NID_subject_key_identifier, "hash");
    detail::add_ext(c, ca_cert_.get(), NID_authority_key_identifier, "keyid:always");
    if (!opt.dns_names.empty()) {
      std::string san;
      for (const auto& n : opt.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
      detail::add_ext(c, ca_cert_.get(), NID_subject_alt_name, san);
    }
    openssl_check(X509_sign(c, ca_key_.get(), EVP_sha256()) > 0, "X509_sign (leaf)");

    std::string pem = to_pem(c);
    if (opt.with_chain) pem += to_pem(ca_cert_.get());
    leaf.cert_path = dir_.write(stem + ".crt", pem);
    leaf.key_path = dir_.write(stem + ".key", to_pem(leaf.key.get()));
    return leaf;
  }

  Leaf leaf(std::vector<std::string> dns_names, KeyType type = KeyType::kEcP256) {
    LeafOptions opt;
    opt.dns_names = std::move(dns_names);
    opt.key_type = type;
    return issue(opt);
  }

  // A client context that verifies the server against this CA (not its
  // name: tests look at which certificate came instead).
  SslCtxPtr client_ctx(const ClientOptions& opt = {}) const {
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    openssl_check(ctx != nullptr, "SSL_CTX_new");
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    openssl_check(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca_cert_.get()) == 1,
                  "X509_STORE_add_cert");
    if (opt.max_version != 0 && opt.max_version < TLS1_2_VERSION) {
      // OpenSSL 3 refuses TLS < 1.2 above security level 0: lower it so the
      // client really sends an old ClientHello.
      SSL_CTX_set_security_level(ctx.get(), 0);
      openssl_check(SSL_CTX_set_cipher_list(ctx.get(), "DEFAULT:@SECLEVEL=0") == 1,
                    "SSL_CTX_set_cipher_list");
    }
    // Set both bounds (0 = lowest / highest the library supports), overriding
    // any system-wide MinProtocol.
    openssl_check(SSL_CTX_set_min_proto_version(ctx.get(), opt.min_version) == 1,
                  "SSL_CTX_set_min_proto_version");
    openssl_check(SSL_CTX_set_max_proto_version(ctx.get(), opt.max_version) == 1,
                  "SSL_CTX_set_max_proto_version");
    if (!opt.alpn.empty()) {
      std::string wire;
      for (const auto& p : opt.alpn) {
        wire += static_cast<char>(p.size());
        wire += p;
      }
      // Returns 0 on success.
      openssl_check(
          SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                  static_cast<unsigned>(wire.size())) == 0,
          "SSL_CTX_set_alpn_protos");
    }
    if (!opt.sigalgs.empty()) {
      openssl_check(SSL_CTX_set1_sigalgs_list(ctx.get(), opt.sigalgs.c_str()) == 1,
                    "SSL_CTX_set1_sigalgs_list");
    }
    return ctx;
  }

 private:
  TempDir dir_;
  PkeyPtr ca_key_;
  X509Ptr ca_cert_;
  std::string ca_path_;
  unsigned count_ = 0;
};

}  // namespace torii::test

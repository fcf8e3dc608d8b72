#include "net/jwt.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/encoding.h"
#include "google/protobuf/util/json_util.h"
#include "net/jwt.pb.h"

namespace kvstore::net {
namespace {

enum class Family { kRsa, kRsaPss, kEcdsa, kHmac };

struct Method {
  absl::string_view name;
  Family family;
  int digest_bits;
};

constexpr Method kMethods[] = {
    {"RS256", Family::kRsa, 256},    {"RS384", Family::kRsa, 384},
    {"RS512", Family::kRsa, 512},    {"PS256", Family::kRsaPss, 256},
    {"PS384", Family::kRsaPss, 384}, {"PS512", Family::kRsaPss, 512},
    {"ES256", Family::kEcdsa, 256},  {"ES384", Family::kEcdsa, 384},
    {"ES512", Family::kEcdsa, 512},  {"HS256", Family::kHmac, 256},
    {"HS384", Family::kHmac, 384},   {"HS512", Family::kHmac, 512},
};

const Method* FindMethod(absl::string_view name) {
  for (const Method& method : kMethods) {
    if (method.name == name) return &method;
  }
  return nullptr;
}

const EVP_MD* DigestOf(const Method& method) {
  switch (method.digest_bits) {
    case 256:
      return EVP_sha256();
    case 384:
      return EVP_sha384();
    default:
      return EVP_sha512();
  }
}

// The curve size ES<n> requires (jwt-go: ES512 is P-521).
int CurveBitsOf(const Method& method) {
  return method.digest_bits == 512 ? 521 : method.digest_bits;
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* sig) const { ECDSA_SIG_free(sig); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};

std::unique_ptr<BIO, BioFree> MemBio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

absl::StatusOr<Pkey> ParsePrivateKey(const std::string& pem) {
  auto bio = MemBio(pem);
  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM private key (", OpenSslError(), ")"));
  }
  return key;
}

// A PKIX public key, or a certificate's.
absl::StatusOr<Pkey> ParsePublicKey(const std::string& pem) {
  {
    auto bio = MemBio(pem);
    Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (key != nullptr) return key;
  }
  ERR_clear_error();
  auto bio = MemBio(pem);
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert != nullptr) {
    Pkey key(X509_get_pubkey(cert.get()));
    if (key != nullptr) return key;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not a PEM public key or certificate (", OpenSslError(), ")"));
}

// Does `key` suit `method` (jwt-go refuses an RSA key for ES256, a P-384 key for ES256...)?
absl::Status CheckKeyKind(const Method& method, EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  if (method.family == Family::kRsa || method.family == Family::kRsaPss) {
    if (id != EVP_PKEY_RSA && id != EVP_PKEY_RSA_PSS) {
      return absl::InvalidArgumentError(absl::StrCat(method.name, " needs an RSA key"));
    }
    return absl::OkStatus();
  }
  if (id != EVP_PKEY_EC) {
    return absl::InvalidArgumentError(absl::StrCat(method.name, " needs an EC key"));
  }
  if (EVP_PKEY_get_bits(key) != CurveBitsOf(method)) {
    return absl::InvalidArgumentError(absl::StrCat(method.name, " needs a P-", CurveBitsOf(method),
                                                   " key, not one of ", EVP_PKEY_get_bits(key),
                                                   " bits"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadKeyFile(absl::string_view option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth-token: ", option, "=", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Base64Url(absl::string_view bytes) { return absl::WebSafeBase64Escape(bytes); }

// A base64url JSON object into `message`'s members (others are ignored).
template <typename Message>
absl::StatusOr<Message> ParseJsonObject(absl::string_view part, absl::string_view what) {
  std::string json;
  if (!absl::WebSafeBase64Unescape(part, &json)) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not base64url"));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  Message object;
  if (!google::protobuf::util::JsonStringToMessage(json, &object, options).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a JSON object"));
  }
  return object;
}

}  // namespace

struct JwtProvider::Keys {
  const Method* method = nullptr;
  Pkey private_key;    // null: verify only (RSA, ECDSA)
  Pkey public_key;     // the private key's, or pub-key's
  std::string secret;  // HMAC
};

absl::StatusOr<AuthTokenOptions> ParseAuthTokenOptions(absl::string_view text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth-token=", text, ": invalid auth options: ", why));
  };
  AuthTokenOptions options;
  if (parts[0] == "simple") {
    if (parts.size() > 1) return invalid("simple tokens take no options");
    return options;
  }
  if (parts[0] != "jwt") return invalid(absl::StrCat("unknown token type \"", parts[0], "\""));
  options.jwt = true;
  std::vector<std::string> seen;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::vector<std::string> pair = absl::StrSplit(parts[i], '=');
    if (pair.size() != 2) return invalid(absl::StrCat("\"", parts[i], "\" is not key=value"));
    const std::string& key = pair[0];
    const std::string& value = pair[1];
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return invalid(absl::StrCat("\"", key, "\" given twice"));
    }
    seen.push_back(key);
    if (key == "pub-key") {
      options.public_key_file = value;
    } else if (key == "priv-key") {
      options.private_key_file = value;
    } else if (key == "sign-method") {
      options.sign_method = value;
    } else if (key == "ttl") {
      absl::Duration ttl;
      if (!absl::ParseDuration(value, &ttl) || ttl <= absl::ZeroDuration()) {
        return invalid(absl::StrCat("ttl \"", value, "\" is not a positive duration (5m, 30s)"));
      }
      options.ttl_seconds = std::max<int64_t>(1, absl::ToInt64Seconds(ttl));
    } else {
      return invalid(
          absl::StrCat("unknown option \"", key, "\" (want pub-key, priv-key, sign-method, ttl)"));
    }
  }
  if (options.sign_method.empty()) return invalid("jwt needs sign-method");
  if (FindMethod(options.sign_method) == nullptr) {
    return invalid(absl::StrCat("unknown sign-method \"", options.sign_method,
                                "\" (RS256/384/512, PS256/384/512, ES256/384/512, "
                                "HS256/384/512)"));
  }
  if (options.public_key_file.empty() && options.private_key_file.empty()) {
    return invalid("jwt needs priv-key (to issue and verify) or pub-key (to verify)");
  }
  return options;
}

JwtProvider::JwtProvider(std::unique_ptr<Keys> keys, int64_t ttl_seconds, Clock now)
    : keys_(std::move(keys)), ttl_seconds_(ttl_seconds), now_(std::move(now)) {
  if (now_ == nullptr) now_ = [] { return absl::ToUnixSeconds(absl::Now()); };
}

JwtProvider::~JwtProvider() = default;

absl::StatusOr<std::unique_ptr<JwtProvider>> JwtProvider::Create(const AuthTokenOptions& options,
                                                                 Clock now) {
  if (!options.jwt) return absl::InvalidArgumentError("--auth-token is not jwt");
  std::string private_pem;
  std::string public_pem;
  if (!options.private_key_file.empty()) {
    auto text = ReadKeyFile("priv-key", options.private_key_file);
    if (!text.ok()) return text.status();
    private_pem = std::move(*text);
  }
  if (!options.public_key_file.empty()) {
    auto text = ReadKeyFile("pub-key", options.public_key_file);
    if (!text.ok()) return text.status();
    public_pem = std::move(*text);
  }
  auto provider =
      FromPem(options.sign_method, private_pem, public_pem, options.ttl_seconds, std::move(now));
  if (!provider.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--auth-token: ", provider.status().message(),
                                                   " (priv-key=", options.private_key_file,
                                                   ", pub-key=", options.public_key_file, ")"));
  }
  return provider;
}

absl::StatusOr<std::unique_ptr<JwtProvider>> JwtProvider::FromPem(absl::string_view sign_method,
                                                                  const std::string& private_pem,
                                                                  const std::string& public_pem,
                                                                  int64_t ttl_seconds, Clock now) {
  auto keys = std::make_unique<Keys>();
  keys->method = FindMethod(sign_method);
  if (keys->method == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown sign-method \"", sign_method, "\""));
  }
  if (ttl_seconds <= 0) return absl::InvalidArgumentError("ttl must be positive");
  if (keys->method->family == Family::kHmac) {
    if (private_pem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(sign_method, " needs priv-key (the shared secret)"));
    }
    keys->secret = private_pem;
  } else {
    if (private_pem.empty() && public_pem.empty()) {
      return absl::InvalidArgumentError("no key: give priv-key or pub-key");
    }
    if (!private_pem.empty()) {
      auto key = ParsePrivateKey(private_pem);
      if (!key.ok())
        return absl::InvalidArgumentError(absl::StrCat("priv-key: ", key.status().message()));
      if (absl::Status s = CheckKeyKind(*keys->method, key->get()); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("priv-key: ", s.message()));
      }
      keys->private_key = std::move(*key);
    }
    if (!public_pem.empty()) {
      auto key = ParsePublicKey(public_pem);
      if (!key.ok())
        return absl::InvalidArgumentError(absl::StrCat("pub-key: ", key.status().message()));
      if (absl::Status s = CheckKeyKind(*keys->method, key->get()); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("pub-key: ", s.message()));
      }
      if (keys->private_key != nullptr && EVP_PKEY_eq(keys->private_key.get(), key->get()) != 1) {
        ERR_clear_error();
        return absl::InvalidArgumentError("priv-key and pub-key are not a key pair");
      }
      keys->public_key = std::move(*key);
    } else {
      EVP_PKEY_up_ref(keys->private_key.get());
      keys->public_key.reset(keys->private_key.get());
    }
  }
  return std::unique_ptr<JwtProvider>(
      new JwtProvider(std::move(keys), ttl_seconds, std::move(now)));
}

absl::StatusOr<std::string> JwtProvider::Assign(const std::string& user, uint64_t revision) {
  const Method& method = *keys_->method;
  if (method.family != Family::kHmac && keys_->private_key == nullptr) {
    return absl::FailedPreconditionError("auth: token signing attempted with verify-only key");
  }
  const std::string header = absl::StrCat("{\"alg\":\"", method.name, "\",\"typ\":\"JWT\"}");
  // jwt-go marshals the claims map with sorted keys.
  const std::string claims =
      absl::StrCat("{\"exp\":", now_() + ttl_seconds_, ",\"revision\":", revision,
                   ",\"username\":", JsonQuote(user), "}");
  std::string token = absl::StrCat(Base64Url(header), ".", Base64Url(claims));
  std::string signature;
  if (method.family == Family::kHmac) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(DigestOf(method), keys_->secret.data(), static_cast<int>(keys_->secret.size()),
             reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac,
             &mac_len) == nullptr) {
      return absl::InternalError(absl::StrCat("JWT signing failed: ", OpenSslError()));
    }
    signature.assign(reinterpret_cast<const char*>(mac), mac_len);
  } else {
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    size_t length = 0;
    bool ok = EVP_DigestSignInit(ctx.get(), &pctx, DigestOf(method), nullptr,
                                 keys_->private_key.get()) == 1;
    if (ok && method.family == Family::kRsaPss) {
      // jwt-go signs PSS with a salt as long as the digest.
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    ok = ok &&
         EVP_DigestSign(ctx.get(), nullptr, &length,
                        reinterpret_cast<const unsigned char*>(token.data()), token.size()) == 1;
    std::string der(length, '\0');
    ok = ok &&
         EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &length,
                        reinterpret_cast<const unsigned char*>(token.data()), token.size()) == 1;
    if (!ok) return absl::InternalError(absl::StrCat("JWT signing failed: ", OpenSslError()));
    der.resize(length);
    if (method.family != Family::kEcdsa) {
      signature = std::move(der);
    } else {
      // JWS (RFC 7518 §3.4): ECDSA signatures are R||S, each padded to the curve's size.
      const auto* p = reinterpret_cast<const unsigned char*>(der.data());
      std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(
          d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
      if (sig == nullptr) return absl::InternalError("JWT signing failed: bad ECDSA signature");
      const int half = (CurveBitsOf(method) + 7) / 8;
      signature.assign(2 * half, '\0');
      auto* out = reinterpret_cast<unsigned char*>(signature.data());
      if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out, half) != half ||
          BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out + half, half) != half) {
        return absl::InternalError("JWT signing failed: ECDSA signature too long");
      }
    }
  }
  absl::StrAppend(&token, ".", Base64Url(signature));
  return token;
}

std::optional<auth::AuthInfo> JwtProvider::Info(absl::string_view token) {
  auto info = Verify(token);
  if (!info.ok()) return std::nullopt;
  return *std::move(info);
}

absl::StatusOr<auth::AuthInfo> JwtProvider::Verify(absl::string_view token) const {
  const Method& method = *keys_->method;
  if (token.size() > kMaxJwtBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("token of ", token.size(), " bytes exceeds ", kMaxJwtBytes));
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return absl::InvalidArgumentError("not three dot-separated parts");
  auto header = ParseJsonObject<jwt::Header>(parts[0], "header");
  if (!header.ok()) return header.status();
  if (!header->has_alg() || header->alg().string_value() != method.name) {
    // etcd: a token signed with another method is refused, whatever its signature.
    return absl::InvalidArgumentError(absl::StrCat("signing method is not ", method.name));
  }
  std::string signature;
  if (!absl::WebSafeBase64Unescape(parts[2], &signature)) {
    return absl::InvalidArgumentError("signature is not base64url");
  }
  const absl::string_view signed_part = token.substr(0, parts[0].size() + 1 + parts[1].size());
  const auto* data = reinterpret_cast<const unsigned char*>(signed_part.data());
  bool valid = false;
  if (method.family == Family::kHmac) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    valid = HMAC(DigestOf(method), keys_->secret.data(), static_cast<int>(keys_->secret.size()),
                 data, signed_part.size(), mac, &mac_len) != nullptr &&
            mac_len == signature.size() && CRYPTO_memcmp(mac, signature.data(), mac_len) == 0;
  } else {
    std::string der;
    if (method.family == Family::kEcdsa) {
      const int half = (CurveBitsOf(method) + 7) / 8;
      if (signature.size() != static_cast<size_t>(2 * half)) {
        return absl::InvalidArgumentError("ECDSA signature has the wrong length");
      }
      const auto* raw = reinterpret_cast<const unsigned char*>(signature.data());
      std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
      BIGNUM* r = BN_bin2bn(raw, half, nullptr);
      BIGNUM* s = BN_bin2bn(raw + half, half, nullptr);
      if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        return absl::InternalError("out of memory");
      }
      unsigned char* out = nullptr;
      const int length = i2d_ECDSA_SIG(sig.get(), &out);
      if (length <= 0) return absl::InternalError("ECDSA signature encoding failed");
      der.assign(reinterpret_cast<const char*>(out), length);
      OPENSSL_free(out);
    } else {
      der = std::move(signature);
    }
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    bool ok = EVP_DigestVerifyInit(ctx.get(), &pctx, DigestOf(method), nullptr,
                                   keys_->public_key.get()) == 1;
    if (ok && method.family == Family::kRsaPss) {
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1;
    }
    valid = ok && EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(der.data()),
                                   der.size(), data, signed_part.size()) == 1;
    ERR_clear_error();
  }
  if (!valid) return absl::InvalidArgumentError("signature does not verify");

  auto claims = ParseJsonObject<jwt::Claims>(parts[1], "claims");
  if (!claims.ok()) return claims.status();
  auto number = [](const google::protobuf::Value& field) -> std::optional<double> {
    if (!field.has_number_value()) return std::nullopt;
    const double value = field.number_value();
    if (!std::isfinite(value) || value < 0 || value > 9007199254740992.0) return std::nullopt;
    return value;
  };
  if (!claims->has_username() || !claims->username().has_string_value()) {
    return absl::InvalidArgumentError("claims lack a username");
  }
  const std::optional<double> revision =
      claims->has_revision() ? number(claims->revision()) : std::nullopt;
  if (!revision.has_value()) return absl::InvalidArgumentError("claims lack a revision");
  // jwt-go's MapClaims.Valid: exp (and nbf) are checked when present.
  if (claims->has_exp()) {
    const std::optional<double> exp = number(claims->exp());
    if (!exp.has_value()) return absl::InvalidArgumentError("exp is not a time");
    if (static_cast<double>(now_()) > *exp) return absl::InvalidArgumentError("token is expired");
  }
  if (claims->has_nbf()) {
    const std::optional<double> nbf = number(claims->nbf());
    if (!nbf.has_value() || static_cast<double>(now_()) < *nbf) {
      return absl::InvalidArgumentError("token is not valid yet");
    }
  }
  return auth::AuthInfo{claims->username().string_value(), static_cast<uint64_t>(*revision)};
}

}  // namespace kvstore::net

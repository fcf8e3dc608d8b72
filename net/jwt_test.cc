// JWT tokens as etcd's (auth/jwt.go): signed and verified with keys generated here (OpenSSL),
// never committed.

#include "net/jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace kvstore::net {
namespace {

struct KeyPair {
  std::string private_pem;
  std::string public_pem;
};

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<size_t>(length));
  BIO_free(bio);
  return text;
}

KeyPair Pem(EVP_PKEY* key) {
  KeyPair pair;
  BIO* bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  pair.private_pem = BioText(bio);
  bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio, key), 1);
  pair.public_pem = BioText(bio);
  EVP_PKEY_free(key);
  return pair;
}

// Key generation is slow (RSA): one key of each kind per test binary.
const KeyPair& Rsa() {
  static const KeyPair* pair = new KeyPair(Pem(EVP_RSA_gen(2048)));
  return *pair;
}
const KeyPair& OtherRsa() {
  static const KeyPair* pair = new KeyPair(Pem(EVP_RSA_gen(2048)));
  return *pair;
}
const KeyPair& Ec(const char* curve) {
  static auto* pairs = new std::map<std::string, KeyPair>();
  auto it = pairs->find(curve);
  if (it == pairs->end()) it = pairs->emplace(curve, Pem(EVP_EC_gen(curve))).first;
  return it->second;
}

std::unique_ptr<JwtProvider> Provider(absl::string_view method, const std::string& private_pem,
                                      const std::string& public_pem, int64_t* now) {
  auto provider =
      JwtProvider::FromPem(method, private_pem, public_pem, 300, [now] { return *now; });
  EXPECT_TRUE(provider.ok()) << provider.status();
  return provider.ok() ? std::move(*provider) : nullptr;
}

std::string Decode(absl::string_view part) {
  std::string out;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(part, &out)) << part;
  return out;
}

TEST(JwtTest, EveryMethodSignsAndVerifiesEtcdsClaims) {
  int64_t now = 1'700'000'000;
  struct Case {
    const char* method;
    KeyPair keys;
  };
  const std::vector<Case> cases = {
      {"RS256", Rsa()},
      {"RS384", Rsa()},
      {"RS512", Rsa()},
      {"PS256", Rsa()},
      {"PS512", Rsa()},
      {"ES256", Ec("P-256")},
      {"ES384", Ec("P-384")},
      {"ES512", Ec("P-521")},
      {"HS256", {"a shared secret", ""}},
      {"HS512", {"a shared secret", ""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method);
    auto issuer = Provider(c.method, c.keys.private_pem, c.keys.public_pem, &now);
    ASSERT_NE(issuer, nullptr);
    auto token = issuer->Assign("alice \"the\" user", 42);
    ASSERT_TRUE(token.ok()) << token.status();
    const std::vector<std::string> parts = absl::StrSplit(*token, '.');
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(Decode(parts[0]), absl::StrCat("{\"alg\":\"", c.method, "\",\"typ\":\"JWT\"}"));
    EXPECT_EQ(Decode(parts[1]),
              "{\"exp\":1700000300,\"revision\":42,\"username\":\"alice \\\"the\\\" user\"}");
    EXPECT_EQ(token->find('='), std::string::npos) << "base64url has no padding";

    auto info = issuer->Verify(*token);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->user, "alice \"the\" user");
    EXPECT_EQ(info->revision, 42u);
    // Another member holding only the public key (or the same secret) verifies it: stateless.
    if (!c.keys.public_pem.empty()) {
      auto verifier = Provider(c.method, "", c.keys.public_pem, &now);
      ASSERT_NE(verifier, nullptr);
      ASSERT_TRUE(verifier->Verify(*token).ok());
      EXPECT_FALSE(verifier->Assign("bob", 1).ok()) << "a verify-only key cannot issue";
    }
  }
}

TEST(JwtTest, ExpiredTamperedForeignAndMalformedTokensAreRefused) {
  int64_t now = 1'000;
  auto provider = Provider("RS256", Rsa().private_pem, "", &now);
  ASSERT_NE(provider, nullptr);
  const std::string token = *provider->Assign("alice", 7);
  ASSERT_TRUE(provider->Info(token).has_value());

  now = 1'300;  // exp is inclusive, as jwt-go's
  EXPECT_TRUE(provider->Info(token).has_value());
  now = 1'301;
  EXPECT_FALSE(provider->Info(token).has_value());
  EXPECT_NE(provider->Verify(token).status().message().find("expired"), std::string::npos);
  now = 1'000;

  // Claims changed (root instead of alice): the signature no longer verifies.
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  const std::string forged_claims =
      absl::WebSafeBase64Escape("{\"exp\":1300,\"revision\":7,\"username\":\"root\"}");
  EXPECT_FALSE(provider->Info(absl::StrCat(parts[0], ".", forged_claims, ".", parts[2])));
  // A token signed by another key.
  auto foreign = Provider("RS256", OtherRsa().private_pem, "", &now);
  EXPECT_FALSE(provider->Info(*foreign->Assign("alice", 7)).has_value());
  // Another method's header (alg confusion: "none", or HS256 keyed with the public key).
  const std::string none = absl::WebSafeBase64Escape("{\"alg\":\"none\",\"typ\":\"JWT\"}");
  EXPECT_FALSE(provider->Info(absl::StrCat(none, ".", parts[1], ".")).has_value());
  auto hmac = Provider("HS256", Rsa().public_pem, "", &now);
  EXPECT_FALSE(provider->Info(*hmac->Assign("alice", 7)).has_value());
  // Malformed.
  for (const std::string& bad :
       {std::string(), std::string("abc"), std::string("a.b"), std::string("a.b.c.d"),
        absl::StrCat(parts[0], ".", parts[1]), absl::StrCat(parts[0], ".!!!.", parts[2]),
        absl::StrCat(parts[0], ".", parts[1], ".", parts[2], "x"),
        std::string(kMaxJwtBytes + 1, 'a')}) {
    EXPECT_FALSE(provider->Info(bad).has_value()) << bad.substr(0, 40);
  }
}

// Tokens signed here with an HS256 secret, so that their claims can be anything: each claim is
// read by its JSON type, unknown members are ignored, and a claim of the wrong type is refused.
TEST(JwtTest, ClaimsAreReadByTheirJsonType) {
  int64_t now = 1'000;
  const std::string secret = "a shared secret";
  auto provider = Provider("HS256", secret, "", &now);
  ASSERT_NE(provider, nullptr);
  auto sign = [&](const std::string& header, const std::string& claims) {
    std::string token =
        absl::StrCat(absl::WebSafeBase64Escape(header), ".", absl::WebSafeBase64Escape(claims));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac, &mac_len);
    absl::StrAppend(
        &token, ".",
        absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(mac), mac_len)));
    return token;
  };
  const std::string header = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

  // Accepted: extra members in both parts, no exp (jwt-go checks exp only when present), nbf
  // reached.
  auto info = provider->Verify(sign("{\"typ\":\"JWT\",\"kid\":\"k1\",\"alg\":\"HS256\"}",
                                    "{\"iss\":\"etcd\",\"revision\":9,\"username\":\"bob\","
                                    "\"aud\":[\"a\",{\"b\":1}],\"nbf\":1000}"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->user, "bob");
  EXPECT_EQ(info->revision, 9u);

  const std::vector<std::pair<std::string, std::string>> refused = {
      {"{\"typ\":\"JWT\"}", "{\"revision\":9,\"username\":\"bob\"}"},
      {"{\"alg\":null}", "{\"revision\":9,\"username\":\"bob\"}"},
      {"{\"alg\":[\"HS256\"]}", "{\"revision\":9,\"username\":\"bob\"}"},
      {"[\"HS256\"]", "{\"revision\":9,\"username\":\"bob\"}"},
      {header, "{\"revision\":9}"},
      {header, "{\"revision\":9,\"username\":7}"},
      {header, "{\"revision\":9,\"username\":null}"},
      {header, "{\"username\":\"bob\"}"},
      {header, "{\"revision\":\"9\",\"username\":\"bob\"}"},
      {header, "{\"revision\":-1,\"username\":\"bob\"}"},
      {header, "{\"revision\":9,\"username\":\"bob\",\"exp\":null}"},
      {header, "{\"revision\":9,\"username\":\"bob\",\"exp\":\"2000\"}"},
      {header, "{\"revision\":9,\"username\":\"bob\",\"exp\":999}"},
      {header, "{\"revision\":9,\"username\":\"bob\",\"nbf\":1001}"},
      {header, "{\"revision\":9,\"username\":\"bob\",\"nbf\":true}"},
      {header, "[1,2]"},
      {header, "not json"},
  };
  for (const auto& [h, claims] : refused) {
    EXPECT_FALSE(provider->Verify(sign(h, claims)).ok()) << h << " " << claims;
  }
  EXPECT_NE(provider->Verify(sign(header, "{\"revision\":9,\"username\":7}"))
                .status()
                .message()
                .find("username"),
            std::string::npos);
  EXPECT_NE(provider->Verify(sign(header, "{\"revision\":9,\"username\":\"b\",\"exp\":null}"))
                .status()
                .message()
                .find("exp is not a time"),
            std::string::npos);
}

TEST(JwtTest, KeysThatDoNotFitTheMethodAreRefused) {
  int64_t now = 0;
  auto refused = [&](absl::string_view method, const std::string& priv, const std::string& pub) {
    auto provider = JwtProvider::FromPem(method, priv, pub, 300, [&] { return now; });
    EXPECT_FALSE(provider.ok()) << method;
    return provider.ok() ? std::string() : std::string(provider.status().message());
  };
  EXPECT_NE(refused("ES256", Rsa().private_pem, "").find("EC key"), std::string::npos);
  EXPECT_NE(refused("RS256", Ec("P-256").private_pem, "").find("RSA key"), std::string::npos);
  EXPECT_NE(refused("ES256", Ec("P-384").private_pem, "").find("P-256"), std::string::npos);
  EXPECT_NE(refused("RS256", Rsa().private_pem, OtherRsa().public_pem).find("key pair"),
            std::string::npos);
  EXPECT_NE(refused("RS256", "not a key", "").find("not a PEM private key"), std::string::npos);
  EXPECT_NE(refused("RS256", "", "").find("no key"), std::string::npos);
  EXPECT_NE(refused("HS256", "", "").find("secret"), std::string::npos);
  EXPECT_NE(refused("XX256", Rsa().private_pem, "").find("unknown sign-method"), std::string::npos);
}

TEST(JwtTest, AuthTokenFlagParsesEtcdsSyntaxAndReadsKeyFiles) {
  auto simple = ParseAuthTokenOptions("simple");
  ASSERT_TRUE(simple.ok());
  EXPECT_FALSE(simple->jwt);
  auto jwt = ParseAuthTokenOptions("jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS512,ttl=10m");
  ASSERT_TRUE(jwt.ok()) << jwt.status();
  EXPECT_TRUE(jwt->jwt);
  EXPECT_EQ(jwt->public_key_file, "/k.pub");
  EXPECT_EQ(jwt->private_key_file, "/k");
  EXPECT_EQ(jwt->sign_method, "RS512");
  EXPECT_EQ(jwt->ttl_seconds, 600);
  EXPECT_EQ(ParseAuthTokenOptions("jwt,priv-key=/k,sign-method=ES256")->ttl_seconds,
            kDefaultJwtTtlSeconds);
  for (const char* bad :
       {"", "jwt", "bearer", "simple,ttl=5m", "jwt,priv-key=/k", "jwt,priv-key=/k,sign-method=RS1",
        "jwt,sign-method=RS256", "jwt,priv-key=/k,sign-method=RS256,ttl=soon",
        "jwt,priv-key=/k,priv-key=/j,sign-method=RS256", "jwt,priv-key,sign-method=RS256",
        "jwt,color=red,sign-method=RS256"}) {
    auto parsed = ParseAuthTokenOptions(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find("invalid auth options"), std::string::npos)
        << parsed.status();
  }

  const std::string dir = ::testing::TempDir();
  const std::string priv = dir + "/jwt_test.key";
  const std::string pub = dir + "/jwt_test.pub";
  std::ofstream(priv) << Rsa().private_pem;
  std::ofstream(pub) << Rsa().public_pem;
  AuthTokenOptions options = *ParseAuthTokenOptions(
      absl::StrCat("jwt,pub-key=", pub, ",priv-key=", priv, ",sign-method=RS256"));
  auto provider = JwtProvider::Create(options);
  ASSERT_TRUE(provider.ok()) << provider.status();
  auto token = (*provider)->Assign("alice", 3);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ((*provider)->Info(*token)->user, "alice");

  options.private_key_file = dir + "/missing.key";
  auto missing = JwtProvider::Create(options);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing.key: cannot read"), std::string::npos)
      << missing.status();
  std::remove(priv.c_str());
  std::remove(pub.c_str());
}

}  // namespace
}  // namespace kvstore::net

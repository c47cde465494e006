// tls-server-end-point against certificates made here with each signature algorithm; the
// expected value is computed independently (DER bytes hashed with the expected digest).
#include "crypto/channel_binding.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>
#include <vector>

namespace pgwarden::crypto {
namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

PkeyPtr make_key(const char* type, const char* param = nullptr) {
  EVP_PKEY* key = nullptr;
  if (param != nullptr) {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, type, param);
  } else if (std::string_view(type) == "RSA") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, type, static_cast<size_t>(2048));
  } else {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, type);
  }
  return PkeyPtr(key, &EVP_PKEY_free);
}

// A self-signed certificate signed with `md` (nullptr for Ed25519); pss selects RSA-PSS.
X509Ptr make_cert(EVP_PKEY* key, const EVP_MD* md, bool pss = false) {
  X509Ptr cert(X509_new(), &X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("pgwarden-test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (pss) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    EVP_PKEY_CTX* pctx = nullptr;
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, key), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    EXPECT_GT(X509_sign_ctx(cert.get(), ctx.get()), 0);
  } else {
    EXPECT_GT(X509_sign(cert.get(), key, md), 0);
  }
  return cert;
}

std::vector<std::byte> der_hash(X509* cert, const EVP_MD* md) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  EXPECT_GT(len, 0);
  std::vector<std::byte> out(EVP_MAX_MD_SIZE);
  unsigned int out_len = 0;
  EXPECT_EQ(EVP_Digest(der, static_cast<size_t>(len), reinterpret_cast<unsigned char*>(out.data()),
                       &out_len, md, nullptr),
            1);
  OPENSSL_free(der);
  out.resize(out_len);
  return out;
}

TEST(TlsServerEndPoint, HashFollowsSignatureAlgorithm) {
  auto rsa = make_key("RSA");
  auto ec = make_key("EC", "P-384");
  ASSERT_TRUE(rsa && ec);
  struct Case {
    const char* name;
    EVP_PKEY* key;
    const EVP_MD* sign_md;
    const EVP_MD* expect_md;
    bool pss;
  };
  const Case cases[] = {
      {"rsa-sha256", rsa.get(), EVP_sha256(), EVP_sha256(), false},
      {"rsa-sha384", rsa.get(), EVP_sha384(), EVP_sha384(), false},
      {"rsa-sha512", rsa.get(), EVP_sha512(), EVP_sha512(), false},
      {"rsa-sha1 upgraded", rsa.get(), EVP_sha1(), EVP_sha256(), false},
      {"rsa-sha224", rsa.get(), EVP_sha224(), EVP_sha224(), false},
      {"ecdsa-sha384", ec.get(), EVP_sha384(), EVP_sha384(), false},
      {"ecdsa-sha256", ec.get(), EVP_sha256(), EVP_sha256(), false},
      {"rsa-pss-sha384", rsa.get(), EVP_sha384(), EVP_sha384(), true},
  };
  for (const auto& c : cases) {
    auto cert = make_cert(c.key, c.sign_md, c.pss);
    auto got = tls_server_end_point(cert.get());
    ASSERT_TRUE(got.has_value()) << c.name;
    EXPECT_EQ(*got, der_hash(cert.get(), c.expect_md)) << c.name;
    EXPECT_EQ(got->size(), static_cast<std::size_t>(EVP_MD_get_size(c.expect_md))) << c.name;
  }
}

TEST(TlsServerEndPoint, Md5SignatureUpgradedToSha256) {
  auto rsa = make_key("RSA");
  ASSERT_TRUE(rsa);
  auto cert = make_cert(rsa.get(), EVP_md5());
  if (X509_get_signature_nid(cert.get()) != NID_md5WithRSAEncryption) {
    GTEST_SKIP() << "this OpenSSL refuses to sign with MD5";
  }
  auto got = tls_server_end_point(cert.get());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, der_hash(cert.get(), EVP_sha256()));
}

TEST(TlsServerEndPoint, UndefinedForEd25519) {
  auto ed = make_key("ED25519");
  ASSERT_TRUE(ed);
  auto cert = make_cert(ed.get(), nullptr);
  EXPECT_FALSE(tls_server_end_point(cert.get()).has_value());
}

TEST(TlsServerEndPoint, NullCertificate) {
  EXPECT_FALSE(tls_server_end_point(nullptr));
}

}  // namespace
}  // namespace pgwarden::crypto

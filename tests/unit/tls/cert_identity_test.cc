// certificate_identity / verified_peer_identity: CN and SAN selection, and every way a
// crafted certificate could make an identity ambiguous (several CNs, several SAN extensions,
// NUL bytes, control characters, invalid UTF-8) is an error. Also subject_rfc2253 escaping.
#include <gtest/gtest.h>

#include "test_pki.h"
#include "tls/cert_identity.h"
#include "tls/server_tls.h"
#include "tls/tls_info.h"

namespace pgwarden::tls {
namespace {

using config::CertIdentity;
using test::ApiCertSpec;
using test::Pki;

test::X509Ptr self_signed(const ApiCertSpec& spec) {
  test::EvpPkeyPtr key = test::new_ec_key();
  return test::build_cert(spec, key.get(), nullptr, nullptr);
}

std::string error_of(const X509* cert, CertIdentity how) {
  auto id = certificate_identity(cert, how);
  EXPECT_FALSE(id.has_value()) << (id ? *id : "");
  return id ? "" : id.error();
}

TEST(CertIdentity, SelectsCnEmailOrDnsFromAliceCertificate) {
  test::X509Ptr alice = test::load_cert(Pki::get().alice.cert);
  EXPECT_EQ(certificate_identity(alice.get(), CertIdentity::Cn).value_or("?"), "alice");
  EXPECT_EQ(certificate_identity(alice.get(), CertIdentity::SanEmail).value_or("?"),
            "alice@example.test");
  // DNS names are case-insensitive and come back lower-cased.
  EXPECT_EQ(certificate_identity(alice.get(), CertIdentity::SanDns).value_or("?"),
            "alice.host.example.test");
}

TEST(CertIdentity, MissingFieldsAreErrors) {
  test::X509Ptr bob = test::load_cert(Pki::get().bob.cert);
  EXPECT_EQ(certificate_identity(bob.get(), CertIdentity::Cn).value_or("?"), "bob");
  EXPECT_NE(error_of(bob.get(), CertIdentity::SanEmail).find("no e-mail"), std::string::npos);
  EXPECT_NE(error_of(bob.get(), CertIdentity::SanDns).find("no DNS"), std::string::npos);

  ApiCertSpec spec;
  spec.subject = {{NID_organizationName, "Example"}};
  spec.sans = {{GEN_DNS, "only.dns.example"}};
  test::X509Ptr no_cn = self_signed(spec);
  EXPECT_NE(error_of(no_cn.get(), CertIdentity::Cn).find("no subject CN"), std::string::npos);
  EXPECT_NE(error_of(no_cn.get(), CertIdentity::SanEmail).find("no e-mail"), std::string::npos);
  EXPECT_EQ(certificate_identity(no_cn.get(), CertIdentity::SanDns).value_or("?"),
            "only.dns.example");
  EXPECT_FALSE(certificate_identity(nullptr, CertIdentity::Cn).has_value());
}

TEST(CertIdentity, SeveralCnsAreRefused) {
  test::X509Ptr two = test::load_cert(Pki::get().two_cn.cert);
  EXPECT_NE(error_of(two.get(), CertIdentity::Cn).find("more than one subject CN"),
            std::string::npos);
}

TEST(CertIdentity, EmbeddedNulInCnIsRefused) {
  ApiCertSpec spec;
  spec.subject = {{NID_commonName, std::string("admin\0.evil.example", 19)}};
  test::X509Ptr cert = self_signed(spec);
  EXPECT_NE(error_of(cert.get(), CertIdentity::Cn).find("NUL"), std::string::npos);
  // The same NUL inside a BMPString (UTF-16) is caught too.
  spec.subject = {{NID_commonName, std::string("\0a\0\0\0b", 6), V_ASN1_BMPSTRING}};
  cert = self_signed(spec);
  EXPECT_FALSE(certificate_identity(cert.get(), CertIdentity::Cn).has_value());
}

TEST(CertIdentity, ControlCharactersAndInvalidUtf8InCnAreRefused) {
  for (const std::string& bad :
       {std::string("alice\nadmin"), std::string("alice\x7f"), std::string("alice\x1b[31m"),
        std::string("\xc2\x85x"), std::string("\xc0\xafx"), std::string("\xed\xa0\x80"),
        std::string("\xff")}) {
    ApiCertSpec spec;
    spec.subject = {{NID_commonName, bad}};
    test::X509Ptr cert = self_signed(spec);
    if (!cert) {
      continue;
    }
    EXPECT_FALSE(certificate_identity(cert.get(), CertIdentity::Cn).has_value());
  }
}

TEST(CertIdentity, Utf8AndBmpCnsAreReturnedAsUtf8) {
  ApiCertSpec spec;
  spec.subject = {{NID_commonName, "J\xc3\xbcrgen"}};
  test::X509Ptr cert = self_signed(spec);
  EXPECT_EQ(certificate_identity(cert.get(), CertIdentity::Cn).value_or("?"), "J\xc3\xbcrgen");
  spec.subject = {{NID_commonName, std::string("\0J\0\xfc\0r", 6), V_ASN1_BMPSTRING}};
  cert = self_signed(spec);
  EXPECT_EQ(certificate_identity(cert.get(), CertIdentity::Cn).value_or("?"), "J\xc3\xbcr");
}

TEST(CertIdentity, FirstSanOfTheTypeDecides) {
  ApiCertSpec spec;
  spec.subject = {{NID_commonName, "x"}};
  spec.sans = {{GEN_DNS, "first.example"},
               {GEN_EMAIL, "one@example.test"},
               {GEN_EMAIL, "two@example.test"},
               {GEN_DNS, "second.example"}};
  test::X509Ptr cert = self_signed(spec);
  EXPECT_EQ(certificate_identity(cert.get(), CertIdentity::SanEmail).value_or("?"),
            "one@example.test");
  EXPECT_EQ(certificate_identity(cert.get(), CertIdentity::SanDns).value_or("?"), "first.example");
}

TEST(CertIdentity, InvalidFirstSanIsAnErrorNotSkipped) {
  ApiCertSpec spec;
  spec.subject = {{NID_commonName, "x"}};
  spec.sans = {{GEN_EMAIL, std::string("admin@example.test\0.evil", 24)},
               {GEN_EMAIL, "good@example.test"}};
  test::X509Ptr cert = self_signed(spec);
  EXPECT_NE(error_of(cert.get(), CertIdentity::SanEmail).find("NUL"), std::string::npos);

  spec.sans = {{GEN_DNS, "host .example"}};
  cert = self_signed(spec);
  EXPECT_FALSE(certificate_identity(cert.get(), CertIdentity::SanDns).has_value());
  spec.sans = {{GEN_DNS, "h\xc3\xb6st.example"}};
  cert = self_signed(spec);
  EXPECT_FALSE(certificate_identity(cert.get(), CertIdentity::SanDns).has_value());
  spec.sans = {{GEN_DNS, ""}};
  cert = self_signed(spec);
  EXPECT_FALSE(certificate_identity(cert.get(), CertIdentity::SanDns).has_value());
}

TEST(CertIdentity, SeveralSubjectAltNameExtensionsAreRefused) {
  ApiCertSpec spec;
  spec.subject = {{NID_commonName, "x"}};
  spec.sans = {{GEN_EMAIL, "one@example.test"}, {GEN_EMAIL, "two@example.test"}};
  spec.split_san = true;
  test::X509Ptr cert = self_signed(spec);
  EXPECT_NE(error_of(cert.get(), CertIdentity::SanEmail).find("more than one subjectAltName"),
            std::string::npos);
}

TEST(CertIdentity, VerifiedPeerIdentityNeedsAVerifiedServerSideCertificate) {
  config::Listener l;
  l.name = "main";
  l.tls_cert = Pki::get().server.cert;
  l.tls_key = Pki::get().server.key;
  l.client_ca = Pki::get().client_ca.cert;
  l.client_cert = config::ClientCertMode::Optional;
  auto tls = ServerTls::create(l);
  ASSERT_TRUE(tls.has_value()) << tls.error();

  test::Handshake with(test::make_client({.cert = Pki::get().alice}), (*tls)->default_context());
  ASSERT_TRUE(with.run().ok());
  EXPECT_EQ(verified_peer_identity(with.server(), CertIdentity::SanEmail).value_or("?"),
            "alice@example.test");
  // The client side of the connection has no client identity to give.
  EXPECT_FALSE(verified_peer_identity(with.client(), CertIdentity::Cn).has_value());

  test::Handshake without(test::make_client({}), (*tls)->default_context());
  ASSERT_TRUE(without.run().ok());
  auto none = verified_peer_identity(without.server(), CertIdentity::Cn);
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().find("did not present"), std::string::npos);

  test::SslPtr fresh = test::Handshake::new_ssl((*tls)->default_context());
  EXPECT_FALSE(verified_peer_identity(fresh.get(), CertIdentity::Cn).has_value());
}

TEST(TlsInfo, SubjectIsEscapedAscii) {
  ApiCertSpec spec;
  spec.subject = {{NID_organizationName, "Example, Inc."},
                  {NID_commonName, "line\nbreak J\xc3\xbcrgen"}};
  test::X509Ptr cert = self_signed(spec);
  const auto subject = subject_rfc2253(cert.get());
  ASSERT_TRUE(subject.has_value());
  for (const char c : *subject) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << *subject;
  }
  EXPECT_EQ(*subject, "CN=line\\0Abreak J\\C3\\BCrgen,O=Example\\, Inc.");
  EXPECT_FALSE(subject_rfc2253(nullptr).has_value());
}

TEST(TlsInfo, UnfinishedHandshakeDescribesNothing) {
  config::Listener l;
  l.name = "main";
  l.tls_cert = Pki::get().server.cert;
  l.tls_key = Pki::get().server.key;
  auto tls = ServerTls::create(l);
  ASSERT_TRUE(tls.has_value());
  test::SslPtr ssl = test::Handshake::new_ssl((*tls)->default_context());
  const TlsInfo info = describe(ssl.get());
  EXPECT_EQ(info.version, "");
  EXPECT_EQ(info.cipher, "");
  EXPECT_FALSE(info.client_subject.has_value());
}

TEST(TlsInfo, DescribeReportsVersionCipherSniAndSubject) {
  config::Listener l;
  l.name = "main";
  l.tls_cert = Pki::get().server.cert;
  l.tls_key = Pki::get().server.key;
  l.client_ca = Pki::get().client_ca.cert;
  l.client_cert = config::ClientCertMode::Require;
  auto tls = ServerTls::create(l);
  ASSERT_TRUE(tls.has_value());
  test::Handshake h(test::make_client({.sni = "db.example.test", .cert = Pki::get().alice}),
                    (*tls)->default_context());
  ASSERT_TRUE(h.run().ok());
  const TlsInfo info = describe(h.server());
  EXPECT_EQ(info.version, "TLSv1.3");
  EXPECT_EQ(info.cipher, SSL_CIPHER_get_name(SSL_get_current_cipher(h.client())));
  EXPECT_TRUE(info.cipher.starts_with("TLS_")) << info.cipher;
  EXPECT_EQ(info.sni, "db.example.test");
  EXPECT_EQ(info.client_subject.value_or(""), "CN=alice");
}

}  // namespace
}  // namespace pgwarden::tls

// UpstreamTls against a ServerTls through in-memory handshakes: verify-full checks host names
// and IP addresses, verify-ca only the chain, a wrong CA or the system store is rejected with
// a reason naming the failure, SNI is sent only for DNS names, ALPN "postgresql" is offered,
// and the client certificate is presented.
#include <gtest/gtest.h>

#include "test_pki.h"
#include "tls/server_tls.h"
#include "tls/tls_info.h"
#include "tls/upstream_tls.h"

namespace pgwarden::tls {
namespace {

using test::CertFiles;
using test::Handshake;
using test::Pki;

config::Backend backend(config::BackendTls mode, const std::string& server_name) {
  config::Backend b;
  b.name = "app";
  b.address = {"db.internal", 5432};
  b.tls = mode;
  b.tls_ca = Pki::get().ca.cert;
  b.tls_server_name = server_name;
  return b;
}

std::shared_ptr<const ServerTls> upstream_server(
    const CertFiles& cert, config::ClientCertMode client_cert = config::ClientCertMode::None) {
  config::Listener l;
  l.name = "upstream";
  l.tls_cert = cert.cert;
  l.tls_key = cert.key;
  if (client_cert != config::ClientCertMode::None) {
    l.client_ca = Pki::get().client_ca.cert;
    l.client_cert = client_cert;
  }
  auto tls = ServerTls::create(l);
  EXPECT_TRUE(tls.has_value()) << (tls ? "" : tls.error());
  return tls ? *tls : nullptr;
}

std::shared_ptr<const UpstreamTls> make_upstream(const config::Backend& b) {
  auto tls = UpstreamTls::create(b);
  EXPECT_TRUE(tls.has_value()) << (tls ? "" : tls.error());
  return tls ? *tls : nullptr;
}

// Runs a handshake of a prepared upstream client against `server`.
Handshake connect(const UpstreamTls& up, const ServerTls& server) {
  test::SslPtr client = Handshake::new_ssl(up.context());
  EXPECT_TRUE(up.prepare(client.get()));
  Handshake h(std::move(client), server.default_context());
  h.run();
  return h;
}

std::string client_reason(const Handshake& h) {
  return handshake_failure_reason(h.client(), h.client_side().error);
}

TEST(UpstreamTls, VerifyFullAcceptsTheRightHostAndSendsSniAndAlpn) {
  auto server = upstream_server(Pki::get().server);
  auto up = make_upstream(backend(config::BackendTls::VerifyFull, "localhost"));
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  ASSERT_TRUE(h.ok()) << client_reason(h);
  EXPECT_EQ(SSL_get_verify_result(h.client()), X509_V_OK);
  EXPECT_EQ(describe(h.server()).sni, "localhost");
  EXPECT_TRUE(alpn_is_postgresql(h.client()));
  EXPECT_TRUE(alpn_is_postgresql(h.server()));
  EXPECT_EQ(describe(h.client()).version, "TLSv1.3");
  // The client side never reports its peer as a "client subject".
  EXPECT_FALSE(describe(h.client()).client_subject.has_value());
}

TEST(UpstreamTls, VerifyFullRejectsAWrongHostName) {
  auto server = upstream_server(Pki::get().server);
  auto up = make_upstream(backend(config::BackendTls::VerifyFull, "db.example.test"));
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  EXPECT_FALSE(h.ok());
  EXPECT_TRUE(h.client_side().failed);
  EXPECT_EQ(SSL_get_verify_result(h.client()), X509_V_ERR_HOSTNAME_MISMATCH);
  const std::string reason = client_reason(h);
  EXPECT_NE(reason.find("certificate verify failed: hostname mismatch"), std::string::npos)
      << reason;
  EXPECT_NE(reason.find("db.example.test"), std::string::npos) << reason;
  EXPECT_NE(reason.find("CN=localhost"), std::string::npos) << reason;
  // The server sees the alert.
  EXPECT_TRUE(h.server_side().failed);
}

TEST(UpstreamTls, VerifyCaAcceptsAWrongHostName) {
  auto server = upstream_server(Pki::get().server);
  auto up = make_upstream(backend(config::BackendTls::VerifyCa, "db.example.test"));
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  ASSERT_TRUE(h.ok()) << client_reason(h);
  EXPECT_EQ(describe(h.server()).sni, "db.example.test");
}

TEST(UpstreamTls, WrongCaIsRejectedWithTheReason) {
  auto server = upstream_server(Pki::get().server);
  for (const auto mode : {config::BackendTls::VerifyFull, config::BackendTls::VerifyCa}) {
    config::Backend b = backend(mode, "localhost");
    b.tls_ca = Pki::get().other_ca.cert;
    auto up = make_upstream(b);
    ASSERT_TRUE(server && up);
    Handshake h = connect(*up, *server);
    EXPECT_FALSE(h.ok());
    const std::string reason = client_reason(h);
    EXPECT_NE(reason.find("certificate verify failed: unable to get local issuer certificate"),
              std::string::npos)
        << reason;
  }
}

TEST(UpstreamTls, ServerCertificateFromAnotherCaIsRejected) {
  auto server = upstream_server(Pki::get().other_server);
  auto up = make_upstream(backend(config::BackendTls::VerifyCa, "localhost"));
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(SSL_get_verify_result(h.client()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST(UpstreamTls, WithoutTlsCaTheSystemStoreDoesNotTrustATestCa) {
  auto server = upstream_server(Pki::get().server);
  config::Backend b = backend(config::BackendTls::VerifyFull, "localhost");
  b.tls_ca.reset();
  auto up = make_upstream(b);
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  EXPECT_FALSE(h.ok());
  EXPECT_NE(client_reason(h).find("certificate verify failed"), std::string::npos)
      << client_reason(h);
}

TEST(UpstreamTls, IpAddressesVerifyAgainstIpSansWithoutSni) {
  auto server = upstream_server(Pki::get().server);
  ASSERT_TRUE(server);
  for (const char* ip : {"127.0.0.1", "::1"}) {
    auto up = make_upstream(backend(config::BackendTls::VerifyFull, ip));
    ASSERT_TRUE(up);
    EXPECT_TRUE(up->server_name_is_ip());
    Handshake h = connect(*up, *server);
    ASSERT_TRUE(h.ok()) << ip << ": " << client_reason(h);
    EXPECT_EQ(describe(h.server()).sni, "") << ip;  // RFC 6066: no IP literal in SNI
  }
  auto wrong = make_upstream(backend(config::BackendTls::VerifyFull, "127.0.0.2"));
  ASSERT_TRUE(wrong);
  Handshake h = connect(*wrong, *server);
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(SSL_get_verify_result(h.client()), X509_V_ERR_IP_ADDRESS_MISMATCH);
  const std::string reason = client_reason(h);
  EXPECT_NE(reason.find("IP address mismatch"), std::string::npos) << reason;
  EXPECT_NE(reason.find("127.0.0.2"), std::string::npos) << reason;
}

TEST(UpstreamTls, IpAddressIsNotMatchedAgainstDnsNames) {
  // The reporting certificate only has DNS SANs: an IP must not match through the CN.
  auto server = upstream_server(Pki::get().reporting);
  auto up = make_upstream(backend(config::BackendTls::VerifyFull, "127.0.0.1"));
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(SSL_get_verify_result(h.client()), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

TEST(UpstreamTls, BracketedIpv6ServerNameFromTheAddress) {
  auto server = upstream_server(Pki::get().server);
  config::Backend b = backend(config::BackendTls::VerifyFull, "");
  b.address = {"::1", 5432};
  auto up = make_upstream(b);
  ASSERT_TRUE(server && up);
  EXPECT_EQ(up->server_name(), "::1");
  EXPECT_TRUE(connect(*up, *server).ok());
  b.tls_server_name = "[::1]";
  auto bracketed = make_upstream(b);
  ASSERT_TRUE(bracketed);
  EXPECT_EQ(bracketed->server_name(), "::1");
}

TEST(UpstreamTls, WildcardCertificateCoversOneLabel) {
  auto server = upstream_server(Pki::get().wildcard);
  ASSERT_TRUE(server);
  auto one = make_upstream(backend(config::BackendTls::VerifyFull, "db.wild.example.test"));
  ASSERT_TRUE(one);
  EXPECT_TRUE(connect(*one, *server).ok());
  auto two = make_upstream(backend(config::BackendTls::VerifyFull, "a.db.wild.example.test"));
  ASSERT_TRUE(two);
  Handshake h = connect(*two, *server);
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(SSL_get_verify_result(h.client()), X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST(UpstreamTls, ClientCertificateIsPresented) {
  auto server = upstream_server(Pki::get().server, config::ClientCertMode::Require);
  config::Backend b = backend(config::BackendTls::VerifyFull, "localhost");
  b.tls_client_cert = Pki::get().alice.cert;
  b.tls_client_key = Pki::get().alice.key;
  auto up = make_upstream(b);
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  ASSERT_TRUE(h.ok()) << client_reason(h);
  EXPECT_EQ(describe(h.server()).client_subject.value_or(""), "CN=alice");
}

TEST(UpstreamTls, MissingClientCertificateIsReportedFromTheAlert) {
  auto server = upstream_server(Pki::get().server, config::ClientCertMode::Require);
  auto up = make_upstream(backend(config::BackendTls::VerifyFull, "localhost"));
  ASSERT_TRUE(server && up);
  Handshake h = connect(*up, *server);
  EXPECT_FALSE(h.ok());
  ASSERT_TRUE(h.client_side().failed);
  const std::string reason = client_reason(h);
  EXPECT_NE(reason.find("certificate required"), std::string::npos) << reason;
}

TEST(UpstreamTls, ContextSettings) {
  auto up = make_upstream(backend(config::BackendTls::VerifyCa, "localhost"));
  ASSERT_TRUE(up);
  EXPECT_EQ(SSL_CTX_get_verify_mode(up->context()), SSL_VERIFY_PEER);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(up->context()), TLS1_2_VERSION);
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(up->context()) & SSL_SESS_CACHE_CLIENT,
            SSL_SESS_CACHE_CLIENT);
  EXPECT_EQ(SSL_CTX_get_options(up->context()) & SSL_OP_NO_RENEGOTIATION, SSL_OP_NO_RENEGOTIATION);
}

TEST(UpstreamTls, PrepareRefusesNull) {
  auto up = make_upstream(backend(config::BackendTls::VerifyFull, "localhost"));
  ASSERT_TRUE(up);
  EXPECT_FALSE(up->prepare(nullptr));
}

TEST(UpstreamTls, NoReasonGivesAGenericText) {
  EXPECT_FALSE(handshake_failure_reason(nullptr, 0).empty());
}

// ---- create() errors ----

std::string create_error(const config::Backend& b) {
  auto tls = UpstreamTls::create(b);
  EXPECT_FALSE(tls.has_value());
  return tls ? "" : tls.error();
}

TEST(UpstreamTlsCreate, MissingCaFileIsNamed) {
  config::Backend b = backend(config::BackendTls::VerifyFull, "localhost");
  b.tls_ca = Pki::get().dir / "no-such-ca.crt";
  const std::string e = create_error(b);
  EXPECT_NE(e.find((Pki::get().dir / "no-such-ca.crt").string()), std::string::npos) << e;
  EXPECT_NE(e.find("backend \"app\""), std::string::npos) << e;
}

TEST(UpstreamTlsCreate, ClientKeyThatDoesNotMatchIsNamed) {
  config::Backend b = backend(config::BackendTls::VerifyFull, "localhost");
  b.tls_client_cert = Pki::get().alice.cert;
  b.tls_client_key = Pki::get().bob.key;
  const std::string e = create_error(b);
  EXPECT_NE(e.find(Pki::get().bob.key.string()), std::string::npos) << e;
  EXPECT_NE(e.find("does not match"), std::string::npos) << e;
}

TEST(UpstreamTlsCreate, DisableIsRefused) {
  EXPECT_NE(create_error(backend(config::BackendTls::Disable, "localhost")).find("disabled"),
            std::string::npos);
}

}  // namespace
}  // namespace pgwarden::tls

// ServerTls: real in-memory handshakes prove SNI selection (exact, case, wildcard, fallback),
// ALPN handling, client certificate modes (also through an SNI context), protocol minimum,
// that an SSL* outlives its ServerTls, and that create() errors name the file at fault.
#include <gtest/gtest.h>

#include "test_pki.h"
#include "tls/server_tls.h"
#include "tls/tls_info.h"
#include "tls/upstream_tls.h"

namespace pgwarden::tls {
namespace {

using test::ClientOptions;
using test::Handshake;
using test::make_client;
using test::peer_cn;
using test::Pki;

config::Listener base_listener() {
  const Pki& pki = Pki::get();
  config::Listener l;
  l.name = "main";
  l.tls = config::ListenerTls::Require;
  l.tls_cert = pki.server.cert;
  l.tls_key = pki.server.key;
  l.auth = {config::AuthMethod::Scram};
  return l;
}

config::Listener sni_listener() {
  const Pki& pki = Pki::get();
  config::Listener l = base_listener();
  l.sni.push_back({{"reporting.example.test"}, pki.reporting.cert, pki.reporting.key});
  l.sni.push_back({{"*.wild.example.test"}, pki.wildcard.cert, pki.wildcard.key});
  return l;
}

config::Listener mtls_listener(config::ClientCertMode mode) {
  config::Listener l = sni_listener();
  l.client_ca = Pki::get().client_ca.cert;
  l.client_cert = mode;
  return l;
}

std::shared_ptr<const ServerTls> make_server(const config::Listener& l) {
  auto tls = ServerTls::create(l);
  EXPECT_TRUE(tls.has_value()) << (tls ? "" : tls.error());
  return tls ? *tls : nullptr;
}

std::string server_reason(const Handshake& h) {
  return detail::error_reason(h.server_side().error);
}

// ---- SNI ----

TEST(ServerTlsSni, NoSniGetsTheDefaultCertificate) {
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  EXPECT_EQ(tls->sni_context_count(), 2u);
  Handshake h(make_client({}), tls->default_context());
  ASSERT_TRUE(h.run().ok()) << server_reason(h);
  EXPECT_EQ(peer_cn(h.client()), "localhost");
  EXPECT_EQ(describe(h.server()).sni, "");
}

TEST(ServerTlsSni, MatchingNamePicksItsCertificate) {
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({.sni = "reporting.example.test"}), tls->default_context());
  ASSERT_TRUE(h.run().ok()) << server_reason(h);
  EXPECT_EQ(peer_cn(h.client()), "reporting.example.test");
  EXPECT_EQ(describe(h.server()).sni, "reporting.example.test");
  EXPECT_EQ(SSL_get_SSL_CTX(h.server()), tls->context_for("reporting.example.test"));
}

TEST(ServerTlsSni, MatchIsCaseInsensitiveAndIgnoresATrailingDot) {
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  for (const char* name : {"REPORTING.Example.Test", "reporting.example.test."}) {
    Handshake h(make_client({.sni = name}), tls->default_context());
    ASSERT_TRUE(h.run().ok()) << name;
    EXPECT_EQ(peer_cn(h.client()), "reporting.example.test") << name;
  }
}

TEST(ServerTlsSni, WildcardMatchesExactlyOneLabel) {
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  const std::pair<const char*, const char*> cases[] = {
      {"db.wild.example.test", "wildcard.example.test"},
      {"DB.Wild.Example.Test", "wildcard.example.test"},
      {"a.b.wild.example.test", "localhost"},  // two labels: no match
      {"wild.example.test", "localhost"},      // zero labels: no match
      {"xwild.example.test", "localhost"},
  };
  for (const auto& [name, expected] : cases) {
    Handshake h(make_client({.sni = name}), tls->default_context());
    ASSERT_TRUE(h.run().ok()) << name;
    EXPECT_EQ(peer_cn(h.client()), expected) << name;
  }
}

TEST(ServerTlsSni, UnknownNameFallsBackToTheDefault) {
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({.sni = "unknown.example.test"}), tls->default_context());
  ASSERT_TRUE(h.run().ok());
  EXPECT_EQ(peer_cn(h.client()), "localhost");
  EXPECT_EQ(describe(h.server()).sni, "unknown.example.test");
  EXPECT_EQ(tls->context_for("unknown.example.test"), tls->default_context());
}

TEST(ServerTlsSni, HandshakeStillWorksAfterTheServerTlsIsDropped) {
  // Reload replaces the ServerTls while handshakes are in flight: the SSL* must keep the
  // default context and its SNI contexts alive by itself.
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  test::SslPtr server = Handshake::new_ssl(tls->default_context());
  std::weak_ptr<const ServerTls> weak = tls;
  tls.reset();
  ASSERT_TRUE(weak.expired());
  Handshake h(make_client({.sni = "reporting.example.test"}), std::move(server));
  ASSERT_TRUE(h.run().ok());
  EXPECT_EQ(peer_cn(h.client()), "reporting.example.test");
}

TEST(ServerTlsSni, CreateTwiceGivesIndependentContexts) {
  auto a = make_server(sni_listener());
  auto b = make_server(sni_listener());
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->default_context(), b->default_context());
  EXPECT_NE(a->context_for("reporting.example.test"), b->context_for("reporting.example.test"));
}

// ---- ALPN ----

TEST(ServerTlsAlpn, PostgresqlIsSelected) {
  auto tls = make_server(base_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({.alpn = {"postgresql"}}), tls->default_context());
  ASSERT_TRUE(h.run().ok());
  EXPECT_TRUE(alpn_is_postgresql(h.server()));
  EXPECT_TRUE(alpn_is_postgresql(h.client()));
}

TEST(ServerTlsAlpn, PostgresqlIsFoundAnywhereInTheList) {
  auto tls = make_server(base_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({.alpn = {"http/1.1", "postgres", "postgresql"}}),
              tls->default_context());
  ASSERT_TRUE(h.run().ok());
  EXPECT_TRUE(alpn_is_postgresql(h.server()));
}

TEST(ServerTlsAlpn, ListWithoutPostgresqlFailsTheHandshake) {
  auto tls = make_server(base_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({.alpn = {"http/1.1", "postgresqlx"}}), tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_TRUE(h.server_side().failed);
  EXPECT_TRUE(h.client_side().failed);
  EXPECT_EQ(ERR_GET_REASON(h.server_side().error), SSL_R_NO_APPLICATION_PROTOCOL)
      << server_reason(h);
}

TEST(ServerTlsAlpn, ListWithoutPostgresqlFailsThroughAnSniContextToo) {
  auto tls = make_server(sni_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({.sni = "reporting.example.test", .alpn = {"h2"}}),
              tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(ERR_GET_REASON(h.server_side().error), SSL_R_NO_APPLICATION_PROTOCOL);
}

TEST(ServerTlsAlpn, NoAlpnIsAcceptedButReported) {
  auto tls = make_server(base_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({}), tls->default_context());
  ASSERT_TRUE(h.run().ok());
  EXPECT_FALSE(alpn_is_postgresql(h.server()));
}

// ---- protocol ----

TEST(ServerTlsProtocol, DefaultsToTls13AndAcceptsTls12) {
  auto tls = make_server(base_listener());
  ASSERT_TRUE(tls);
  Handshake h13(make_client({}), tls->default_context());
  ASSERT_TRUE(h13.run().ok());
  EXPECT_EQ(describe(h13.server()).version, "TLSv1.3");

  Handshake h12(make_client({.max_version = TLS1_2_VERSION}), tls->default_context());
  ASSERT_TRUE(h12.run().ok());
  const TlsInfo info = describe(h12.server());
  EXPECT_EQ(info.version, "TLSv1.2");
  // ECDHE with an AEAD cipher, nothing else is configured.
  EXPECT_TRUE(info.cipher.starts_with("ECDHE-ECDSA-")) << info.cipher;
  EXPECT_TRUE(info.cipher.find("GCM") != std::string::npos ||
              info.cipher.find("CHACHA20") != std::string::npos)
      << info.cipher;
  EXPECT_EQ(SSL_get_options(h12.server()) & SSL_OP_NO_RENEGOTIATION, SSL_OP_NO_RENEGOTIATION);
  EXPECT_EQ(SSL_get_options(h12.server()) & SSL_OP_NO_COMPRESSION, SSL_OP_NO_COMPRESSION);
}

TEST(ServerTlsProtocol, MinimumTls13RefusesTls12Clients) {
  config::Listener l = sni_listener();
  l.tls_min_version = config::TlsVersion::Tls13;
  auto tls = make_server(l);
  ASSERT_TRUE(tls);
  Handshake h(make_client({.max_version = TLS1_2_VERSION}), tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_TRUE(h.server_side().failed);
  EXPECT_EQ(ERR_GET_REASON(h.server_side().error), SSL_R_UNSUPPORTED_PROTOCOL) << server_reason(h);
  // The SNI contexts carry the same minimum.
  EXPECT_EQ(SSL_CTX_get_min_proto_version(tls->context_for("reporting.example.test")),
            TLS1_3_VERSION);
}

TEST(ServerTlsProtocol, NoSessionTicketsAreIssued) {
  auto tls = make_server(base_listener());
  ASSERT_TRUE(tls);
  Handshake h(make_client({}), tls->default_context());
  ASSERT_TRUE(h.run().ok());
  // After the byte exchange the client has processed anything the server sent.
  SSL_SESSION* session = SSL_get_session(h.client());
  ASSERT_NE(session, nullptr);
  EXPECT_FALSE(SSL_SESSION_is_resumable(session));
}

// ---- client certificates ----

TEST(ServerTlsClientCert, RequireFailsWithoutACertificate) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  Handshake h(make_client({}), tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_TRUE(h.server_side().failed);
  EXPECT_EQ(ERR_GET_REASON(h.server_side().error), SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
      << server_reason(h);
  // The TLS 1.3 client learns it from the alert after its own handshake finished.
  EXPECT_TRUE(h.client_side().failed);
}

TEST(ServerTlsClientCert, RequireAcceptsAVerifiedCertificate) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  Handshake h(make_client({.cert = Pki::get().alice}), tls->default_context());
  ASSERT_TRUE(h.run().ok()) << server_reason(h);
  const TlsInfo info = describe(h.server());
  ASSERT_TRUE(info.client_subject.has_value());
  EXPECT_EQ(*info.client_subject, "CN=alice");
}

TEST(ServerTlsClientCert, ServerAdvertisesTheClientCaNames) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  Handshake h(make_client({.cert = Pki::get().alice}), tls->default_context());
  ASSERT_TRUE(h.run().ok());
  STACK_OF(X509_NAME)* names = SSL_get_client_CA_list(h.client());
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(sk_X509_NAME_num(names), 1);
  char buf[256] = {};
  X509_NAME_get_text_by_NID(sk_X509_NAME_value(names, 0), NID_commonName, buf, sizeof buf);
  EXPECT_STREQ(buf, "pgwarden test client CA");
}

TEST(ServerTlsClientCert, RequireCannotBeBypassedThroughAnSniName) {
  // OpenSSL verifies with the context the SNI callback switched to: each must require too.
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  for (const char* name : {"reporting.example.test", "x.wild.example.test"}) {
    Handshake bare(make_client({.sni = name}), tls->default_context());
    bare.run();
    EXPECT_FALSE(bare.ok()) << name;
    EXPECT_EQ(ERR_GET_REASON(bare.server_side().error), SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        << name;

    Handshake other(make_client({.sni = name, .cert = Pki::get().other_client}),
                    tls->default_context());
    other.run();
    EXPECT_FALSE(other.ok()) << name;

    Handshake good(make_client({.sni = name, .cert = Pki::get().alice}), tls->default_context());
    ASSERT_TRUE(good.run().ok()) << name;
    EXPECT_EQ(describe(good.server()).client_subject.value_or(""), "CN=alice");
  }
}

TEST(ServerTlsClientCert, OptionalAcceptsNoCertificate) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Optional));
  ASSERT_TRUE(tls);
  Handshake h(make_client({}), tls->default_context());
  ASSERT_TRUE(h.run().ok()) << server_reason(h);
  EXPECT_FALSE(describe(h.server()).client_subject.has_value());
  EXPECT_EQ(SSL_get0_peer_certificate(h.server()), nullptr);
}

TEST(ServerTlsClientCert, OptionalStillVerifiesAPresentedCertificate) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Optional));
  ASSERT_TRUE(tls);
  Handshake good(make_client({.cert = Pki::get().bob}), tls->default_context());
  ASSERT_TRUE(good.run().ok());
  EXPECT_EQ(describe(good.server()).client_subject.value_or(""), "CN=bob");

  Handshake bad(make_client({.cert = Pki::get().other_client}), tls->default_context());
  bad.run();
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(bad.server_side().failed);
  EXPECT_EQ(SSL_get_verify_result(bad.server()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST(ServerTlsClientCert, CertificateFromAnotherCaIsRejected) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  Handshake h(make_client({.cert = Pki::get().other_client}), tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_TRUE(h.server_side().failed);
  EXPECT_EQ(SSL_get_verify_result(h.server()), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  const std::string reason = handshake_failure_reason(h.server(), h.server_side().error);
  EXPECT_NE(reason.find("certificate verify failed: unable to get local issuer certificate"),
            std::string::npos)
      << reason;
}

TEST(ServerTlsClientCert, ExpiredCertificateIsRejected) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  Handshake h(make_client({.cert = Pki::get().expired}), tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(SSL_get_verify_result(h.server()), X509_V_ERR_CERT_HAS_EXPIRED);
}

TEST(ServerTlsClientCert, CertificateWithoutClientAuthUsageIsRejected) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  Handshake h(make_client({.cert = Pki::get().server_usage}), tls->default_context());
  h.run();
  EXPECT_FALSE(h.ok());
  EXPECT_EQ(SSL_get_verify_result(h.server()), X509_V_ERR_INVALID_PURPOSE);
}

TEST(ServerTlsClientCert, ModeNoneDoesNotRequestACertificate) {
  config::Listener l = mtls_listener(config::ClientCertMode::None);
  auto tls = make_server(l);
  ASSERT_TRUE(tls);
  Handshake h(make_client({.cert = Pki::get().alice}), tls->default_context());
  ASSERT_TRUE(h.run().ok());
  EXPECT_EQ(SSL_get0_peer_certificate(h.server()), nullptr);
  EXPECT_FALSE(describe(h.server()).client_subject.has_value());
  EXPECT_EQ(SSL_CTX_get_verify_mode(tls->default_context()), SSL_VERIFY_NONE);
}

TEST(ServerTlsClientCert, EveryContextHasTheSameVerificationSettings) {
  auto tls = make_server(mtls_listener(config::ClientCertMode::Require));
  ASSERT_TRUE(tls);
  SSL_CTX* def = tls->default_context();
  for (const char* name : {"reporting.example.test", "a.wild.example.test"}) {
    SSL_CTX* ctx = tls->context_for(name);
    ASSERT_NE(ctx, def) << name;
    EXPECT_EQ(SSL_CTX_get_cert_store(ctx), SSL_CTX_get_cert_store(def)) << name;
    EXPECT_EQ(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    EXPECT_EQ(SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_mode(def));
    EXPECT_EQ(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(ctx)), 1);
  }
}

// ---- create() errors ----

std::string create_error(const config::Listener& l) {
  auto tls = ServerTls::create(l);
  EXPECT_FALSE(tls.has_value());
  return tls ? "" : tls.error();
}

TEST(ServerTlsCreate, MissingCertificateFileIsNamed) {
  config::Listener l = base_listener();
  l.tls_cert = Pki::get().dir / "nope.crt";
  const std::string e = create_error(l);
  EXPECT_NE(e.find((Pki::get().dir / "nope.crt").string()), std::string::npos) << e;
  EXPECT_NE(e.find("No such file or directory"), std::string::npos) << e;
  EXPECT_NE(e.find("listener \"main\""), std::string::npos) << e;
}

TEST(ServerTlsCreate, KeyThatDoesNotMatchIsNamed) {
  config::Listener l = base_listener();
  l.tls_key = Pki::get().reporting.key;
  const std::string e = create_error(l);
  EXPECT_NE(e.find(Pki::get().reporting.key.string()), std::string::npos) << e;
  EXPECT_NE(e.find("does not match"), std::string::npos) << e;
}

TEST(ServerTlsCreate, BrokenPemIsNamed) {
  config::Listener l = base_listener();
  l.tls_cert = Pki::get().bad_pem;
  const std::string e = create_error(l);
  EXPECT_NE(e.find(Pki::get().bad_pem.string()), std::string::npos) << e;
}

TEST(ServerTlsCreate, KeyFileWithoutAKeyIsNamed) {
  config::Listener l = base_listener();
  l.tls_key = Pki::get().server.cert;
  const std::string e = create_error(l);
  EXPECT_NE(e.find("no PEM private key found in " + Pki::get().server.cert.string()),
            std::string::npos)
      << e;
}

TEST(ServerTlsCreate, EncryptedKeyIsRefusedWithoutPrompting) {
  config::Listener l = base_listener();
  l.tls_key = Pki::get().encrypted_key;
  const std::string e = create_error(l);
  EXPECT_NE(e.find(Pki::get().encrypted_key.string()), std::string::npos) << e;
  EXPECT_NE(e.find("encrypted"), std::string::npos) << e;
}

TEST(ServerTlsCreate, SniEntryErrorsNameTheEntryAndFile) {
  config::Listener l = base_listener();
  l.sni.push_back(
      {{"reporting.example.test"}, Pki::get().reporting.cert, Pki::get().dir / "missing.key"});
  const std::string e = create_error(l);
  EXPECT_NE(e.find("sni entry 1"), std::string::npos) << e;
  EXPECT_NE(e.find((Pki::get().dir / "missing.key").string()), std::string::npos) << e;
}

TEST(ServerTlsCreate, DuplicateSniNameIsRefused) {
  config::Listener l = sni_listener();
  l.sni.push_back({{"Reporting.Example.Test"}, Pki::get().server.cert, Pki::get().server.key});
  const std::string e = create_error(l);
  EXPECT_NE(e.find("more than once"), std::string::npos) << e;
}

TEST(ServerTlsCreate, MissingClientCaFileIsNamed) {
  config::Listener l = mtls_listener(config::ClientCertMode::Require);
  l.client_ca = Pki::get().dir / "no-ca.crt";
  const std::string e = create_error(l);
  EXPECT_NE(e.find((Pki::get().dir / "no-ca.crt").string()), std::string::npos) << e;
}

TEST(ServerTlsCreate, ClientCertWithoutClientCaIsRefused) {
  config::Listener l = base_listener();
  l.client_cert = config::ClientCertMode::Require;
  EXPECT_NE(create_error(l).find("client_ca"), std::string::npos);
}

TEST(ServerTlsCreate, DisabledOrCertificateLessListenerIsRefused) {
  config::Listener l = base_listener();
  l.tls = config::ListenerTls::Disable;
  EXPECT_NE(create_error(l).find("disabled"), std::string::npos);
  l = base_listener();
  l.tls_key.reset();
  EXPECT_NE(create_error(l).find("tls_key"), std::string::npos);
}

}  // namespace
}  // namespace pgwarden::tls

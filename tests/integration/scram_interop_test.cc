// SCRAM interoperability with a real PostgreSQL 15 and real libpq, in both directions:
//  - verifiers made by pgwarden (library and `pgwarden hash-password`) are installed with
//    ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...' and libpq logs in with them;
//  - pgwarden's SCRAM client (driven through pgwarden's wire codec) logs in to PostgreSQL,
//    with and without TLS channel binding, and a wrong password is refused;
//  - pgwarden's SCRAM server, behind a minimal TLS listener written here, accepts libpq's
//    channel_binding=require exchange, with a verifier PostgreSQL itself produced.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/channel_binding.h"
#include "crypto/random.h"
#include "crypto/scram.h"
#include "crypto/scram_client.h"
#include "crypto/scram_server.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "wire/backend.h"
#include "wire/framer.h"
#include "wire/frontend.h"
#include "wire/startup.h"

namespace pgwarden {
namespace {

using fixture::AuthMethod;
using fixture::decode_backend_as;
using fixture::Message;
using fixture::PgCluster;
using fixture::RawClient;
using fixture::RoleSpec;
using wire::Bytes;
using wire::ByteVector;

// tls-server-end-point data of the server certificate of this TLS connection: our own on
// the server side, the peer's on the client side.
std::vector<std::byte> channel_binding(const RawClient& conn, bool server_side) {
  std::optional<std::vector<std::byte>> data;
  if (server_side) {
    data = crypto::tls_server_end_point(SSL_get_certificate(conn.ssl()));
  } else {
    X509* peer = SSL_get1_peer_certificate(conn.ssl());
    data = crypto::tls_server_end_point(peer);
    X509_free(peer);
  }
  if (!data) {
    throw std::runtime_error("no tls-server-end-point data");
  }
  return *data;
}

struct LoginResult {
  bool authenticated = false;
  std::string sqlstate;      // of the ErrorResponse when refused
  std::string current_user;  // from SELECT current_user once logged in
  std::string ssl;           // pg_stat_ssl.ssl of the session: "t" or "f"
  std::string mechanism;     // the SASL mechanism the client chose
};

// pgwarden's SCRAM client logs in to PostgreSQL through pgwarden's wire codec, then asks the
// server who it is. With `tls`, the connection is verify-full and channel binding required.
LoginResult scram_client_login(const PgCluster& pg, const std::string& user,
                               const std::string& password, bool tls) {
  auto conn = RawClient::dial("127.0.0.1", pg.port());
  crypto::ScramClientOptions options;
  if (tls) {
    // SSLRequest, expect 'S', then a verify-full handshake.
    conn->write_ssl_request();
    if (conn->read_byte() != 'S') {
      throw std::runtime_error("server refused TLS");
    }
    fixture::TlsClientOptions tls_options;
    tls_options.ca_file = pg.ca_cert();
    tls_options.expected_host = "localhost";
    tls_options.sni = "localhost";
    auto handshake = conn->start_tls(tls_options);
    if (!handshake) {
      throw std::runtime_error("TLS handshake failed: " + handshake.error);
    }
    options.tls_active = true;
    options.channel_binding = crypto::ChannelBindingPolicy::Require;
    options.channel_binding_data = channel_binding(*conn, /*server_side=*/false);
  } else {
    options.channel_binding = crypto::ChannelBindingPolicy::Disable;
  }
  ByteVector out;
  wire::encode(wire::StartupMessage{3, 0, {{"user", user}, {"database", "postgres"}}}, out);
  conn->write_raw(out);

  LoginResult result;
  crypto::ScramClient client(password, options);
  for (;;) {
    Message m = conn->read_or_throw();
    auto decoded = wire::decode_backend(m.type, m.body);
    if (!decoded) {
      throw std::runtime_error("undecodable message from PostgreSQL");
    }
    out.clear();
    if (auto* e = std::get_if<wire::ErrorResponse>(&*decoded)) {
      result.sqlstate = std::string(e->sqlstate());
      return result;
    }
    if (auto* sasl = std::get_if<wire::AuthenticationSasl>(&*decoded)) {
      auto reply = client.start(sasl->mechanisms);
      if (!reply) {
        throw std::runtime_error("client-first failed");
      }
      result.mechanism = std::string(client.mechanism());
      wire::encode(wire::SaslInitialResponse{client.mechanism(), wire::as_bytes(reply->data)}, out);
    } else if (auto* cont = std::get_if<wire::AuthenticationSaslContinue>(&*decoded)) {
      auto reply = client.on_server_first(cont->data);
      if (!reply) {
        throw std::runtime_error("server-first rejected: " +
                                 std::string(crypto::to_string(reply.error())));
      }
      wire::encode(wire::SaslResponse{wire::as_bytes(reply->data)}, out);
    } else if (auto* fin = std::get_if<wire::AuthenticationSaslFinal>(&*decoded)) {
      auto reply = client.on_server_final(fin->data);
      if (!reply) {
        throw std::runtime_error("server signature rejected: " +
                                 std::string(crypto::to_string(reply.error())));
      }
    } else if (std::holds_alternative<wire::AuthenticationOk>(*decoded)) {
      // Fail closed: AuthenticationOk counts only after the server proved itself.
      if (!client.complete()) {
        throw std::runtime_error("AuthenticationOk before the SCRAM exchange completed");
      }
      result.authenticated = true;
    } else if (std::holds_alternative<wire::ReadyForQuery>(*decoded)) {
      break;
    } else if (!std::holds_alternative<wire::ParameterStatus>(*decoded) &&
               !std::holds_alternative<wire::BackendKeyData>(*decoded) &&
               !std::holds_alternative<wire::NoticeResponse>(*decoded)) {
      throw std::runtime_error(std::string("unexpected message during startup: ") + m.type);
    }
    if (!out.empty()) {
      conn->write_raw(out);
    }
  }

  out.clear();
  wire::encode(wire::Query{"SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = "
                           "pg_backend_pid()"},
               out);
  conn->write_raw(out);
  decode_backend_as<wire::RowDescription>(conn->read_or_throw());
  Message row_message = conn->read_or_throw();  // the decoded row views into it
  auto row = decode_backend_as<wire::DataRow>(row_message);
  if (row.values.size() != 2 || !row.values[0] || !row.values[1]) {
    throw std::runtime_error("unexpected row shape");
  }
  result.current_user = std::string(wire::as_chars(*row.values[0]));
  result.ssl = std::string(wire::as_chars(*row.values[1]));
  decode_backend_as<wire::CommandComplete>(conn->read_or_throw());
  decode_backend_as<wire::ReadyForQuery>(conn->read_or_throw());
  out.clear();
  wire::encode(wire::Terminate{}, out);
  conn->write_raw(out);
  return result;
}

// Runs the real `pgwarden hash-password` with the password on stdin (no shell involved).
std::string run_hash_password(const std::string& password) {
  fixture::Command cmd;
  cmd.argv = {PGWARDEN_BINARY, "hash-password"};
  cmd.stdin_data = password + "\n";
  std::string output = fixture::run_checked(cmd, std::chrono::seconds(30));
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) {
    output.pop_back();
  }
  return output;
}

std::string sql_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') {
      out += '\'';
    }
  }
  return out + "'";
}

class ScramInterop : public ::testing::Test {
 protected:
  PgCluster& pg() { return fixture::shared_cluster(); }

  // A role with a scram hba line and the given stored password text (plain or verifier).
  std::string make_role(const std::string& stored, bool allow_plaintext = false) {
    std::string name = fixture::unique_name("scram");
    pg().create_role(
        RoleSpec{name, AuthMethod::kScram, "placeholder-password", allow_plaintext, ""});
    pg().exec("ALTER ROLE " + name + " PASSWORD " + sql_literal(stored));
    return name;
  }

  fixture::ConnectOutcome libpq_login(const std::string& user, const std::string& password) {
    auto info = pg().conninfo(user, password);
    info.set("channel_binding", "require");
    return fixture::try_connect(info);
  }
};

TEST_F(ScramInterop, PgwardenVerifierLetsLibpqLogIn) {
  const std::string password = "correct horse battery staple";
  auto verifier = crypto::make_scram_verifier(password);
  ASSERT_TRUE(verifier.has_value());
  std::string user = make_role(verifier->to_string());
  // PostgreSQL stored exactly what pgwarden made: it did not rehash it.
  EXPECT_EQ(pg().query_value("SELECT rolpassword FROM pg_authid WHERE rolname = $1", {user}),
            verifier->to_string());

  auto ok = libpq_login(user, password);
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(fixture::query_value(ok.conn.get(), "SELECT current_user"), user);

  auto bad = libpq_login(user, password + "!");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.sqlstate, "28P01");
}

TEST_F(ScramInterop, HashPasswordCommandOutputWorksInAlterRole) {
  // Non-ASCII with a no-break space: SASLprep maps it to a space, on both sides alike.
  const std::string password = "p\xC3\xA4ss\xC2\xA0w\xC3\xB6rd";
  std::string verifier = run_hash_password(password);
  ASSERT_TRUE(verifier.starts_with("SCRAM-SHA-256$4096:")) << verifier;
  ASSERT_TRUE(crypto::parse_scram_verifier(verifier).has_value()) << verifier;
  std::string user = make_role(verifier);

  auto ok = libpq_login(user, password);
  ASSERT_TRUE(ok.ok()) << ok.error;
  // The prepared form (NBSP mapped to space) is the same password to PostgreSQL.
  auto mapped = libpq_login(user, "p\xC3\xA4ss w\xC3\xB6rd");
  EXPECT_TRUE(mapped.ok()) << mapped.error;
  auto bad = libpq_login(user, "pass word");
  EXPECT_EQ(bad.sqlstate, "28P01");
}

TEST_F(ScramInterop, PgwardenClientLogsInOverTlsWithChannelBinding) {
  const std::string password = "tls-binding-secret";
  std::string user = make_role(password);
  auto result = scram_client_login(pg(), user, password, /*tls=*/true);
  EXPECT_TRUE(result.authenticated);
  EXPECT_EQ(result.mechanism, crypto::kScramSha256Plus);
  EXPECT_EQ(result.current_user, user);
  EXPECT_EQ(result.ssl, "t");
}

TEST_F(ScramInterop, PgwardenClientLogsInWithoutTls) {
  const std::string password = "plaintext-host-secret";
  std::string user = make_role(password, /*allow_plaintext=*/true);
  auto result = scram_client_login(pg(), user, password, /*tls=*/false);
  EXPECT_TRUE(result.authenticated);
  EXPECT_EQ(result.mechanism, crypto::kScramSha256);
  EXPECT_EQ(result.current_user, user);
  EXPECT_EQ(result.ssl, "f");
}

TEST_F(ScramInterop, PgwardenClientWithWrongPasswordIsRefused) {
  std::string user = make_role("the-right-one");
  auto result = scram_client_login(pg(), user, "the-wrong-one", /*tls=*/true);
  EXPECT_FALSE(result.authenticated);
  EXPECT_EQ(result.sqlstate, "28P01");
}

// A minimal TLS listener that authenticates one client with pgwarden's ScramServer.
class ScramListener {
 public:
  ScramListener(std::string cert, std::string key, std::optional<crypto::ScramVerifier> verifier)
      : cert_(std::move(cert)), key_(std::move(key)), verifier_(std::move(verifier)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 1) != 0) {
      throw std::runtime_error("listen failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    done_ = std::async(std::launch::async, [this] { return serve_one(); });
  }
  ~ScramListener() { ::close(fd_); }

  std::uint16_t port() const { return port_; }
  // What the server saw: the mechanism used and whether authentication succeeded.
  std::pair<std::string, bool> result() { return done_.get(); }

 private:
  std::pair<std::string, bool> serve_one() {
    int client = ::accept(fd_, nullptr, nullptr);
    if (client < 0) {
      return {"", false};
    }
    RawClient conn(client);
    auto ssl_request = conn.read_startup_packet();
    if (!ssl_request ||
        !std::holds_alternative<wire::SslRequest>(
            wire::decode_startup(ssl_request->body).value_or(wire::GssEncRequest{}))) {
      return {"", false};
    }
    std::byte yes{'S'};
    conn.write_raw(Bytes(&yes, 1));
    conn.start_tls_server(cert_, key_);
    auto startup = conn.read_startup_packet();
    if (!startup) {
      return {"", false};
    }
    auto packet = wire::decode_startup(startup->body);
    if (!packet || !std::holds_alternative<wire::StartupMessage>(*packet)) {
      return {"", false};
    }
    std::string user(std::get<wire::StartupMessage>(*packet).find("user").value_or(""));

    std::array<std::byte, 32> mock_secret{};
    if (!crypto::random_bytes(mock_secret)) {
      return {"", false};
    }
    crypto::ScramServerOptions options;
    options.channel_binding = channel_binding(conn, /*server_side=*/true);
    crypto::ScramServer server(verifier_, user, mock_secret, options);

    ByteVector out;
    wire::AuthenticationSasl offer;
    for (auto m : server.mechanisms()) {
      offer.mechanisms.push_back(m);
    }
    wire::encode(offer, out);
    conn.write_raw(out);

    std::string mechanism;
    auto refuse = [&] {
      out.clear();
      wire::encode_error(out, wire::Severity::Fatal, "28P01",
                         "password authentication failed for user \"" + user + "\"");
      conn.write_raw(out);
      return std::pair<std::string, bool>{mechanism, false};
    };
    auto first = conn.read_message();
    if (!first) {
      return {mechanism, false};
    }
    auto initial =
        wire::decode_frontend(first->type, first->body, wire::AuthResponseKind::SaslInitial);
    if (!initial || !std::holds_alternative<wire::SaslInitialResponse>(*initial)) {
      return refuse();
    }
    const auto& sir = std::get<wire::SaslInitialResponse>(*initial);
    mechanism = std::string(sir.mechanism);
    auto server_first = server.on_client_first(sir.mechanism, sir.data.value_or(wire::ByteView{}));
    if (!server_first) {
      return refuse();
    }
    out.clear();
    wire::encode(wire::AuthenticationSaslContinue{wire::as_bytes(server_first->data)}, out);
    conn.write_raw(out);

    auto second = conn.read_message();
    if (!second) {
      return {mechanism, false};
    }
    auto response = wire::decode_frontend(second->type, second->body, wire::AuthResponseKind::Sasl);
    if (!response || !std::holds_alternative<wire::SaslResponse>(*response)) {
      return refuse();
    }
    auto server_final = server.on_client_final(std::get<wire::SaslResponse>(*response).data);
    if (!server_final || !server.complete()) {
      return refuse();
    }
    out.clear();
    wire::encode(wire::AuthenticationSaslFinal{wire::as_bytes(server_final->data)}, out);
    wire::encode(wire::AuthenticationOk{}, out);
    for (auto [name, value] :
         {std::pair{"server_version", "15.0"}, std::pair{"client_encoding", "UTF8"},
          std::pair{"integer_datetimes", "on"}, std::pair{"standard_conforming_strings", "on"}}) {
      wire::encode(wire::ParameterStatus{name, value}, out);
    }
    std::array<std::byte, 4> key{};
    if (!crypto::random_bytes(key)) {
      return refuse();
    }
    wire::encode(wire::BackendKeyData{4242, wire::ByteView(Bytes(key))}, out);
    wire::encode(wire::ReadyForQuery{wire::TransactionStatus::Idle}, out);
    conn.write_raw(out);
    // Wait for the client's Terminate (or close) so libpq sees a clean session.
    while (auto m = conn.read_message()) {
      if (m->type == 'X') {
        break;
      }
    }
    return {mechanism, true};
  }

  std::string cert_, key_;
  std::optional<crypto::ScramVerifier> verifier_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::future<std::pair<std::string, bool>> done_;
};

class ScramServerInterop : public ScramInterop {
 protected:
  // The verifier PostgreSQL itself computes for `password`, read back from pg_authid.
  crypto::ScramVerifier postgres_verifier(const std::string& password) {
    std::string user = make_role(password);
    auto stored = pg().query_value("SELECT rolpassword FROM pg_authid WHERE rolname = $1", {user});
    auto parsed = crypto::parse_scram_verifier(stored);
    if (!parsed) {
      throw std::runtime_error("PostgreSQL verifier did not parse: " + stored);
    }
    return *parsed;
  }

  fixture::ConnectOutcome libpq_to(std::uint16_t port, const std::string& password,
                                   const std::string& channel_binding) {
    fixture::ConnInfo info;
    info.set("host", "localhost");
    info.set("port", std::to_string(port));
    info.set("user", "alice");
    info.set("dbname", "postgres");
    info.set("password", password);
    info.set("sslmode", "verify-full");
    info.set("sslrootcert", pg().ca_cert().string());
    info.set("channel_binding", channel_binding);
    info.set("gssencmode", "disable");
    return fixture::try_connect(info);
  }
};

TEST_F(ScramServerInterop, AcceptsLibpqChannelBindingRequire) {
  const std::string password = "server-side-secret";
  ScramListener listener(pg().server_cert().cert.string(), pg().server_cert().key.string(),
                         postgres_verifier(password));
  auto outcome = libpq_to(listener.port(), password, "require");
  EXPECT_TRUE(outcome.ok()) << outcome.error;
  outcome.conn.reset();
  auto [mechanism, ok] = listener.result();
  EXPECT_TRUE(ok);
  EXPECT_EQ(mechanism, crypto::kScramSha256Plus);
}

TEST_F(ScramServerInterop, RefusesWrongPasswordWith28P01) {
  ScramListener listener(pg().server_cert().cert.string(), pg().server_cert().key.string(),
                         postgres_verifier("the-real-password"));
  auto outcome = libpq_to(listener.port(), "not-the-password", "require");
  EXPECT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.sqlstate, "28P01") << outcome.error;
  auto [mechanism, ok] = listener.result();
  EXPECT_FALSE(ok);
  EXPECT_EQ(mechanism, crypto::kScramSha256Plus);
}

TEST_F(ScramServerInterop, UnknownUserGetsTheSameRefusal) {
  ScramListener listener(pg().server_cert().cert.string(), pg().server_cert().key.string(),
                         std::nullopt);
  auto outcome = libpq_to(listener.port(), "whatever", "require");
  EXPECT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.sqlstate, "28P01") << outcome.error;
  EXPECT_FALSE(listener.result().second);
}

}  // namespace
}  // namespace pgwarden

// A catalogue of malformed and adversarial first packets and message sequences sent to a
// real pgwarden in front of the real PostgreSQL 15 of the shared cluster (issue 3, "Bad
// input"; SPEC section 1). Each named case says what it sends and what must come back:
//   - FATAL with a given SQLSTATE and a message naming the fault, then the close: mostly
//     08P01; 28000 for a plaintext startup on a TLS-required listener and a missing user;
//     0A000 for an unknown protocol version or request code (as PostgreSQL answers it);
//     28P01 for a SCRAM proof that does not verify, 08P01 for a SCRAM message that breaks the
//     grammar or the channel-binding rules (see below); 22023 for bad
//     pgwarden options; the server's own 3D000 for a database it does not have;
//   - a close without any ErrorResponse where there is nobody to tell (an unknown cancel
//     key, a client that went away mid-packet, Terminate);
//   - a refused TLS handshake (direct TLS with a wrong ALPN);
//   - a few positive controls (the adversarial shape is legal and must keep working:
//     a query written one byte at a time, startup and query in one write, protocol 3.99).
// A FATAL sent while a statement runs upstream must also end that statement there (else the
// server would finish, and commit, what the client was told ended).
// A libpq session opened before the catalogue, through the same pgwarden (TLS, SCRAM), runs a
// query after every case on the same upstream backend, and pgwarden must still be running.
// Each case runs as its own parameterized test; BadInputCatalogue runs them all back to back
// on one pgwarden and then checks the process, the healthy session and the logs once more.
//
// Outcomes are what SPEC section 1 specifies and session.cc implements. A malformed SCRAM
// payload (garbage client-first, unknown mechanism, channel-binding downgrade, garbage
// client-final) is 08P01 "invalid SCRAM message: ..." as from PostgreSQL; only a proof that
// does not verify is 28P01 "password authentication failed" (identical for unknown users).
//
// Two listeners: "plain" (tls = disable, trust, max_message_size = 64kB) for the cases that
// need a logged-in session a raw client can open, and "secure" (tls = require, scram).
#include <libpq-fe.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "config/users_file.h"
#include "crypto/channel_binding.h"
#include "crypto/random.h"
#include "crypto/scram.h"
#include "crypto/scram_client.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "wire/backend.h"
#include "wire/message_type.h"

namespace pgwarden::fixture {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------- bytes

std::string be32(std::uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string cstr(const std::string& s) {
  return s + '\0';
}

// An untyped startup-phase packet: length word (counting itself), then `body`.
std::string packet(const std::string& body) {
  return be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}

// A StartupMessage with a protocol version and a raw parameter area (terminators included
// or not, as the case wants).
std::string startup(std::uint16_t major, std::uint16_t minor, const std::string& params) {
  return packet(be32((std::uint32_t{major} << 16) | minor) + params);
}

std::string good_startup(const std::string& user) {
  return startup(3, 0, cstr("user") + cstr(user) + cstr("database") + cstr("postgres") + '\0');
}

// A typed message with a correct length word.
std::string typed(char type, const std::string& body) {
  return std::string(1, type) + be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}

std::string sasl_initial(const std::string& mechanism, const std::string& data) {
  return typed('p', cstr(mechanism) + be32(static_cast<std::uint32_t>(data.size())) + data);
}

std::string random_text(std::size_t n) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::vector<std::byte> raw(n);
  if (!crypto::random_bytes(raw)) {
    throw FixtureError("random_bytes failed");
  }
  std::string out;
  for (auto b : raw) {
    out.push_back(kAlphabet[std::to_integer<unsigned>(b) % kAlphabet.size()]);
  }
  return out;
}

// The number of statements active on the cluster whose text contains `marker`, polled
// until it equals `want` or `timeout` passes.
bool wait_active_count(PgCluster& pg, const std::string& marker, const std::string& want,
                       std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const std::string n = pg.query_value(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 "
        "AND pid <> pg_backend_pid()",
        {"%" + marker + "%"});
    if (n == want) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(50ms);
  }
}

// alice's password on the secure listener (random per process; set by the fixture).
std::string& alice_password() {
  static std::string password;
  return password;
}

// ---------------------------------------------------------------------------- cases

enum class Target { kPlain, kSecure };

enum class Outcome {
  kFatal,         // ErrorResponse FATAL `sqlstate` whose message contains `text`, then close
  kCloseNoError,  // the connection ends without an ErrorResponse
  kCloseRaw,      // the connection ends (what comes first may not be protocol messages)
  kTlsRefused,    // the TLS handshake fails
  kContinues,     // a positive control: the steps checked the session works; then it ends
};

// What a case's steps can do on its connection.
struct Probe {
  PgCluster& pg;
  std::unique_ptr<RawClient> c;
  TlsOutcome tls;  // of direct_tls()

  // Writes bytes; the peer may already have closed (it refuses as soon as it can), which is
  // not the case's failure: what it answered is still read afterwards.
  void raw(const std::string& bytes) {
    try {
      c->write_raw(bytes);
    } catch (const FixtureError&) {
    }
  }
  void half_close() { ::shutdown(c->fd(), SHUT_WR); }

  TlsClientOptions verify() const {
    TlsClientOptions o;
    o.ca_file = pg.ca_cert();
    o.expected_host = "localhost";
    o.sni = "localhost";
    return o;
  }
  // SSLRequest, 'S', verified handshake.
  void ssl_request_tls() {
    c->write_ssl_request();
    if (c->read_byte() != 'S') {
      throw FixtureError("SSLRequest was not answered with 'S'");
    }
    auto outcome = c->start_tls(verify());
    if (!outcome) {
      throw FixtureError("TLS handshake failed: " + outcome.error);
    }
  }
  // Direct TLS (PostgreSQL 17 sslnegotiation=direct) offering `alpn`.
  void direct_tls(std::vector<std::string> alpn) {
    auto o = verify();
    o.alpn = std::move(alpn);
    tls = c->start_tls(o);
  }
  // A trust login on the plain listener.
  void login(const std::string& bytes_after = "") {
    raw(good_startup("bad_input_user") + bytes_after);
    auto r = c->login_result();
    if (!r.ready()) {
      throw FixtureError("login on the plain listener failed: " +
                         (r.error ? r.error->sqlstate + " " + r.error->message : "closed"));
    }
  }
  // TLS and a StartupMessage for alice on the secure listener, up to AuthenticationSASL.
  // Returns the offered mechanisms.
  std::vector<std::string> scram_start() {
    ssl_request_tls();
    c->write_startup({{"user", "alice"}, {"database", "postgres"}});
    Message m = c->read_or_throw();
    auto sasl = decode_backend_as<wire::AuthenticationSasl>(m);
    return {sasl.mechanisms.begin(), sasl.mechanisms.end()};
  }
  // A whole SCRAM exchange driven by pgwarden's own client, up to sending client-final.
  void scram_until_client_final(const std::string& password) {
    const auto offered = scram_start();
    crypto::ScramClientOptions o;
    o.tls_active = true;
    o.channel_binding_data = crypto::tls_server_end_point(SSL_get0_peer_certificate(c->ssl()));
    scram_ = std::make_unique<crypto::ScramClient>(password, o);
    std::vector<std::string_view> views(offered.begin(), offered.end());
    auto first = scram_->start(views);
    if (!first) {
      throw FixtureError("ScramClient refused the mechanisms");
    }
    raw(sasl_initial(std::string(first->mechanism), first->data));
    Message m = c->read_or_throw();
    auto cont = decode_backend_as<wire::AuthenticationSaslContinue>(m);
    auto final_msg = scram_->on_server_first(cont.data);
    if (!final_msg) {
      throw FixtureError("ScramClient refused the server-first-message");
    }
    raw(typed('p', final_msg->data));
  }
  std::unique_ptr<crypto::ScramClient> scram_;
};

struct Case {
  std::string name;
  Target target;
  std::function<void(Probe&)> steps;
  Outcome outcome;
  std::string sqlstate;  // kFatal
  std::string text;      // kFatal: part of the message
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

Case fatal(std::string name, Target t, std::function<void(Probe&)> steps, std::string sqlstate,
           std::string text) {
  return Case{std::move(name), t, std::move(steps), Outcome::kFatal, std::move(sqlstate),
              std::move(text)};
}
Case ends(std::string name, Target t, std::function<void(Probe&)> steps,
          Outcome o = Outcome::kCloseNoError) {
  return Case{std::move(name), t, std::move(steps), o, "", ""};
}

constexpr auto kPlain = Target::kPlain;
constexpr auto kSecure = Target::kSecure;

const std::vector<Case>& catalogue() {
  static const std::vector<Case> cases = [] {
    std::vector<Case> v;
    const std::string protocol_violation = "08P01";

    // --- first packets: lengths ---
    v.push_back(fatal(
        "startup_length_0", kPlain, [](Probe& p) { p.raw(be32(0)); }, protocol_violation,
        "invalid startup packet: invalid message length"));
    v.push_back(fatal(
        "startup_length_3", kPlain, [](Probe& p) { p.raw(be32(3)); }, protocol_violation,
        "invalid message length"));
    v.push_back(fatal(
        "startup_length_7", kPlain, [](Probe& p) { p.raw(be32(7) + std::string("\0\3\0", 3)); },
        protocol_violation, "invalid message length"));
    v.push_back(fatal(
        "startup_length_negative", kPlain,
        [](Probe& p) { p.raw(be32(0xFFFFFFF6u) + be32(wire::kProtocol30)); }, protocol_violation,
        "exceeds the size limit"));
    v.push_back(fatal(
        "startup_length_10001", kPlain,
        [](Probe& p) { p.raw(be32(10'001) + be32(wire::kProtocol30) + std::string(16, '\0')); },
        protocol_violation, "exceeds the size limit"));
    v.push_back(fatal(
        "startup_with_a_20000_byte_parameter", kPlain,
        [](Probe& p) {
          p.raw(startup(3, 0,
                        cstr("user") + cstr("x") + cstr("application_name") +
                            cstr(std::string(20'000, 'a')) + '\0'));
        },
        protocol_violation, "exceeds the size limit"));
    v.push_back(fatal(
        "tls_client_hello_on_a_plaintext_listener", kPlain,
        [](Probe& p) { p.raw(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)); },
        protocol_violation, "exceeds the size limit"));
    v.push_back(ends("eof_inside_the_startup_packet", kPlain, [](Probe& p) {
      p.raw(be32(100) + be32(wire::kProtocol30) + cstr("user"));
      p.half_close();
    }));

    // --- first packets: codes and versions ---
    v.push_back(fatal(
        "unknown_request_code", kPlain,
        [](Probe& p) { p.raw(packet(be32((1234u << 16) | 4321u))); }, "0A000",
        "unsupported frontend protocol"));
    v.push_back(fatal(
        "protocol_2_0", kPlain,
        [](Probe& p) { p.raw(startup(2, 0, cstr("user") + cstr("x") + '\0')); }, "0A000",
        "unsupported frontend protocol"));
    v.push_back(fatal(
        "protocol_4_0", kPlain,
        [](Probe& p) { p.raw(startup(4, 0, cstr("user") + cstr("x") + '\0')); }, "0A000",
        "unsupported frontend protocol"));
    v.push_back(ends(
        "protocol_3_99_is_negotiated_down_to_3_0", kPlain,
        [](Probe& p) {
          p.c->write_startup({{"user", "bad_input_user"}, {"database", "postgres"}}, 3, 99);
          auto r = p.c->login_result();
          ASSERT_TRUE(r.ready()) << (r.error ? r.error->message : "closed");
          EXPECT_EQ(r.negotiated_version, std::optional<std::uint32_t>(wire::kProtocol30));
          auto q = p.c->simple_query("SELECT 'negotiated'");
          ASSERT_TRUE(q.ok());
          EXPECT_EQ(q.rows.at(0).at(0), std::optional<std::string>("negotiated"));
          p.c->write_terminate();
        },
        Outcome::kContinues));

    // --- first packets: parameters ---
    v.push_back(fatal(
        "parameter_name_without_terminator", kPlain, [](Probe& p) { p.raw(startup(3, 0, "user")); },
        protocol_violation, "string is missing its terminator"));
    v.push_back(fatal(
        "parameter_value_without_terminator", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("user") + "alice")); }, protocol_violation,
        "string is missing its terminator"));
    v.push_back(fatal(
        "parameters_odd_count", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("user") + cstr("alice") + cstr("database"))); },
        protocol_violation, "string is missing its terminator"));
    v.push_back(fatal(
        "parameter_list_without_final_terminator", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("user") + cstr("alice"))); }, protocol_violation,
        "string is missing its terminator"));
    v.push_back(fatal(
        "duplicate_user", kPlain,
        [](Probe& p) {
          p.raw(
              startup(3, 0, cstr("user") + cstr("alice") + cstr("user") + cstr("postgres") + '\0'));
        },
        protocol_violation, "invalid field value"));
    v.push_back(fatal(
        "missing_user", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("database") + cstr("postgres") + '\0')); }, "28000",
        "no PostgreSQL user name specified"));
    v.push_back(fatal(
        "empty_user_name", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("user") + cstr("") + '\0')); }, "28000",
        "no PostgreSQL user name specified"));
    v.push_back(fatal(
        "empty_parameter_name_then_more", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("") + cstr("alice") + '\0')); }, protocol_violation,
        "unexpected bytes after the end of the message"));
    v.push_back(fatal(
        "bytes_after_the_parameter_list", kPlain,
        [](Probe& p) { p.raw(startup(3, 0, cstr("user") + cstr("alice") + '\0' + "junk")); },
        protocol_violation, "unexpected bytes after the end of the message"));
    v.push_back(fatal(
        "too_many_parameters", kPlain,
        [](Probe& p) {
          std::string params = cstr("user") + cstr("x");
          for (int i = 0; i < 70; ++i) {
            params += cstr("p" + std::to_string(i)) + cstr("v");
          }
          p.raw(startup(3, 0, params + '\0'));
        },
        protocol_violation, "invalid field count"));

    v.push_back(fatal(
        "replication_connection", kPlain,
        [](Probe& p) {
          p.raw(startup(3, 0,
                        cstr("user") + cstr("x") + cstr("replication") + cstr("database") + '\0'));
        },
        "28000", "replication connections are not allowed"));
    v.push_back(fatal(
        "unknown_pgwarden_setting_in_options", kPlain,
        [](Probe& p) {
          p.raw(startup(
              3, 0,
              cstr("user") + cstr("x") + cstr("options") + cstr("-c pgwarden.bogus=1") + '\0'));
        },
        "42501", "permission denied to set parameter \"pgwarden.bogus\""));
    v.push_back(fatal(
        "options_ending_with_dash_c", kPlain,
        [](Probe& p) {
          p.raw(startup(3, 0, cstr("user") + cstr("x") + cstr("options") + cstr("-c") + '\0'));
        },
        "22023", "invalid startup parameters"));
    v.push_back(ends(
        "protocol_option_is_reported_as_unrecognized", kPlain,
        [](Probe& p) {
          p.c->write_startup(
              {{"user", "bad_input_user"}, {"database", "postgres"}, {"_pq_.test_option", "on"}});
          auto r = p.c->login_result();
          ASSERT_TRUE(r.ready()) << (r.error ? r.error->message : "closed");
          EXPECT_EQ(r.negotiated_version, std::optional<std::uint32_t>(wire::kProtocol30));
          EXPECT_EQ(r.unrecognized_options, std::vector<std::string>{"_pq_.test_option"});
          p.c->write_terminate();
        },
        Outcome::kContinues));
    v.push_back(fatal(
        "unknown_database_gets_the_servers_own_error", kPlain,
        [](Probe& p) {
          p.c->write_startup({{"user", "bad_input_user"}, {"database", "no_such_db_here"}});
        },
        "3D000", "\"no_such_db_here\" does not exist"));

    // --- first packets: requests ---
    v.push_back(fatal(
        "ssl_request_twice_without_tls", kPlain,
        [](Probe& p) {
          p.c->write_ssl_request();
          ASSERT_EQ(p.c->read_byte(), 'N');
          p.c->write_ssl_request();
        },
        protocol_violation, "duplicate SSLRequest"));
    v.push_back(fatal(
        "ssl_request_with_trailing_bytes", kPlain,
        [](Probe& p) { p.raw(packet(be32(wire::kSslRequestCode) + "abcd")); }, protocol_violation,
        "unexpected bytes after the end of the message"));
    v.push_back(fatal(
        "gssenc_request_twice", kPlain,
        [](Probe& p) {
          p.c->write_gssenc_request();
          ASSERT_EQ(p.c->read_byte(), 'N');
          p.c->write_gssenc_request();
        },
        protocol_violation, "unexpected GSSENCRequest"));
    v.push_back(fatal(
        "cancel_request_with_a_2_byte_key", kPlain,
        [](Probe& p) {
          const std::byte key[2] = {std::byte{1}, std::byte{2}};
          p.c->write_cancel(12345, key);
        },
        protocol_violation, "message is shorter than its fields"));
    v.push_back(fatal(
        "cancel_request_with_a_300_byte_key", kPlain,
        [](Probe& p) {
          std::vector<std::byte> key(300, std::byte{7});
          p.c->write_cancel(12345, key);
        },
        protocol_violation, "exceeds the size limit"));
    v.push_back(ends("cancel_request_with_an_unknown_key", kPlain, [](Probe& p) {
      std::vector<std::byte> key(4);
      ASSERT_TRUE(crypto::random_bytes(key));
      p.c->write_cancel(0x00ABCDEF, key);
    }));

    // --- first packets: TLS-required listener ---
    v.push_back(fatal(
        "plaintext_startup_on_a_tls_listener", kSecure,
        [](Probe& p) { p.raw(good_startup("alice")); }, "28000", "TLS required"));
    v.push_back(fatal(
        "bytes_after_ssl_request_before_the_handshake", kSecure,
        [](Probe& p) { p.raw(packet(be32(wire::kSslRequestCode)) + good_startup("alice")); },
        protocol_violation, "unencrypted data after SSL request"));
    v.push_back(fatal(
        "ssl_request_again_inside_tls", kSecure,
        [](Probe& p) {
          p.ssl_request_tls();
          p.c->write_ssl_request();
        },
        protocol_violation, "duplicate SSLRequest"));
    v.push_back(fatal(
        "gssenc_request_after_tls", kSecure,
        [](Probe& p) {
          p.ssl_request_tls();
          p.c->write_gssenc_request();
        },
        protocol_violation, "unexpected GSSENCRequest"));
    v.push_back(fatal(
        "direct_tls_without_alpn", kSecure,
        [](Probe& p) {
          p.direct_tls({});
          ASSERT_TRUE(p.tls.ok) << p.tls.error;
        },
        protocol_violation, "ALPN"));
    v.push_back(fatal(
        "ssl_request_inside_direct_tls", kSecure,
        [](Probe& p) {
          p.direct_tls({"postgresql"});
          ASSERT_TRUE(p.tls.ok) << p.tls.error;
          p.c->write_ssl_request();
        },
        protocol_violation, "duplicate SSLRequest"));
    v.push_back(ends("cancel_request_in_plaintext_on_a_tls_listener", kSecure, [](Probe& p) {
      // Cancel requests need no TLS (as in PostgreSQL); an unknown key gets no answer.
      std::vector<std::byte> key(4);
      ASSERT_TRUE(crypto::random_bytes(key));
      p.c->write_cancel(0x00FEDCBA, key);
    }));
    v.push_back(ends(
        "direct_tls_with_a_wrong_alpn", kSecure, [](Probe& p) { p.direct_tls({"http/1.1"}); },
        Outcome::kTlsRefused));
    v.push_back(ends(
        "tls_record_with_garbage_inside", kSecure,
        [](Probe& p) { p.raw(std::string("\x16\x03\x01\x00\x05hello", 10)); }, Outcome::kCloseRaw));

    // --- authentication phase (secure listener, SCRAM) ---
    v.push_back(fatal(
        "password_message_when_scram_was_asked", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(typed('p', cstr("not-a-sasl-message")));
        },
        protocol_violation, "expected SASL initial response"));
    v.push_back(fatal(
        "query_instead_of_sasl_initial_response", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(typed('Q', cstr("SELECT 1")));
        },
        protocol_violation, "expected SASL initial response"));
    v.push_back(fatal(
        "sasl_initial_response_without_data", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(typed('p', cstr("SCRAM-SHA-256") + be32(0xFFFFFFFFu)));
        },
        protocol_violation, "expected SASL initial response"));
    v.push_back(fatal(
        "sasl_initial_response_length_mismatch", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(typed('p', cstr("SCRAM-SHA-256") + be32(100) + "n,,n="));
        },
        protocol_violation, "expected SASL initial response"));
    v.push_back(fatal(
        "auth_message_above_max_auth_message", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw("p" + be32(9'000) + std::string(64, 'x'));
        },
        protocol_violation, "exceeds the size limit"));
    v.push_back(fatal(
        "sasl_initial_response_with_an_unknown_mechanism", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(sasl_initial("SCRAM-SHA-1", "n,,n=,r=UnknownMechanismNonce"));
        },
        protocol_violation, "invalid SCRAM message"));
    v.push_back(fatal(
        "sasl_client_first_garbage", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(sasl_initial("SCRAM-SHA-256", "\x01garbage\xff"));
        },
        protocol_violation, "invalid SCRAM message"));
    v.push_back(fatal(
        "sasl_channel_binding_downgrade", kSecure,
        [](Probe& p) {
          // 'y': "I could bind but the server cannot", while -PLUS was offered over TLS.
          p.scram_start();
          p.raw(sasl_initial("SCRAM-SHA-256", "y,,n=,r=DowngradeNonce0123"));
        },
        protocol_violation, "invalid SCRAM message"));
    v.push_back(fatal(
        "sasl_response_garbage", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(sasl_initial("SCRAM-SHA-256", "n,,n=,r=GarbageFinalNonce0123"));
          Message m = p.c->read_or_throw();
          ASSERT_EQ(m.type, 'R');
          p.raw(typed('p', "c=biws,r=nonsense,p=!!!"));
        },
        protocol_violation, "invalid SCRAM message"));
    v.push_back(fatal(
        "sasl_response_with_a_wrong_proof", kSecure,
        [](Probe& p) { p.scram_until_client_final("this is not alice's password"); }, "28P01",
        "password authentication failed for user \"alice\""));
    v.push_back(fatal(
        "password_message_after_sasl_continue", kSecure,
        [](Probe& p) {
          p.scram_start();
          p.raw(sasl_initial("SCRAM-SHA-256", "n,,n=,r=WrongTypeNonce012345"));
          Message m = p.c->read_or_throw();
          ASSERT_EQ(m.type, 'R');
          p.raw(typed('Q', cstr("SELECT 1")));
        },
        protocol_violation, "expected SASL response"));
    v.push_back(ends("eof_in_the_middle_of_scram", kSecure, [](Probe& p) {
      p.scram_start();
      p.half_close();
    }));

    // --- after login (plain listener, trust) ---
    v.push_back(fatal(
        "garbage_right_after_the_startup_packet", kPlain,
        [](Probe& p) { p.login(std::string("\xff\xff\xff\xff\xff garbage", 13)); },
        protocol_violation, "unexpected message type 0xff"));
    v.push_back(fatal(
        "unknown_message_type", kPlain,
        [](Probe& p) {
          p.login();
          p.raw(typed('z', ""));
        },
        protocol_violation, "unexpected message type 'z'"));
    v.push_back(fatal(
        "password_message_after_login", kPlain,
        [](Probe& p) {
          p.login();
          p.raw(typed('p', cstr("late password")));
        },
        protocol_violation, "unexpected message type 'p'"));
    v.push_back(fatal(
        "startup_packet_after_login", kPlain,
        [](Probe& p) {
          p.login();
          p.raw(good_startup("postgres"));
        },
        protocol_violation, "unexpected message type 0x00"));
    v.push_back(fatal(
        "ssl_request_after_login", kPlain,
        [](Probe& p) {
          p.login();
          p.raw(packet(be32(wire::kSslRequestCode)));
        },
        protocol_violation, "unexpected message type 0x00"));
    v.push_back(fatal(
        "message_length_below_4", kPlain,
        [](Probe& p) {
          p.login();
          p.raw("Q" + be32(3));
        },
        protocol_violation, "invalid length 3 for message type 'Q'"));
    v.push_back(fatal(
        "message_length_above_max_message_size", kPlain,
        [](Probe& p) {
          p.login();
          p.raw("Q" + be32(100'000) + "SELECT ");
        },
        protocol_violation, "invalid length 100000 for message type 'Q'"));
    v.push_back(fatal(
        "message_length_negative", kPlain,
        [](Probe& p) {
          p.login();
          p.raw("P" + be32(0xFFFFFFFFu));
        },
        protocol_violation, "invalid length 4294967295 for message type 'P'"));
    v.push_back(ends("garbage_while_a_query_runs_cancels_it_upstream", kPlain, [](Probe& p) {
      p.login();
      const std::string marker = unique_name("bad_input_running");
      p.c->write_query("SELECT pg_sleep(30), '" + marker + "'");
      ASSERT_TRUE(wait_active_count(p.pg, marker, "1", 10s)) << "the query never started";
      p.raw(typed('z', ""));
      auto e = p.c->read_error();
      ASSERT_TRUE(e.has_value());
      EXPECT_EQ(e->sqlstate, "08P01");
      EXPECT_NE(e->message.find("unexpected message type 'z'"), std::string::npos) << e->message;
      // The FATAL ended the statement too: it does not run (and commit) on its own upstream.
      const bool stopped = wait_active_count(p.pg, marker, "0", 10s);
      if (!stopped) {
        p.pg.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE $1 "
            "AND pid <> pg_backend_pid()",
            {"%" + marker + "%"});
      }
      EXPECT_TRUE(stopped) << "the statement kept running upstream after FATAL 08P01";
    }));
    v.push_back(ends("truncated_message_then_eof", kPlain, [](Probe& p) {
      p.login();
      p.raw("Q" + be32(100) + "SELECT");
      p.half_close();
    }));
    v.push_back(ends("terminate_in_the_middle_of_a_pipeline", kPlain, [](Probe& p) {
      p.login();
      p.raw(typed('P', cstr("") + cstr("SELECT 1") + std::string(2, '\0')) + typed('X', "") +
            typed('Q', cstr("SELECT 'never'")));
    }));
    v.push_back(ends("terminate_with_a_body", kPlain, [](Probe& p) {
      p.login();
      p.raw(typed('X', "junk"));
    }));
    v.push_back(ends(
        "copy_data_outside_copy_is_ignored", kPlain,
        [](Probe& p) {
          // PostgreSQL ignores CopyData/CopyDone outside COPY; pgwarden forwards them.
          p.login();
          p.raw(typed('d', "stray copy data") + typed('c', ""));
          auto q = p.c->simple_query("SELECT 'after stray copy'");
          ASSERT_TRUE(q.ok()) << (q.error ? q.error->message : "closed");
          EXPECT_EQ(q.rows.at(0).at(0), std::optional<std::string>("after stray copy"));
          p.c->write_terminate();
        },
        Outcome::kContinues));
    v.push_back(ends(
        "query_written_one_byte_at_a_time", kPlain,
        [](Probe& p) {
          p.login();
          for (char b : typed('Q', cstr("SELECT 'byte by byte'"))) {
            p.c->write_raw(std::string(1, b));
          }
          auto q = p.c->read_query_result();
          ASSERT_TRUE(q.ok()) << (q.error ? q.error->message : "closed");
          EXPECT_EQ(q.rows.at(0).at(0), std::optional<std::string>("byte by byte"));
          p.c->write_terminate();
        },
        Outcome::kContinues));
    v.push_back(ends(
        "startup_and_query_in_one_write", kPlain,
        [](Probe& p) {
          p.login(typed('Q', cstr("SELECT 'pipelined'")));
          auto q = p.c->read_query_result();
          ASSERT_TRUE(q.ok()) << (q.error ? q.error->message : "closed");
          EXPECT_EQ(q.rows.at(0).at(0), std::optional<std::string>("pipelined"));
          p.c->write_terminate();
        },
        Outcome::kContinues));
    v.push_back(ends(
        "scram_by_hand_with_the_right_password", kSecure,
        [](Probe& p) {
          // The control for the SCRAM cases above: the same driver, the right password.
          p.scram_until_client_final(alice_password());
          Message m = p.c->read_or_throw();
          auto final_msg = decode_backend_as<wire::AuthenticationSaslFinal>(m);
          ASSERT_TRUE(p.scram_->on_server_final(final_msg.data).has_value());
          ASSERT_TRUE(p.scram_->complete());
          auto r = p.c->login_result();
          ASSERT_TRUE(r.ready()) << (r.error ? r.error->message : "closed");
          EXPECT_TRUE(r.authenticated);
          p.c->write_terminate();
        },
        Outcome::kContinues));
    return v;
  }();
  return cases;
}

// ---------------------------------------------------------------------------- fixture

class BadInputBase : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    PgCluster& pg = shared_cluster();
    const std::string role = unique_name("bad_up");
    upstream_password_ = "Bq" + random_text(28);
    const std::string& upstream_password = upstream_password_;
    pg.create_role(RoleSpec{role, AuthMethod::kScram, upstream_password, false, ""});
    alice_ = "Bq" + random_text(28);
    alice_password() = alice_;
    auto verifier = crypto::make_scram_verifier(alice_);
    ASSERT_TRUE(verifier.has_value());
    plain_port_ = pick_free_port();
    secure_port_ = pick_free_port();
    const std::string cert = pg.server_cert().cert.string();
    const std::string key = pg.server_cert().key.string();
    const std::string port = std::to_string(pg.port());

    PgwardenOptions o;
    o.config =
        "[server]\nworkers = 2\nshutdown_grace = \"2s\"\nlog_level = \"debug\"\n\n"
        "[[listener]]\nname = \"plain\"\nlisten = \"127.0.0.1:" +
        std::to_string(plain_port_) +
        "\"\nbackend = \"app\"\ntls = \"disable\"\nauth = [\"trust\"]\n"
        "max_message_size = \"64kB\"\nauth_failure_limit = 0\n\n"
        "[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:" +
        std::to_string(secure_port_) + "\"\nbackend = \"app\"\ntls = \"require\"\ntls_cert = \"" +
        cert + "\"\ntls_key = \"" + key +
        "\"\nauth = [\"scram\"]\nusers_file = \"users.txt\"\nauth_failure_limit = 0\n\n"
        "[backend.app]\naddress = \"localhost:" +
        port + "\"\ntls = \"verify-full\"\ntls_ca = \"" + pg.ca_cert().string() +
        "\"\ncredentials = \"static\"\nuser = \"" + role +
        "\"\npassword = \"${UPSTREAM_PASSWORD}\"\n";
    o.files.push_back(PgwardenFile{
        "users.txt", config::quote_users_file_field("alice") + " " +
                         config::quote_users_file_field(verifier->to_string()) + "\n"});
    o.env.emplace_back("UPSTREAM_PASSWORD", upstream_password);
    o.ports = {plain_port_, secure_port_};
    proxy_ = PgwardenProcess::start(std::move(o)).release();

    // The healthy session: libpq over TLS with SCRAM through the same pgwarden.
    ConnInfo ci = pg.conninfo("alice", alice_, HostForm::kIpv4);
    ci.set("port", std::to_string(secure_port_));
    healthy_ = connect_or_throw(ci).release();
    healthy_pid_ = query_value(healthy_, "SELECT pg_backend_pid()");
  }

  static void TearDownTestSuite() {
    if (healthy_ != nullptr) {
      PQfinish(healthy_);
      healthy_ = nullptr;
    }
    delete proxy_;
    proxy_ = nullptr;
  }

  // Runs one case on a fresh connection and checks its outcome, then checks that the
  // healthy session still works on the same upstream backend and pgwarden still runs.
  static void run_case(const Case& k) {
    SCOPED_TRACE("case " + k.name);
    ASSERT_NE(proxy_, nullptr);
    Probe p{shared_cluster(),
            RawClient::dial("127.0.0.1", k.target == Target::kPlain ? plain_port_ : secure_port_),
            {}};
    k.steps(p);
    if (::testing::Test::HasFatalFailure()) {
      return;
    }
    switch (k.outcome) {
      case Outcome::kFatal: {
        auto e = p.c->read_error();
        ASSERT_TRUE(e.has_value()) << "the connection ended without an ErrorResponse";
        EXPECT_EQ(e->severity, "FATAL") << e->message;
        EXPECT_EQ(e->sqlstate, k.sqlstate) << e->message;
        EXPECT_NE(e->message.find(k.text), std::string::npos)
            << "message '" << e->message << "' does not name the fault ('" << k.text << "')";
        EXPECT_TRUE(p.c->wait_closed(10s)) << "the connection stayed open after the FATAL";
        break;
      }
      case Outcome::kCloseNoError:
      case Outcome::kContinues: {
        // Anything before the end must not be an ErrorResponse (nobody asked for one).
        while (auto m = p.c->read_message()) {
          EXPECT_NE(m->type, 'E') << "unexpected ErrorResponse";
        }
        break;
      }
      case Outcome::kCloseRaw:
        EXPECT_TRUE(p.c->wait_closed(10s)) << "the connection stayed open";
        break;
      case Outcome::kTlsRefused:
        EXPECT_FALSE(p.tls.ok) << "the TLS handshake succeeded";
        EXPECT_TRUE(p.c->wait_closed(10s));
        break;
    }

    // Nothing else was affected.
    ASSERT_TRUE(proxy_->running()) << proxy_->log();
    auto echo = run_query(healthy_, "SELECT $1::text", {k.name});
    ASSERT_TRUE(echo.ok()) << "the healthy session broke: " << echo.sqlstate << " " << echo.error;
    ASSERT_EQ(echo.rows.size(), 1u);
    EXPECT_EQ(echo.rows[0][0], std::optional<std::string>(k.name));
    EXPECT_EQ(query_value(healthy_, "SELECT pg_backend_pid()"), healthy_pid_)
        << "the healthy session is on another upstream backend";
  }

  static inline PgwardenProcess* proxy_ = nullptr;
  static inline PGconn* healthy_ = nullptr;
  static inline std::string healthy_pid_;
  static inline std::string alice_;
  static inline std::string upstream_password_;
  static inline std::uint16_t plain_port_ = 0;
  static inline std::uint16_t secure_port_ = 0;
};

class BadInput : public BadInputBase, public ::testing::WithParamInterface<Case> {};

TEST_P(BadInput, GetsItsSpecifiedOutcome) {
  run_case(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInput, ::testing::ValuesIn(catalogue()),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           return param.param.name;
                         });

// The whole catalogue back to back on one pgwarden (meaningful on its own, also when the
// parameterized cases run one per process under ctest), then the process and the healthy
// session are checked once more, and a fresh client still logs in.
class BadInputCatalogue : public BadInputBase {};

TEST_F(BadInputCatalogue, WholeCatalogueLeavesTheProxyAndAHealthySessionIntact) {
  ASSERT_GE(catalogue().size(), 30u);
  for (const auto& k : catalogue()) {
    run_case(k);
    if (HasFatalFailure()) {
      return;
    }
  }
  ASSERT_TRUE(proxy_->running()) << proxy_->log();
  EXPECT_EQ(query_value(healthy_,
                        "SELECT 'healthy after " + std::to_string(catalogue().size()) + " cases'"),
            "healthy after " + std::to_string(catalogue().size()) + " cases");
  ConnInfo ci = shared_cluster().conninfo("alice", alice_, HostForm::kIpv4);
  ci.set("port", std::to_string(secure_port_));
  auto fresh = try_connect(ci);
  ASSERT_TRUE(fresh.ok()) << fresh.error;
  EXPECT_EQ(query_value(fresh.conn.get(), "SELECT 1"), "1");

  // All that garbage did not make anything print a password.
  for (const auto& [what, text] : {std::pair{"pgwarden log", proxy_->log()},
                                   std::pair{"PostgreSQL log", shared_cluster().server_log()}}) {
    EXPECT_EQ(text.find(alice_), std::string::npos) << "alice's password is in the " << what;
    EXPECT_EQ(text.find(upstream_password_), std::string::npos)
        << "the upstream password is in the " << what;
  }
}

}  // namespace
}  // namespace pgwarden::fixture

// The upstream login under attack: pgwarden in front of a scripted fake PostgreSQL server
// (fixture/fake_upstream.h) that misbehaves at every step of the login pgwarden performs or
// relays (SPEC section 2, "Upstream side"; section 4), while a healthy session through the same
// pgwarden to the real PostgreSQL 15 of the shared cluster runs alongside.
//
// Steps: the answer to SSLRequest, the TLS handshake, the first authentication request, the
// answer to each password / SASL message, the server-final-message, AuthenticationOk and each
// message after it up to ReadyForQuery. Faults at each: a close, a reset, a hold past
// connect_timeout (and one past the listener's startup_timeout), an ErrorResponse, a message
// of the wrong type, a length word below 4, a message above the auth-phase size limit, a
// message cut short, and a request followed at once by a close or a reset, so that the
// answer (pgwarden's own, or the client's it relays) meets a dead connection. Plus what only
// some steps have: 'N', bytes after 'S', a certificate that
// does not verify, unsupported methods (Kerberos V5, GSS, SSPI, unknown codes), SCRAM without
// -PLUS over TLS, SCRAM parameters out of range (iterations, salt, nonce), a wrong server
// signature, AuthenticationOk before the SCRAM exchange ended, an invalid BackendKeyData.
//
// For every cell, the client gets exactly its specified refusal:
//   - FATAL 08006 "could not connect to the upstream server: <step>: <detail>", where <step>
//     is connect, TLS, TLS verification, authentication or startup;
//   - the server's own ErrorResponse, unchanged, when the server sent one after
//     authentication (static credentials), or at any point with passthrough, where the
//     server's verdict on the client's own credentials is the answer;
// and the connection ends. Then: the fake confirms its script ran up to the fault and that
// pgwarden closed the upstream connection; pgwarden is still running; the healthy session
// answers on the same upstream backend; a fresh healthy session logs in. Control cells run
// the same fake with a correct login (SCRAM-SHA-256-PLUS, SCRAM, MD5, cleartext over TLS,
// trust) to ReadyForQuery, so the fake itself is known to speak the protocol.
//
// A cell that kills pgwarden is reported with the tail of pgwarden's log, and pgwarden is
// restarted so that the remaining cells still report on their own.
//
// Deliberate waits: the hold cells wait for pgwarden's connect_timeout (1 s, the fake
// backends' setting) or the startup_timeout of the "slow" listener (1 s); nothing here
// sleeps.
#include <libpq-fe.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "fixture/certs.h"
#include "fixture/fake_upstream.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "fixture/temp_dir.h"
#include "fixture/test_util.h"

namespace pgwarden::fixture {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using namespace fake;

// pgwarden's static password for the fake backends (the fake's ScramAccept knows it too).
constexpr std::string_view kFakePassword = "faults-FkPw-4rT8qZ2mX7vN";
// The real upstream role's password (the healthy sessions).
constexpr std::string_view kRealPassword = "faults-UpPw-9wK3cJ6hB1sD";
constexpr std::string_view kPlus = "SCRAM-SHA-256-PLUS";
constexpr std::string_view kScram = "SCRAM-SHA-256";
// A valid salt and iteration count for a server-first-message.
constexpr std::string_view kSalt = "c2FsdHNhbHRzYWx0c2FsdA==";
constexpr std::string_view kIterations = "4096";

// ---------------------------------------------------------------------------- cells

// Which pgwarden listener (and so which backend) a cell logs in through.
enum class Mode {
  kStaticTls,       // credentials = static, upstream tls = verify-full
  kStaticPlain,     // credentials = static, upstream tls = disable
  kPassthrough,     // auth = ["passthrough"], upstream tls = disable
  kPassthroughTls,  // auth = ["passthrough"], upstream tls = verify-full
  kSlow,            // static, plain, connect_timeout 10s behind a 1s startup_timeout listener
  kRefused,         // static, backend address where nothing listens
};

std::string mode_name(Mode m) {
  switch (m) {
    case Mode::kStaticTls:
      return "static_tls";
    case Mode::kStaticPlain:
      return "static_plain";
    case Mode::kPassthrough:
      return "passthrough";
    case Mode::kPassthroughTls:
      return "passthrough_tls";
    case Mode::kSlow:
      return "slow";
    case Mode::kRefused:
      return "refused";
  }
  return "?";
}

bool upstream_tls(Mode m) {
  return m == Mode::kStaticTls || m == Mode::kPassthroughTls;
}
bool passthrough(Mode m) {
  return m == Mode::kPassthrough || m == Mode::kPassthroughTls;
}

enum class Want {
  kReady,            // a control: the login reaches ReadyForQuery
  kUpstreamFailure,  // FATAL 08006 naming `step`, with `detail` in the message
  kServerError,      // the fake's own ErrorResponse, relayed unchanged
};

struct Cell {
  std::string name;
  Mode mode = Mode::kStaticTls;
  Script script;
  Want want = Want::kUpstreamFailure;
  std::string step;      // kUpstreamFailure
  std::string detail;    // kUpstreamFailure: part of the message after "<step>: "
  std::string sqlstate;  // kServerError
  std::string message;   // kServerError
};

void PrintTo(Mode m, std::ostream* os) {
  *os << mode_name(m);
}

// What the fake sends when a cell says "ErrorResponse": during authentication, the refusal
// PostgreSQL gives a wrong password; after it, the one for a database that does not exist.
const std::string kAuthErrorState = "28P01";
const std::string kAuthErrorText = "password authentication failed for user \"fake\" (fake)";
const std::string kStartupErrorState = "3D000";
const std::string kStartupErrorText = "database \"fake\" does not exist (fake)";

// An upstream that stops answering is reported as such at every step ("timed out after 1s
// (connect_timeout)"), never as a lost connection: the operator must know which limit fired.
const std::string kTimedOut = "connect_timeout";
const std::string kLost = "connection lost";
const std::string kInvalid = "invalid message";

// Scripts up to a point of the login, for one mode.
struct Scripts {
  Mode mode;
  CertFiles cert;  // the fake's certificate (verifies as 127.0.0.1 against the cluster CA)

  Script tls() const {
    if (!upstream_tls(mode)) {
      return {};
    }
    return {ExpectSslRequest{}, Send{"S", "'S'"}, StartTls{cert}};
  }
  // The StartupMessage has been read: an authentication request is due.
  Script after_startup() const {
    Script s = tls();
    s.push_back(ExpectStartup{});
    return s;
  }
  Script then(Script s, std::initializer_list<Step> more) const {
    s.insert(s.end(), more.begin(), more.end());
    return s;
  }
  Script after_md5_password() const {
    return then(after_startup(), {Send{auth_md5(), "AuthenticationMD5Password"}, Expect{'p'}});
  }
  Script after_cleartext_password() const {
    return then(after_startup(),
                {Send{auth_cleartext(), "AuthenticationCleartextPassword"}, Expect{'p'}});
  }
  std::vector<std::string> mechanisms() const {
    return upstream_tls(mode) ? std::vector<std::string>{std::string(kPlus), std::string(kScram)}
                              : std::vector<std::string>{std::string(kScram)};
  }
  Script after_sasl_initial() const {
    return then(after_startup(),
                {Send{auth_sasl(mechanisms()), "AuthenticationSASL"}, ExpectSaslInitial{}});
  }
  Script after_sasl_response() const {
    return then(after_sasl_initial(), {sasl_continue("FakeServerNonce", std::string(kSalt),
                                                     std::string(kIterations), "SASLContinue"),
                                       Expect{'p'}});
  }
  // Static credentials: a complete and correct SCRAM exchange, AuthenticationOk due next.
  Script after_sasl_final() const {
    return then(after_startup(), {ScramAccept{std::string(kFakePassword)}});
  }
  // Passthrough: the fake does not check the client's proof; it just sends a SASLFinal.
  Script after_relayed_sasl_final() const {
    return then(after_sasl_response(),
                {Send{auth_sasl_final("v=" + std::string(44, 'A')), "SASLFinal"}});
  }
  Script after_auth_ok() const {
    return then(after_startup(), {Send{auth_ok(), "AuthenticationOk"}});
  }
  Script after_parameter_status() const {
    return then(after_auth_ok(), {Send{parameter_status("server_version", "15.99 (fake)") +
                                           parameter_status("client_encoding", "UTF8"),
                                       "ParameterStatus x2"}});
  }
  Script after_backend_key_data() const {
    return then(after_parameter_status(), {Send{backend_key_data(4242, "k3y!"), "BackendKeyData"}});
  }
};

class CellList {
 public:
  explicit CellList(std::vector<Cell>& out) : out_(out) {}

  void fail(Mode mode, std::string name, Script script, std::string step, std::string detail) {
    Cell c;
    c.name = mode_name(mode) + "__" + std::move(name);
    c.mode = mode;
    c.script = std::move(script);
    c.want = Want::kUpstreamFailure;
    c.step = std::move(step);
    c.detail = std::move(detail);
    out_.push_back(std::move(c));
  }
  void relayed(Mode mode, std::string name, Script script, std::string sqlstate,
               std::string message) {
    Cell c;
    c.name = mode_name(mode) + "__" + std::move(name);
    c.mode = mode;
    c.script = std::move(script);
    c.want = Want::kServerError;
    c.sqlstate = std::move(sqlstate);
    c.message = std::move(message);
    out_.push_back(std::move(c));
  }
  void ready(Mode mode, std::string name, Script script) {
    Cell c;
    c.name = mode_name(mode) + "__" + std::move(name);
    c.mode = mode;
    script.push_back(Expect{'X'});  // the client's Terminate, forwarded
    c.script = std::move(script);
    c.want = Want::kReady;
    out_.push_back(std::move(c));
  }

  // The generic faults at one point of the login. `phase` is the step pgwarden names
  // ("authentication" or "startup"); `relay_errors`: an ErrorResponse here reaches the
  // client unchanged (else 08006 naming the SQLSTATE). `hold`: include the timeout cell.
  void generic(Mode mode, const std::string& point, const Script& prefix, const std::string& phase,
               bool relay_errors, bool hold) {
    auto with = [&](std::initializer_list<Step> more) {
      Script s = prefix;
      s.insert(s.end(), more.begin(), more.end());
      return s;
    };
    const bool authn = phase == "authentication";
    fail(mode, point + "__close", with({Close{}}), phase, kLost);
    fail(mode, point + "__reset", with({Reset{}}), phase, kLost);
    if (hold) {
      fail(mode, point + "__hold_past_connect_timeout", with({Hold{}}), phase, kTimedOut);
    }
    const std::string state = authn ? kAuthErrorState : kStartupErrorState;
    const std::string text = authn ? kAuthErrorText : kStartupErrorText;
    Script error = with({Send{error_response("FATAL", state, text), "ErrorResponse " + state}});
    if (relay_errors) {
      relayed(mode, point + "__error_response", error, state, text);
    } else {
      fail(mode, point + "__error_response", error, phase,
           "the server refused the login (SQLSTATE " + state + ")");
    }
    // A well-framed message that has no business here.
    if (authn) {
      fail(mode, point + "__ready_for_query_before_ok",
           with({Send{ready_for_query('I'), "ReadyForQuery"}}), phase,
           "unexpected message from the server during authentication");
    } else {
      fail(mode, point + "__data_row", with({Send{typed('D', std::string(2, '\0')), "DataRow"}}),
           phase, "unexpected message 'D'");
    }
    const char type = authn ? 'R' : 'S';
    fail(mode, point + "__length_below_4",
         with({Send{typed_with_length(type, 2, ""), "length word 2"}}), phase, kInvalid);
    fail(mode, point + "__oversized",
         with({Send{typed_with_length(type, 1'000'000, std::string(64, 'x')), "length 1000000"}}),
         phase, kInvalid);
    fail(mode, point + "__oversized_in_full",
         with({Send{typed(type, std::string(9000, 'x')), "9000-byte message"}}), phase, kInvalid);
    fail(mode, point + "__truncated_then_close",
         with({Send{typed_with_length(type, 40, be32(0) + "abc"), "7 of 40 bytes"}, Close{}}),
         phase, kLost);
  }

 private:
  std::vector<Cell>& out_;
};

// The fake's certificates live in a directory whose path is known before the suite starts
// (the cells, scripts included, are built when the tests are registered); build() fills it.
std::filesystem::path certs_dir() {
  static const std::filesystem::path dir =
      scratch_base() / ("pgwarden-faults-certs-" + std::to_string(::getpid()));
  return dir;
}

struct Certs {
  CertFiles good;        // CN=localhost, IP:127.0.0.1, signed by the faults CA
  CertFiles wrong_name;  // CN=wrong.example, signed by the faults CA
  CertFiles rogue;       // CN=localhost, signed by a CA pgwarden does not trust
};

// CertAuthority names files <stem>.crt / <stem>.key in its directory.
CertFiles cert_files(const std::string& stem) {
  return {certs_dir() / (stem + ".crt"), certs_dir() / (stem + ".key")};
}

const Certs& certs() {
  static const Certs c{cert_files("fake-good"), cert_files("fake-wrong-name"),
                       cert_files("fake-rogue")};
  return c;
}

// Methods pgwarden cannot complete (static) or relay (passthrough): Kerberos V5, GSS, GSS
// continue, SSPI; `detail` is what the FATAL says.
void unsupported_methods(CellList& l, const Scripts& s, Mode mode, const std::string& detail) {
  const std::string step = "authentication";
  l.fail(mode, "method__kerberos_v5", s.then(s.after_startup(), {Send{auth(2), "KerberosV5"}}),
         step, detail);
  l.fail(mode, "method__gss", s.then(s.after_startup(), {Send{auth(7), "GSS"}}), step, detail);
  l.fail(mode, "method__gss_continue",
         s.then(s.after_startup(), {Send{auth(8, "token"), "GSSContinue"}}), step, detail);
  l.fail(mode, "method__sspi", s.then(s.after_startup(), {Send{auth(9), "SSPI"}}), step, detail);
}

// An authentication request that pgwarden (static) or the client (passthrough) answers,
// with the connection closed or reset right after it: the answer meets a dead connection.
void request_then_end(CellList& l, const Scripts& s, Mode mode) {
  struct Request {
    std::string name;
    Script script;
  };
  std::vector<Request> requests{
      {"md5_request", s.then(s.after_startup(), {Send{auth_md5(), "AuthenticationMD5Password"}})},
      {"sasl_request",
       s.then(s.after_startup(), {Send{auth_sasl(s.mechanisms()), "AuthenticationSASL"}})},
      {"sasl_continue",
       s.then(s.after_sasl_initial(), {sasl_continue("FakeServerNonce", std::string(kSalt),
                                                     std::string(kIterations), "SASLContinue")})},
  };
  if (upstream_tls(mode) && !passthrough(mode)) {
    requests.push_back(
        {"cleartext_request",
         s.then(s.after_startup(), {Send{auth_cleartext(), "AuthenticationCleartextPassword"}})});
  }
  for (const auto& r : requests) {
    l.fail(mode, r.name + "_then_close", s.then(r.script, {Close{}}), "authentication", kLost);
    l.fail(mode, r.name + "_then_reset", s.then(r.script, {Reset{}}), "authentication", kLost);
  }
}

std::vector<Cell> static_cells(Mode mode) {
  std::vector<Cell> v;
  CellList l(v);
  const Scripts s{mode, certs().good};
  const bool tls = upstream_tls(mode);
  const std::string authn = "authentication";
  const std::string startup = "startup";

  // --- controls ---
  l.ready(mode, "control_trust", s.then(s.after_auth_ok(), {Send{startup_burst(), "burst"}}));
  l.ready(mode, "control_scram",
          s.then(s.after_sasl_final(), {Send{auth_ok() + startup_burst(), "Ok + burst"}}));
  l.ready(mode, "control_md5",
          s.then(s.after_md5_password(), {Send{auth_ok() + startup_burst(), "Ok + burst"}}));
  if (tls) {
    l.ready(
        mode, "control_cleartext_over_tls",
        s.then(s.after_cleartext_password(), {Send{auth_ok() + startup_burst(), "Ok + burst"}}));
  }

  // --- SSLRequest and the TLS handshake ---
  if (tls) {
    const Script ssl{ExpectSslRequest{}};
    l.fail(mode, "ssl_answer__N", s.then(ssl, {Send{"N", "'N'"}}), "TLS", "does not support TLS");
    l.fail(mode, "ssl_answer__error_response",
           s.then(ssl, {Send{error_response("FATAL", "08P01", "unsupported frontend protocol"),
                             "ErrorResponse"}}),
           "TLS", "does not support TLS");
    l.fail(mode, "ssl_answer__garbage_byte", s.then(ssl, {Send{"x", "'x'"}}), "TLS",
           "does not support TLS");
    l.fail(mode, "ssl_answer__bytes_after_S",
           s.then(ssl, {Send{std::string("S\x16\x03\x01\x00\x05hello", 11), "'S' + 10 bytes"}}),
           "TLS", "unexpected data from the server after its TLS answer");
    l.fail(mode, "ssl_answer__error_after_S",
           s.then(ssl, {Send{"S" + error_response("FATAL", "XX000", "injected"),
                             "'S' + ErrorResponse"}}),
           "TLS", "unexpected data from the server after its TLS answer");
    l.fail(mode, "ssl_answer__close", s.then(ssl, {Close{}}), "TLS", "no answer to SSLRequest");
    l.fail(mode, "ssl_answer__reset", s.then(ssl, {Reset{}}), "TLS", "no answer to SSLRequest");
    l.fail(mode, "ssl_answer__hold_past_connect_timeout", s.then(ssl, {Hold{}}), "TLS", kTimedOut);

    const Script after_s{ExpectSslRequest{}, Send{"S", "'S'"}};
    l.fail(mode, "tls_handshake__close", s.then(after_s, {Close{}}), "TLS verification", "");
    l.fail(mode, "tls_handshake__reset", s.then(after_s, {Reset{}}), "TLS verification", "");
    l.fail(mode, "tls_handshake__hold_past_connect_timeout", s.then(after_s, {Hold{}}),
           "TLS verification", kTimedOut);
    l.fail(mode, "tls_handshake__plaintext_error_response",
           s.then(after_s, {ExpectByte{}, Send{error_response("FATAL", "08P01", "no TLS here"),
                                               "plaintext ErrorResponse"}}),
           "TLS verification", "");
    l.fail(mode, "tls_handshake__http_answer",
           s.then(after_s, {ExpectByte{}, Send{"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP 400"}}),
           "TLS verification", "");
    l.fail(mode, "tls_handshake__untrusted_ca", s.then(after_s, {StartTls{certs().rogue, true}}),
           "TLS verification", "");
    l.fail(mode, "tls_handshake__wrong_host_name",
           s.then(after_s, {StartTls{certs().wrong_name, true}}), "TLS verification", "");
  }

  // --- the generic faults at every step ---
  l.generic(mode, "first_auth_request", s.after_startup(), authn, false, true);
  l.generic(mode, "after_md5_password", s.after_md5_password(), authn, false, false);
  if (tls) {
    l.generic(mode, "after_cleartext_password", s.after_cleartext_password(), authn, false, false);
  }
  l.generic(mode, "after_sasl_initial_response", s.after_sasl_initial(), authn, false, false);
  l.generic(mode, "after_sasl_response", s.after_sasl_response(), authn, false, false);
  l.generic(mode, "after_sasl_final", s.after_sasl_final(), authn, false, tls);
  l.generic(mode, "after_authentication_ok", s.after_auth_ok(), startup, true, true);
  l.generic(mode, "after_parameter_status", s.after_parameter_status(), startup, true, false);
  l.generic(mode, "after_backend_key_data", s.after_backend_key_data(), startup, true, false);

  // --- a request, then the connection ends before pgwarden's answer: its write fails ---
  request_then_end(l, s, mode);

  // --- methods pgwarden cannot complete ---
  const std::string malformed = "malformed authentication request";
  unsupported_methods(l, s, mode, "authentication method pgwarden does not support");
  l.fail(mode, "method__scm_credential_6", s.then(s.after_startup(), {Send{auth(6), "code 6"}}),
         authn, malformed);
  l.fail(mode, "method__unknown_code_99", s.then(s.after_startup(), {Send{auth(99), "code 99"}}),
         authn, malformed);
  l.fail(mode, "method__negative_code", s.then(s.after_startup(), {Send{auth(-1), "code -1"}}),
         authn, malformed);
  l.fail(mode, "method__no_code",
         s.then(s.after_startup(), {Send{typed('R', std::string(2, '\0')), "R"}}), authn,
         malformed);
  l.fail(mode, "method__md5_without_salt",
         s.then(s.after_startup(), {Send{auth(5, "ab"), "MD5 with a 2-byte salt"}}), authn,
         malformed);
  l.fail(mode, "method__ok_with_trailing_bytes",
         s.then(s.after_startup(), {Send{auth(0, "junk"), "Ok + 4 bytes"}}), authn, malformed);
  if (!tls) {
    l.fail(mode, "method__cleartext_over_plaintext",
           s.then(s.after_startup(), {Send{auth_cleartext(), "AuthenticationCleartextPassword"}}),
           authn, "cleartext password over an unencrypted connection");
  }
  l.fail(mode, "protocol__negotiation_above_requested",
         s.then(s.after_startup(), {Send{negotiate_protocol_version((3u << 16) | 9, {}),
                                         "NegotiateProtocolVersion 3.9"}}),
         startup, "invalid protocol negotiation");
  l.fail(mode, "protocol__negotiation_twice",
         s.then(s.after_startup(),
                {Send{negotiate_protocol_version(3u << 16, {}), "NegotiateProtocolVersion 3.0"},
                 Send{negotiate_protocol_version(3u << 16, {}),
                      "NegotiateProtocolVersion 3.0 again"}}),
         startup, "invalid protocol negotiation");

  // --- SASL mechanism lists ---
  l.fail(
      mode, "sasl__empty_mechanism_list",
      s.then(s.after_startup(), {Send{auth(10, std::string(1, '\0')), "SASL with no mechanism"}}),
      authn, malformed);
  l.fail(mode, "sasl__only_unknown_mechanisms",
         s.then(s.after_startup(), {Send{auth_sasl({"SCRAM-SHA-1", "OAUTHBEARER"}), "SASL"}}),
         authn, "SCRAM: ");
  if (tls) {
    // Static credentials over TLS require channel binding: a server (or a machine in the
    // middle) that does not offer -PLUS is refused.
    l.fail(
        mode, "sasl__no_plus_over_tls",
        s.then(s.after_startup(), {Send{auth_sasl({std::string(kScram)}), "SASL without -PLUS"}}),
        authn, "SCRAM: ");
  } else {
    l.fail(mode, "sasl__only_plus_over_plaintext",
           s.then(s.after_startup(), {Send{auth_sasl({std::string(kPlus)}), "SASL -PLUS only"}}),
           authn, "SCRAM: ");
  }

  // --- SCRAM server-first-message out of range ---
  auto continue_with = [&](const std::string& name, std::string suffix, std::string salt,
                           std::string iterations) {
    l.fail(mode, "server_first__" + name,
           s.then(s.after_sasl_initial(),
                  {sasl_continue(std::move(suffix), std::move(salt), std::move(iterations),
                                 "SASLContinue (" + name + ")")}),
           authn, "SCRAM: ");
  };
  continue_with("iterations_0", "N1", std::string(kSalt), "0");
  continue_with("iterations_negative", "N1", std::string(kSalt), "-1");
  continue_with("iterations_above_client_limit", "N1", std::string(kSalt), "100001");
  continue_with("iterations_2_pow_31", "N1", std::string(kSalt), "2147483648");
  continue_with("iterations_2_pow_32", "N1", std::string(kSalt), "4294967296");
  continue_with("iterations_not_a_number", "N1", std::string(kSalt), "4096x");
  continue_with("iterations_leading_zero", "N1", std::string(kSalt), "04096");
  continue_with("iterations_empty", "N1", std::string(kSalt), "");
  continue_with("salt_empty", "N1", "", std::string(kIterations));
  continue_with("salt_not_base64", "N1", "!!notbase64!!", std::string(kIterations));
  continue_with("salt_too_long", "N1", std::string(400, 'A'), std::string(kIterations));
  continue_with("nonce_without_server_part", "", std::string(kSalt), std::string(kIterations));
  l.fail(mode, "server_first__foreign_nonce",
         s.then(s.after_sasl_initial(),
                {Send{auth_sasl_continue("r=NotYourNonceAtAll,s=" + std::string(kSalt) + ",i=4096"),
                      "SASLContinue with another nonce"}}),
         authn, "SCRAM: ");
  l.fail(mode, "server_first__mandatory_extension",
         s.then(s.after_sasl_initial(), {SendBuilt{[](const Exchange& x) {
                                                     return auth_sasl_continue(
                                                         "m=ext,r=" + x.client_nonce +
                                                         "N1,s=" + std::string(kSalt) + ",i=4096");
                                                   },
                                                   "SASLContinue with m="}}),
         authn, "SCRAM: ");
  l.fail(mode, "server_first__garbage",
         s.then(s.after_sasl_initial(),
                {Send{auth_sasl_continue(std::string("\xff\xfe garbage", 10)), "garbage"}}),
         authn, "SCRAM: ");
  l.fail(mode, "server_first__sasl_final_instead",
         s.then(s.after_sasl_initial(), {Send{auth_sasl_final("v=AAAA"), "SASLFinal"}}), authn,
         "SASLFinal out of order");
  l.fail(mode, "server_first__ok_instead",
         s.then(s.after_sasl_initial(), {Send{auth_ok(), "AuthenticationOk"}}), authn,
         "without proving its identity");
  l.fail(mode, "server_first__sasl_restarted",
         s.then(s.after_sasl_initial(), {Send{auth_sasl(s.mechanisms()), "AuthenticationSASL"}}),
         authn, "restarted SASL");
  l.fail(mode, "server_first__md5_instead_of_continue",
         s.then(s.after_sasl_initial(), {Send{auth_md5(), "AuthenticationMD5Password"}}), authn,
         "");

  // --- SCRAM server-final-message ---
  l.fail(mode, "server_final__wrong_signature",
         s.then(s.after_sasl_response(),
                {Send{auth_sasl_final("v=" + std::string(43, 'A') + "="), "wrong v="}}),
         authn, "SCRAM: ");
  l.fail(mode, "server_final__server_error",
         s.then(s.after_sasl_response(), {Send{auth_sasl_final("e=invalid-proof"), "e="}}), authn,
         "SCRAM: ");
  l.fail(mode, "server_final__garbage",
         s.then(s.after_sasl_response(), {Send{auth_sasl_final("\x01\x02junk"), "garbage"}}), authn,
         "SCRAM: ");
  l.fail(mode, "server_final__ok_without_sasl_final",
         s.then(s.after_sasl_response(), {Send{auth_ok(), "AuthenticationOk"}}), authn,
         "without proving its identity");
  l.fail(mode, "server_final__sasl_continue_again",
         s.then(s.after_sasl_response(),
                {Send{auth_sasl_continue("r=x,s=" + std::string(kSalt) + ",i=4096"),
                      "SASLContinue again"}}),
         authn, "SCRAM: ");
  l.fail(mode, "server_final__second_sasl_final",
         s.then(s.after_sasl_final(), {Send{auth_sasl_final("v=AAAA"), "SASLFinal again"}}), authn,
         "");

  // --- after AuthenticationOk ---
  l.fail(mode, "startup__authentication_request_after_ok",
         s.then(s.after_auth_ok(), {Send{auth_md5(), "AuthenticationMD5Password"}}), startup,
         "unexpected message 'R'");
  l.fail(mode, "startup__second_authentication_ok",
         s.then(s.after_auth_ok(), {Send{auth_ok(), "AuthenticationOk"}}), startup,
         "unexpected message 'R'");
  l.fail(mode, "startup__backend_key_data_2_byte_secret",
         s.then(s.after_parameter_status(), {Send{backend_key_data(7, "ab"), "BackendKeyData"}}),
         startup, "invalid BackendKeyData");
  l.fail(mode, "startup__backend_key_data_300_byte_secret",
         s.then(s.after_parameter_status(),
                {Send{backend_key_data(7, std::string(300, 's')), "BackendKeyData"}}),
         startup, "invalid BackendKeyData");
  l.fail(mode, "startup__negotiate_protocol_version_after_ok",
         s.then(s.after_auth_ok(),
                {Send{negotiate_protocol_version(3u << 16, {}), "NegotiateProtocolVersion"}}),
         startup, "unexpected message 'v'");
  l.fail(mode, "startup__ready_for_query_truncated",
         s.then(s.after_backend_key_data(),
                {Send{typed_with_length('Z', 5, ""), "ReadyForQuery without its status"}, Close{}}),
         startup, kLost);
  l.relayed(mode, "startup__error_after_notice",
            s.then(s.after_auth_ok(),
                   {Send{typed('N', "SNOTICE\0C00000\0Mhello\0\0"s) +
                             error_response("FATAL", "53300", "too many connections (fake)"),
                         "NoticeResponse + ErrorResponse"}}),
            "53300", "too many connections (fake)");
  return v;
}

std::vector<Cell> passthrough_cells(Mode mode) {
  std::vector<Cell> v;
  CellList l(v);
  const Scripts s{mode, certs().good};
  const bool tls = upstream_tls(mode);
  const std::string authn = "authentication";
  const std::string startup = "startup";

  l.ready(mode, "control_trust", s.then(s.after_auth_ok(), {Send{startup_burst(), "burst"}}));
  l.ready(mode, "control_md5",
          s.then(s.after_md5_password(), {Send{auth_ok() + startup_burst(), "Ok + burst"}}));
  l.ready(mode, "control_scram",
          s.then(s.after_relayed_sasl_final(), {Send{auth_ok() + startup_burst(), "Ok + burst"}}));

  if (tls) {
    const Script ssl{ExpectSslRequest{}};
    l.fail(mode, "ssl_answer__N", s.then(ssl, {Send{"N", "'N'"}}), "TLS", "does not support TLS");
    l.fail(mode, "ssl_answer__bytes_after_S",
           s.then(ssl, {Send{std::string("S\x16\x03\x01\x00\x05hello", 11), "'S' + 10 bytes"}}),
           "TLS", "unexpected data from the server after its TLS answer");
    l.fail(mode, "ssl_answer__close", s.then(ssl, {Close{}}), "TLS", "no answer to SSLRequest");
    const Script after_s{ExpectSslRequest{}, Send{"S", "'S'"}};
    l.fail(mode, "tls_handshake__reset", s.then(after_s, {Reset{}}), "TLS verification", "");
    l.fail(mode, "tls_handshake__untrusted_ca", s.then(after_s, {StartTls{certs().rogue, true}}),
           "TLS verification", "");
  }

  // With passthrough, the server's ErrorResponse is its verdict on the client's credentials
  // and is relayed unchanged at every step.
  l.generic(mode, "first_auth_request", s.after_startup(), authn, true, !tls);
  l.generic(mode, "after_md5_password", s.after_md5_password(), authn, true, !tls);
  l.generic(mode, "after_sasl_initial_response", s.after_sasl_initial(), authn, true, false);
  l.generic(mode, "after_sasl_response", s.after_sasl_response(), authn, true, false);
  l.generic(mode, "after_sasl_final", s.after_relayed_sasl_final(), authn, true, false);
  l.generic(mode, "after_authentication_ok", s.after_auth_ok(), startup, true, !tls);
  l.generic(mode, "after_backend_key_data", s.after_backend_key_data(), startup, true, false);

  request_then_end(l, s, mode);

  const std::string malformed = "malformed authentication request";
  unsupported_methods(l, s, mode, "authentication method pgwarden cannot relay");
  l.fail(mode, "method__unknown_code_99", s.then(s.after_startup(), {Send{auth(99), "code 99"}}),
         authn, malformed);
  l.fail(mode, "method__cleartext_without_client_tls",
         s.then(s.after_startup(), {Send{auth_cleartext(), "AuthenticationCleartextPassword"}}),
         authn, "relays only when both connections use TLS");
  l.fail(mode, "sasl__only_plus",
         s.then(s.after_startup(), {Send{auth_sasl({std::string(kPlus)}), "SASL -PLUS only"}}),
         authn, "no SASL mechanism pgwarden can relay");
  l.fail(
      mode, "sasl__empty_mechanism_list",
      s.then(s.after_startup(), {Send{auth(10, std::string(1, '\0')), "SASL with no mechanism"}}),
      authn, malformed);
  l.fail(mode, "startup__backend_key_data_2_byte_secret",
         s.then(s.after_auth_ok(), {Send{backend_key_data(7, "ab"), "BackendKeyData"}}), startup,
         "invalid BackendKeyData");
  return v;
}

std::vector<Cell> other_cells() {
  std::vector<Cell> v;
  CellList l(v);
  // Nothing listens at the backend's address.
  l.fail(Mode::kRefused, "connect__refused", {}, "connect", "refused");
  // The listener's startup_timeout (1 s) ends the handshake while the backend's
  // connect_timeout (10 s) is still running.
  const Scripts s{Mode::kSlow, certs().good};
  l.fail(Mode::kSlow, "first_auth_request__hold_past_startup_timeout",
         s.then(s.after_startup(), {Hold{}}), "authentication", "startup_timeout");
  l.fail(Mode::kSlow, "after_authentication_ok__hold_past_startup_timeout",
         s.then(s.after_auth_ok(), {Hold{}}), "startup", "startup_timeout");
  return v;
}

const std::vector<Cell>& all_cells() {
  static const std::vector<Cell> cells = [] {
    std::vector<Cell> v;
    for (auto mode : {Mode::kStaticTls, Mode::kStaticPlain}) {
      auto c = static_cells(mode);
      v.insert(v.end(), c.begin(), c.end());
    }
    for (auto mode : {Mode::kPassthrough, Mode::kPassthroughTls}) {
      auto c = passthrough_cells(mode);
      v.insert(v.end(), c.begin(), c.end());
    }
    auto c = other_cells();
    v.insert(v.end(), c.begin(), c.end());
    return v;
  }();
  return cells;
}

// ---------------------------------------------------------------------------- the client

struct ClientOutcome {
  std::optional<ServerError> error;
  bool ready = false;
  bool closed = false;
  std::string unanswered;  // an authentication request the client could not answer
};

// Logs in through pgwarden and answers what a passthrough listener relays: any password,
// an MD5 digest, and a SCRAM exchange with a made-up proof (the fake does not check it).
ClientOutcome drive_login(RawClient& c) {
  ClientOutcome out;
  const std::string nonce = "ClientNonceFaultMatrix0123";
  for (;;) {
    auto m = c.read_message();
    if (!m) {
      out.closed = true;
      return out;
    }
    if (m->type == 'E') {
      auto e = wire::parse_error_response(m->body);
      if (!e) {
        throw FixtureError("undecodable ErrorResponse from pgwarden");
      }
      out.error = to_server_error(*e);
      return out;
    }
    if (m->type == 'Z') {
      out.ready = true;
      return out;
    }
    if (m->type != 'R') {
      continue;  // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion
    }
    const std::string body(reinterpret_cast<const char*>(m->body.data()), m->body.size());
    const auto code = body.size() >= 4
                          ? (static_cast<std::uint32_t>(static_cast<unsigned char>(body[0])) << 24 |
                             static_cast<std::uint32_t>(static_cast<unsigned char>(body[1])) << 16 |
                             static_cast<std::uint32_t>(static_cast<unsigned char>(body[2])) << 8 |
                             static_cast<unsigned char>(body[3]))
                          : 0xffffffffu;
    switch (code) {
      case 0:   // AuthenticationOk
      case 12:  // SASLFinal
        break;
      case 3:
        c.write_message('p', std::string("client-password") + '\0');
        break;
      case 5:
        c.write_message('p', "md5" + std::string(32, 'a') + '\0');
        break;
      case 10: {
        const std::string first = "n,,n=,r=" + nonce;
        c.write_message('p', std::string(kScram) + '\0' +
                                 be32(static_cast<std::uint32_t>(first.size())) + first);
        break;
      }
      case 11: {
        // Echo the server's nonce; the proof is made up.
        const std::string data = body.substr(4);
        const auto r = data.find("r=");
        const std::string server_nonce =
            r == std::string::npos ? nonce : data.substr(r + 2, data.find(',', r) - r - 2);
        c.write_message('p', "c=biws,r=" + server_nonce + ",p=" + std::string(43, 'B') + "=");
        break;
      }
      default:
        out.unanswered = "authentication request code " + std::to_string(code);
        return out;
    }
  }
}

// ---------------------------------------------------------------------------- fixture

class UpstreamFaults : public ::testing::TestWithParam<Mode> {
 protected:
  static void SetUpTestSuite() {
    try {
      build();
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    healthy_.reset();
    proxy_.reset();
    fake_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(certs_dir(), ignored);
  }

  void SetUp() override {
    if (!setup_error_.empty()) {
      GTEST_FAIL() << "suite setup failed: " << setup_error_;
    }
  }

  // Number of failures recorded so far in the running test.
  static int failures() {
    const auto* result = ::testing::UnitTest::GetInstance()->current_test_info()->result();
    int n = 0;
    for (int i = 0; i < result->total_part_count(); ++i) {
      n += result->GetTestPartResult(i).failed() ? 1 : 0;
    }
    return n;
  }

  // After a cell: if pgwarden died (a dying process may still run for a moment while a
  // sanitizer report prints, so a cell that failed waits for it), report it with its log and
  // start it again, so that every later cell reports on its own.
  static void check_proxy_survived(const Cell& k, bool cell_failed) {
    if (!proxy_) {
      return;
    }
    const bool dead = cell_failed ? proxy_->wait_exit(3s).has_value() : !proxy_->running();
    if (!dead) {
      return;
    }
    ADD_FAILURE() << "cell " << k.name << ": pgwarden died; " << death_report();
    reset_proxy();
    try {
      start_proxy();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "could not restart pgwarden: " << e.what();
    }
  }

  // The exit status and the interesting part of pgwarden's log: from a sanitizer report on,
  // or its tail.
  static std::string death_report() {
    const auto status = proxy_->wait_exit(5s);
    const std::string log = proxy_->log();
    std::size_t from = log.find("==ERROR: ");
    if (from == std::string::npos) {
      from = log.find("runtime error: ");
    }
    if (from == std::string::npos) {
      from = log.size() > 6000 ? log.size() - 6000 : 0;
    } else {
      from = log.rfind('\n', from) == std::string::npos ? 0 : log.rfind('\n', from) + 1;
    }
    // The session lines just before the report say which step it was.
    std::size_t context = from;
    for (int lines = 0; lines < 8 && context > 0; ++lines) {
      context = log.rfind('\n', context - 1);
      if (context == std::string::npos) {
        context = 0;
      }
    }
    return "exit status " + (status ? std::to_string(*status) : std::string("?")) + "; its log:\n" +
           log.substr(context, 12000);
  }

  static void reset_proxy() {
    healthy_.reset();
    proxy_.reset();
  }

  static void build() {
    PgCluster& pg = shared_cluster();
    role_ = unique_name("faults_app");
    pg.create_role(RoleSpec{role_, AuthMethod::kScram, std::string(kRealPassword), false, ""});
    std::filesystem::remove_all(certs_dir());
    std::filesystem::create_directories(certs_dir());
    std::filesystem::permissions(certs_dir(), std::filesystem::perms::owner_all);
    auto ca = CertAuthority::create(certs_dir(), "faults-ca", "pgwarden faults CA");
    auto rogue = CertAuthority::create(certs_dir(), "rogue-ca", "pgwarden faults rogue CA");
    ca_cert_ = ca.cert();
    ca.issue(loopback_server_spec(), "fake-good");
    ca.issue(LeafSpec{"wrong.example", {"wrong.example"}, {}, {}, CertUsage::kServer},
             "fake-wrong-name");
    rogue.issue(loopback_server_spec(), "fake-rogue");
    fake_ = std::make_unique<FakeUpstream>();
    closed_port_ = pick_free_port();
    std::vector<std::uint16_t> taken{fake_->port(), closed_port_};
    for (auto* port : {&healthy_port_, &static_tls_port_, &static_plain_port_, &pass_port_,
                       &pass_tls_port_, &slow_port_, &refused_port_}) {
      do {
        *port = pick_free_port();
      } while (std::count(taken.begin(), taken.end(), *port) > 0);
      taken.push_back(*port);
    }
    start_proxy();
  }

  static std::string config_text() {
    PgCluster& pg = shared_cluster();
    auto listener = [](const std::string& name, std::uint16_t port, const std::string& backend,
                       const std::string& extra) {
      return "[[listener]]\nname = " + toml_quote(name) +
             "\nlisten = " + toml_quote("127.0.0.1:" + std::to_string(port)) +
             "\nbackend = " + toml_quote(backend) + "\ntls = \"disable\"\n" + extra + "\n";
    };
    const std::string trust = "auth = [\"trust\"]\n";
    const std::string pass = "auth = [\"passthrough\"]\nauth_failure_limit = 0\n";
    const std::string fake_address =
        "address = " + toml_quote("127.0.0.1:" + std::to_string(fake_->port())) + "\n";
    const std::string verify_real =
        "tls = \"verify-full\"\ntls_ca = " + toml_quote(pg.ca_cert()) + "\n";
    const std::string verify = "tls = \"verify-full\"\ntls_ca = " + toml_quote(ca_cert_) + "\n";
    const std::string plain = "tls = \"disable\"\n";
    const std::string fake_static =
        "credentials = \"static\"\nuser = \"fake\"\npassword = \"${FAULTS_FAKE_PW}\"\n";
    const std::string fast = "connect_timeout = \"1s\"\n";

    std::string t = "[server]\nworkers = 2\nshutdown_grace = \"1s\"\nlog_level = \"debug\"\n\n";
    t += listener("healthy", healthy_port_, "real", trust);
    t += listener("static_tls", static_tls_port_, "fake_static_tls", trust);
    t += listener("static_plain", static_plain_port_, "fake_static_plain", trust);
    t += listener("passthrough", pass_port_, "fake_pass", pass);
    t += listener("passthrough_tls", pass_tls_port_, "fake_pass_tls", pass);
    t += listener("slow", slow_port_, "fake_slow", trust + "startup_timeout = \"1s\"\n");
    t += listener("refused", refused_port_, "nobody", trust);
    t += "[backend.real]\naddress = " + toml_quote("localhost:" + std::to_string(pg.port())) +
         "\n" + verify_real + "credentials = \"static\"\nuser = " + toml_quote(role_) +
         "\npassword = \"${FAULTS_REAL_PW}\"\n\n";
    t += "[backend.fake_static_tls]\n" + fake_address + verify + fake_static + fast + "\n";
    t += "[backend.fake_static_plain]\n" + fake_address + plain + fake_static + fast + "\n";
    t += "[backend.fake_pass]\n" + fake_address + plain + "credentials = \"passthrough\"\n" + fast +
         "\n";
    t += "[backend.fake_pass_tls]\n" + fake_address + verify + "credentials = \"passthrough\"\n" +
         fast + "\n";
    t += "[backend.fake_slow]\n" + fake_address + plain + fake_static +
         "connect_timeout = \"10s\"\n\n";
    t += "[backend.nobody]\naddress = " + toml_quote("127.0.0.1:" + std::to_string(closed_port_)) +
         "\n" + plain + fake_static + fast + "\n";
    return t;
  }

  static void start_proxy() {
    PgwardenOptions o;
    o.config = config_text();
    o.env = {{"FAULTS_FAKE_PW", std::string(kFakePassword)},
             {"FAULTS_REAL_PW", std::string(kRealPassword)}};
    o.ports = {healthy_port_,  static_tls_port_, static_plain_port_, pass_port_,
               pass_tls_port_, slow_port_,       refused_port_};
    proxy_ = PgwardenProcess::start(std::move(o));
    healthy_ = connect_or_throw(healthy_conninfo());
    healthy_pid_ = query_value(healthy_.get(), "SELECT pg_backend_pid()");
  }

  static ConnInfo healthy_conninfo() {
    ConnInfo ci = shared_cluster().conninfo("faults_client", "", HostForm::kIpv4);
    ci.set("port", std::to_string(healthy_port_));
    ci.set("sslmode", "disable");
    ci.erase("sslrootcert");
    ci.set("application_name", "upstream_faults_healthy");
    return ci;
  }

  static std::uint16_t port_of(Mode m) {
    switch (m) {
      case Mode::kStaticTls:
        return static_tls_port_;
      case Mode::kStaticPlain:
        return static_plain_port_;
      case Mode::kPassthrough:
        return pass_port_;
      case Mode::kPassthroughTls:
        return pass_tls_port_;
      case Mode::kSlow:
        return slow_port_;
      case Mode::kRefused:
        return refused_port_;
    }
    return 0;
  }

  static void run_cell(const Cell& k) {
    SCOPED_TRACE("cell " + k.name);
    ASSERT_NE(proxy_, nullptr);
    fake_->set_script(k.script);

    auto c = RawClient::dial("127.0.0.1", port_of(k.mode));
    c->set_read_timeout(5s);
    c->write_startup({{"user", "faults_client"},
                      {"database", "postgres"},
                      {"application_name", "upstream_faults_test"}});
    const ClientOutcome got = drive_login(*c);
    const std::string seen = got.error ? "FATAL? severity=" + got.error->severity + " " +
                                             got.error->sqlstate + " \"" + got.error->message + "\""
                             : got.ready  ? "ReadyForQuery"
                             : got.closed ? "a close without ErrorResponse"
                                          : "unanswered " + got.unanswered;

    switch (k.want) {
      case Want::kReady:
        ASSERT_TRUE(got.ready) << "the control did not reach ReadyForQuery; got " << seen;
        c->write_terminate();
        break;
      case Want::kUpstreamFailure: {
        ASSERT_TRUE(got.error.has_value()) << "expected FATAL 08006; got " << seen;
        EXPECT_EQ(got.error->severity, "FATAL") << seen;
        EXPECT_EQ(got.error->sqlstate, "08006") << seen;
        const std::string prefix = "could not connect to the upstream server: " + k.step + ": ";
        EXPECT_TRUE(got.error->message.starts_with(prefix))
            << "the message does not name the step '" << k.step << "': " << seen;
        EXPECT_TRUE(contains(got.error->message, k.detail))
            << "the message does not say '" << k.detail << "': " << seen;
        EXPECT_TRUE(c->wait_closed(5s)) << "the connection stayed open after the FATAL";
        break;
      }
      case Want::kServerError:
        ASSERT_TRUE(got.error.has_value())
            << "expected the server's own " << k.sqlstate << "; got " << seen;
        EXPECT_EQ(got.error->severity, "FATAL") << seen;
        EXPECT_EQ(got.error->sqlstate, k.sqlstate) << seen;
        EXPECT_EQ(got.error->message, k.message) << seen;
        EXPECT_TRUE(c->wait_closed(5s)) << "the connection stayed open after the FATAL";
        break;
    }
    c.reset();

    // The fault was reached, and pgwarden closed its upstream connection.
    if (k.mode != Mode::kRefused) {
      auto served = fake_->wait_served(10s);
      ASSERT_TRUE(served.has_value()) << "the fake upstream never finished its script (accepted "
                                      << fake_->accepted() << " connection(s))";
      EXPECT_TRUE(served->completed())
          << "the fake upstream's script did not run as written: " << served->error << "\ntrace:\n"
          << served->trace;
    }

    // Nothing else was affected.
    ASSERT_TRUE(proxy_->running()) << "pgwarden is gone";
    auto echo = run_query(healthy_.get(), "SELECT $1::text", {k.name});
    ASSERT_TRUE(echo.ok()) << "the healthy session broke: " << echo.sqlstate << " " << echo.error;
    EXPECT_EQ(echo.rows.at(0).at(0), std::optional<std::string>(k.name));
    EXPECT_EQ(query_value(healthy_.get(), "SELECT pg_backend_pid()"), healthy_pid_)
        << "the healthy session is on another upstream backend";
    auto fresh = try_connect(healthy_conninfo(), 10s);
    ASSERT_TRUE(fresh.ok()) << "a fresh healthy session failed: " << fresh.error;
    EXPECT_EQ(query_value(fresh.conn.get(), "SELECT 'fresh'"), "fresh");
  }

  static inline std::string setup_error_;
  static inline std::string role_;
  static inline std::filesystem::path ca_cert_;
  static inline std::unique_ptr<FakeUpstream> fake_;
  static inline std::unique_ptr<PgwardenProcess> proxy_;
  static inline PgConnPtr healthy_;
  static inline std::string healthy_pid_;
  static inline std::uint16_t closed_port_ = 0;
  static inline std::uint16_t healthy_port_ = 0;
  static inline std::uint16_t static_tls_port_ = 0;
  static inline std::uint16_t static_plain_port_ = 0;
  static inline std::uint16_t pass_port_ = 0;
  static inline std::uint16_t pass_tls_port_ = 0;
  static inline std::uint16_t slow_port_ = 0;
  static inline std::uint16_t refused_port_ = 0;
};

// One test per mode, each running every cell of that mode on the shared pgwarden: a failure
// names its cell, and a summary lists the cells that failed. (One test per cell would cost a
// process, a cluster start and a pgwarden start per cell under ctest.) To run some cells only,
// set PGWARDEN_FAULTS_CELLS to a part of their names.
TEST_P(UpstreamFaults, EveryCellGetsItsFatalAndNothingElseIsAffected) {
  const char* only = std::getenv("PGWARDEN_FAULTS_CELLS");
  std::vector<std::string> failed;
  int ran = 0;
  for (const auto& k : all_cells()) {
    if (k.mode != GetParam() || (only != nullptr && !contains(k.name, only))) {
      continue;
    }
    ++ran;
    const int before = failures();
    try {
      run_cell(k);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cell " << k.name << ": " << e.what();
    }
    check_proxy_survived(k, failures() > before);
    if (failures() > before) {
      failed.push_back(k.name);
    }
  }
  if (only == nullptr) {
    EXPECT_GT(ran, 0) << "no cell for this mode";
  }
  if (!failed.empty()) {
    std::string list;
    for (const auto& name : failed) {
      list += "\n  " + name;
    }
    ADD_FAILURE() << failed.size() << " of " << ran << " cells failed:" << list;
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, UpstreamFaults,
                         ::testing::Values(Mode::kStaticTls, Mode::kStaticPlain, Mode::kPassthrough,
                                           Mode::kPassthroughTls, Mode::kSlow, Mode::kRefused),
                         [](const ::testing::TestParamInfo<Mode>& param) {
                           return mode_name(param.param);
                         });

}  // namespace
}  // namespace pgwarden::fixture

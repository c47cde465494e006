// Server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS as PostgreSQL implements it
// (auth-scram.c), as a sans-I/O state machine: decoded SASL payloads in, payloads to send out.
//
//   WaitClientFirst --ClientFirst--> WaitClientFinal --ClientFinal--> Complete
//          any failure, or a message the state does not expect --> Failed (terminal)
//
// The owner advertises mechanisms() in AuthenticationSASL, feeds the SASLInitialResponse as
// ClientFirst (mechanism + data; a response without initial data is refused) and sends the
// reply in AuthenticationSASLContinue, then feeds the SASLResponse as ClientFinal and, on
// success, sends the reply in AuthenticationSASLFinal followed by AuthenticationOk. Any error
// means: send FATAL 28P01 and close. The CryptoError is for the log only and never contains
// secrets or client bytes; the exchange is Failed and all key material is wiped.
//
// Unknown users: construct with verifier = std::nullopt. The exchange then runs against
// mock_scram_verifier(mock_secret, user, mock_iterations, mock_salt_length) and performs the
// same work, and the final step fails with CryptoError::BadProof exactly as a wrong password
// does (is_mock() tells the log). mock_secret must be stable across restarts (the server uses
// the key its users file derives), or a changing salt would tell unknown users apart; a key
// shorter than kMinMockSecret fails the exchange closed.
//
// Checks, each with the threat it answers:
//   - the mechanism must be one that was advertised; -PLUS only when channel-binding data
//     (the tls-server-end-point hash of our certificate) was given, i.e. TLS is active;
//   - gs2 flag: 'p=tls-server-end-point' only with -PLUS, and -PLUS only with 'p'; 'y' while
//     -PLUS was advertised means a man in the middle removed -PLUS from the list (downgrade);
//   - no authorization identity ('a=', as PostgreSQL), no mandatory extension ('m=');
//   - client nonce printable and bounded; the client-final nonce must be exactly client nonce
//     followed by our server nonce (18 random bytes, base64) - no replay of another exchange;
//   - 'c=' must decode to exactly the gs2 header plus the channel-binding data (constant
//     time), which ties the proof to this TLS connection;
//   - the proof must be 32 bytes and verify against StoredKey (CRYPTO_memcmp);
//   - messages are bounded by kMaxScramMessage, contain no NUL, and every attribute is parsed
//     strictly in order; standard attribute names may not reappear as extensions.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crypto/error.h"
#include "crypto/scram.h"

namespace pgwarden::crypto {

struct ScramServerOptions {
  // tls-server-end-point hash of the certificate presented to this client; set exactly
  // when the connection is TLS and the hash is defined. Enables SCRAM-SHA-256-PLUS.
  std::optional<std::vector<std::byte>> channel_binding;
  // Iteration count and salt length that mock verifiers claim: the users file's most common
  // ones (config::UsersFile::mock), so that an unknown user looks like a known one.
  std::uint32_t mock_iterations = kDefaultScramIterations;
  std::size_t mock_salt_length = kScramSaltLength;
  // Tests only: the server part of the nonce instead of a random one.
  std::string nonce_for_testing;
};

class ScramServer {
 public:
  enum class State : std::uint8_t { WaitClientFirst, WaitClientFinal, Complete, Failed };

  // SASLInitialResponse: the selected mechanism and the client-first-message.
  struct ClientFirst {
    std::string_view mechanism;
    std::span<const std::byte> data;
  };
  // SASLResponse: the client-final-message.
  struct ClientFinal {
    std::span<const std::byte> data;
  };
  using Input = std::variant<ClientFirst, ClientFinal>;

  struct Reply {
    std::string data;    // server-first-message or server-final-message
    bool final = false;  // true: send as AuthenticationSASLFinal, then AuthenticationOk
  };

  ScramServer(std::optional<ScramVerifier> verifier, std::string_view user,
              std::span<const std::byte> mock_secret, ScramServerOptions options = {});
  ~ScramServer();
  ScramServer(const ScramServer&) = delete;
  ScramServer& operator=(const ScramServer&) = delete;
  ScramServer(ScramServer&&) = default;
  ScramServer& operator=(ScramServer&&) = default;

  // Mechanisms to advertise, in order: SCRAM-SHA-256-PLUS first when channel binding is
  // available, then SCRAM-SHA-256.
  std::span<const std::string_view> mechanisms() const;

  // The transition function.
  std::expected<Reply, CryptoError> step(const Input& input);
  std::expected<Reply, CryptoError> on_client_first(std::string_view mechanism,
                                                    std::span<const std::byte> data) {
    return step(ClientFirst{mechanism, data});
  }
  std::expected<Reply, CryptoError> on_client_final(std::span<const std::byte> data) {
    return step(ClientFinal{data});
  }

  State state() const { return state_; }
  bool complete() const { return state_ == State::Complete; }
  bool is_mock() const { return mock_; }
  // After ClientFirst: whether the client chose SCRAM-SHA-256-PLUS.
  bool channel_binding_used() const { return plus_; }

 private:
  std::expected<Reply, CryptoError> handle_client_first(const ClientFirst& in);
  std::expected<Reply, CryptoError> handle_client_final(const ClientFinal& in);
  std::unexpected<CryptoError> fail(CryptoError e);
  void wipe_secrets();

  State state_ = State::WaitClientFirst;
  ScramVerifier verifier_;
  bool mock_ = false;
  bool plus_ = false;
  std::optional<std::vector<std::byte>> channel_binding_;
  std::string nonce_for_testing_;
  std::string gs2_header_;         // "n,,", "y,," or "p=tls-server-end-point,,"
  std::string client_first_bare_;  // for AuthMessage
  std::string server_first_;       // for AuthMessage
  std::string nonce_;              // client nonce + server nonce
};

}  // namespace pgwarden::crypto

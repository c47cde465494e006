// pgwarden's own login to an upstream server with static credentials (SPEC section 4), as a
// sans-I/O state machine: the server's authentication messages in, the frontend messages to
// send out. It ends at AuthenticationOk, or fails with a reason that names the step and
// never contains a secret.
//
// Methods: SCRAM-SHA-256, with -PLUS channel binding required whenever the upstream leg is
// TLS (the server's signature is always verified by crypto::ScramClient); MD5; cleartext
// only over TLS. Anything else (Kerberos, GSS, SSPI) is refused: pgwarden cannot complete it
// and must not fall back to something weaker. The password is held by reference and never
// copied into anything but the message being sent.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/scram_client.h"
#include "wire/bytes.h"

namespace pgwarden::session {

struct UpstreamAuthOptions {
  std::string user;
  std::string_view password;  // must outlive the UpstreamAuth
  bool tls_active = false;
  // tls_server_end_point() of the upstream certificate when TLS is active.
  std::optional<std::vector<std::byte>> channel_binding_data;
  // SCRAM keys already derived from `password` (see crypto::ScramKeyCache); may be null.
  crypto::ScramKeyCache* scram_key_cache = nullptr;
};

class UpstreamAuth {
 public:
  explicit UpstreamAuth(UpstreamAuthOptions options);
  ~UpstreamAuth();
  UpstreamAuth(const UpstreamAuth&) = delete;
  UpstreamAuth& operator=(const UpstreamAuth&) = delete;

  // One authentication request ('R' body) from the server. Appends the reply, if one is due,
  // to `out`. Returns true once AuthenticationOk has arrived.
  std::expected<bool, std::string> on_authentication(wire::Bytes body, wire::ByteVector& out);

  // The method the server chose ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "md5", "password",
  // "trust" when the server asked for nothing), for the audit log.
  std::string_view method() const { return method_; }

 private:
  UpstreamAuthOptions options_;
  std::unique_ptr<crypto::ScramClient> scram_;
  std::string method_ = "trust";
  bool expect_final_ = false;
  bool done_ = false;
};

}  // namespace pgwarden::session

#include "session/upstream_auth.h"

#include <openssl/crypto.h>

#include <type_traits>
#include <variant>

#include "crypto/md5.h"
#include "wire/backend.h"
#include "wire/frontend.h"

namespace pgwarden::session {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};

std::unexpected<std::string> fail(std::string reason) {
  return std::unexpected(std::move(reason));
}

}  // namespace

UpstreamAuth::UpstreamAuth(UpstreamAuthOptions options) : options_(std::move(options)) {}
UpstreamAuth::~UpstreamAuth() = default;

std::expected<bool, std::string> UpstreamAuth::on_authentication(wire::Bytes body,
                                                                 wire::ByteVector& out) {
  if (done_) {
    return fail("server sent an authentication request after AuthenticationOk");
  }
  auto request = wire::parse_authentication(body);
  if (!request) {
    return fail("malformed authentication request from the server");
  }
  return std::visit(
      Overloaded{
          [&](const wire::AuthenticationOk&) -> std::expected<bool, std::string> {
            if (scram_ && !scram_->complete()) {
              // Without the server signature the server was never proven to know the key.
              return fail("server ended SCRAM without proving its identity");
            }
            done_ = true;
            return true;
          },
          [&](const wire::AuthenticationCleartextPassword&) -> std::expected<bool, std::string> {
            if (!options_.tls_active) {
              return fail(
                  "server asked for a cleartext password over an unencrypted connection; "
                  "refused");
            }
            method_ = "password";
            wire::encode(wire::PasswordMessage{options_.password}, out);
            return false;
          },
          [&](const wire::AuthenticationMd5Password& m) -> std::expected<bool, std::string> {
            method_ = "md5";
            std::string response =
                crypto::md5_auth_response(options_.password, options_.user, m.salt);
            if (response.empty()) {
              return fail("MD5 is not available in this OpenSSL build");
            }
            wire::encode(wire::PasswordMessage{response}, out);
            OPENSSL_cleanse(response.data(), response.size());
            return false;
          },
          [&](const wire::AuthenticationSasl& m) -> std::expected<bool, std::string> {
            if (scram_) {
              return fail("server restarted SASL authentication");
            }
            crypto::ScramClientOptions opts;
            opts.tls_active = options_.tls_active;
            opts.channel_binding_data = options_.channel_binding_data;
            opts.key_cache = options_.scram_key_cache;
            // Over TLS the binding to the verified certificate is required: a server (or a
            // man in the middle) that does not offer -PLUS is refused, not tolerated.
            opts.channel_binding = options_.tls_active ? crypto::ChannelBindingPolicy::Require
                                                       : crypto::ChannelBindingPolicy::Disable;
            scram_ = std::make_unique<crypto::ScramClient>(options_.password, std::move(opts));
            auto reply = scram_->start(m.mechanisms);
            if (!reply) {
              return fail(std::string("SCRAM: ") + std::string(crypto::to_string(reply.error())));
            }
            method_ = std::string(reply->mechanism);
            wire::encode(wire::SaslInitialResponse{reply->mechanism, wire::as_bytes(reply->data)},
                         out);
            return false;
          },
          [&](const wire::AuthenticationSaslContinue& m) -> std::expected<bool, std::string> {
            if (!scram_) {
              return fail("server sent SASLContinue without SASL");
            }
            auto reply = scram_->on_server_first(m.data);
            if (!reply) {
              return fail(std::string("SCRAM: ") + std::string(crypto::to_string(reply.error())));
            }
            wire::encode(wire::SaslResponse{wire::as_bytes(reply->data)}, out);
            expect_final_ = true;
            return false;
          },
          [&](const wire::AuthenticationSaslFinal& m) -> std::expected<bool, std::string> {
            if (!scram_ || !expect_final_) {
              return fail("server sent SASLFinal out of order");
            }
            auto reply = scram_->on_server_final(m.data);
            if (!reply) {
              return fail(std::string("SCRAM: ") + std::string(crypto::to_string(reply.error())));
            }
            return false;
          },
          [&](const auto&) -> std::expected<bool, std::string> {
            return fail("server asked for an authentication method pgwarden does not support");
          },
      },
      *request);
}

}  // namespace pgwarden::session

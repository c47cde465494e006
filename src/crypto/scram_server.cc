#include "crypto/scram_server.h"

#include <openssl/crypto.h>

#include <array>

#include "crypto/base64.h"
#include "crypto/random.h"
#include "crypto/scram_attributes.h"
#include "crypto/secret.h"
#include "wire/bytes.h"

namespace pgwarden::crypto {
namespace {

constexpr std::array<std::string_view, 2> kMechanismsWithPlus = {kScramSha256Plus, kScramSha256};
constexpr std::array<std::string_view, 1> kMechanismsPlain = {kScramSha256};

using detail::AttributeReader;

}  // namespace

ScramServer::ScramServer(std::optional<ScramVerifier> verifier, std::string_view user,
                         std::span<const std::byte> mock_secret, ScramServerOptions options)
    : channel_binding_(std::move(options.channel_binding)),
      nonce_for_testing_(std::move(options.nonce_for_testing)) {
  if (channel_binding_ && channel_binding_->empty()) {
    channel_binding_.reset();  // no data means no channel binding, never an empty binding
  }
  // The mock verifier is derived for every user, known or not, so that the work done before
  // the first message does not depend on whether the user exists.
  auto mock =
      mock_scram_verifier(mock_secret, user, options.mock_iterations, options.mock_salt_length);
  if (verifier) {
    verifier_ = std::move(*verifier);
    wipe(verifier->stored_key);
    wipe(verifier->server_key);
  } else if (mock) {
    mock_ = true;
    verifier_ = std::move(*mock);
  } else {
    mock_ = true;
    state_ = State::Failed;  // fail closed: the first step reports ExchangeFailed
  }
}

ScramServer::~ScramServer() {
  wipe_secrets();
}

void ScramServer::wipe_secrets() {
  wipe(verifier_.stored_key);
  wipe(verifier_.server_key);
  wipe(verifier_.salt);
  wipe(nonce_);
}

std::unexpected<CryptoError> ScramServer::fail(CryptoError e) {
  state_ = State::Failed;
  wipe_secrets();
  return std::unexpected(e);
}

std::span<const std::string_view> ScramServer::mechanisms() const {
  if (channel_binding_) {
    return kMechanismsWithPlus;
  }
  return kMechanismsPlain;
}

std::expected<ScramServer::Reply, CryptoError> ScramServer::step(const Input& input) {
  switch (state_) {
    case State::WaitClientFirst:
      if (const auto* first = std::get_if<ClientFirst>(&input)) {
        return handle_client_first(*first);
      }
      return fail(CryptoError::UnexpectedMessage);
    case State::WaitClientFinal:
      if (const auto* final_msg = std::get_if<ClientFinal>(&input)) {
        return handle_client_final(*final_msg);
      }
      return fail(CryptoError::UnexpectedMessage);
    case State::Complete:
      return fail(CryptoError::UnexpectedMessage);
    case State::Failed:
      return std::unexpected(CryptoError::ExchangeFailed);
  }
  return fail(CryptoError::UnexpectedMessage);
}

std::expected<ScramServer::Reply, CryptoError> ScramServer::handle_client_first(
    const ClientFirst& in) {
  if (in.mechanism == kScramSha256Plus && channel_binding_) {
    plus_ = true;
  } else if (in.mechanism == kScramSha256) {
    plus_ = false;
  } else {
    return fail(CryptoError::UnsupportedMechanism);
  }
  auto checked = detail::check_scram_message(in.data);
  if (!checked) {
    return fail(checked.error());
  }
  std::string_view msg = *checked;

  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  std::size_t pos = 0;
  switch (msg[0]) {
    case 'p': {
      if (!plus_) {
        return fail(CryptoError::ChannelBindingNotOffered);
      }
      std::size_t comma = msg.find(',');
      if (comma == std::string_view::npos || msg.substr(0, 2) != "p=") {
        return fail(CryptoError::Malformed);
      }
      if (msg.substr(2, comma - 2) != kTlsServerEndPoint) {
        return fail(CryptoError::ChannelBindingUnsupported);
      }
      pos = comma;
      break;
    }
    case 'y':
      if (plus_) {
        return fail(CryptoError::ChannelBindingNotOffered);
      }
      // The client could bind but believes we cannot. We offered -PLUS, so someone removed
      // it from the list on the way: a downgrade attack.
      if (channel_binding_) {
        return fail(CryptoError::ChannelBindingDowngrade);
      }
      pos = 1;
      break;
    case 'n':
      if (plus_) {
        return fail(CryptoError::ChannelBindingNotOffered);
      }
      pos = 1;
      break;
    default:
      return fail(CryptoError::Malformed);
  }
  if (pos >= msg.size() || msg[pos] != ',') {
    return fail(CryptoError::Malformed);
  }
  ++pos;
  if (pos < msg.size() && msg[pos] == 'a') {
    return fail(CryptoError::AuthzidUnsupported);
  }
  if (pos >= msg.size() || msg[pos] != ',') {
    return fail(CryptoError::Malformed);
  }
  ++pos;
  std::string_view gs2_header = msg.substr(0, pos);
  std::string_view bare = msg.substr(pos);

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  AttributeReader reader(bare);
  auto user = reader.next();
  if (!user) {
    return fail(user.error());
  }
  if (user->name == 'm') {
    return fail(CryptoError::UnsupportedExtension);
  }
  // The user name is ignored, as in PostgreSQL: the startup packet's user is authenticated.
  if (user->name != 'n') {
    return fail(CryptoError::Malformed);
  }
  auto client_nonce = reader.expect('r');
  if (!client_nonce) {
    return fail(client_nonce.error());
  }
  if (!detail::is_printable_nonce(*client_nonce)) {
    return fail(CryptoError::BadNonce);
  }
  while (!reader.done()) {
    auto ext = reader.next();
    if (!ext) {
      return fail(ext.error());
    }
    if (detail::is_reserved_attribute(ext->name) || ext->value.empty()) {
      return fail(CryptoError::Malformed);
    }
    // Optional extensions are ignored (RFC 5802 section 5.1).
  }

  std::string server_nonce;
  if (!nonce_for_testing_.empty()) {
    server_nonce = nonce_for_testing_;
  } else {
    std::array<std::byte, kScramRawNonceLength> raw{};
    if (!random_bytes(raw)) {
      return fail(CryptoError::RandomFailure);
    }
    server_nonce = base64_encode(raw);
  }

  gs2_header_.assign(gs2_header);
  client_first_bare_.assign(bare);
  nonce_.reserve(client_nonce->size() + server_nonce.size());
  nonce_.assign(*client_nonce);
  nonce_.append(server_nonce);
  server_first_ = "r=" + nonce_ + ",s=" + base64_encode(verifier_.salt) +
                  ",i=" + std::to_string(verifier_.iterations);
  state_ = State::WaitClientFinal;
  return Reply{server_first_, false};
}

std::expected<ScramServer::Reply, CryptoError> ScramServer::handle_client_final(
    const ClientFinal& in) {
  auto checked = detail::check_scram_message(in.data);
  if (!checked) {
    return fail(checked.error());
  }
  std::string_view msg = *checked;

  // client-final-message = "c=" base64 "," "r=" nonce ["," extensions] "," "p=" proof
  AttributeReader reader(msg);
  auto cbind = reader.expect('c');
  if (!cbind) {
    return fail(cbind.error());
  }
  auto cbind_input = base64_decode(*cbind);
  if (!cbind_input) {
    return fail(CryptoError::Malformed);
  }
  // Expected: our gs2 header, then (with -PLUS) our certificate hash. Compare in constant
  // time over the expected length; a length difference fails on its own.
  auto header = wire::as_bytes(gs2_header_);
  std::vector<std::byte> expected(header.begin(), header.end());
  if (plus_) {
    expected.insert(expected.end(), channel_binding_->begin(), channel_binding_->end());
  }
  bool cb_ok = cbind_input->size() == expected.size() &&
               CRYPTO_memcmp(cbind_input->data(), expected.data(), expected.size()) == 0;
  if (!cb_ok) {
    return fail(CryptoError::ChannelBindingMismatch);
  }

  auto nonce = reader.expect('r');
  if (!nonce) {
    return fail(nonce.error());
  }
  if (*nonce != nonce_) {
    return fail(CryptoError::NonceMismatch);
  }

  detail::ScramAttribute proof_attr;
  while (true) {
    auto attr = reader.next();
    if (!attr) {
      return fail(attr.error());
    }
    if (attr->name == 'p') {
      proof_attr = *attr;
      break;
    }
    if (detail::is_reserved_attribute(attr->name) || attr->value.empty()) {
      return fail(CryptoError::Malformed);
    }
  }
  if (!reader.done()) {
    return fail(CryptoError::Malformed);  // the proof must be the last attribute
  }
  auto proof = base64_decode(proof_attr.value);
  if (!proof || proof->size() != kScramKeyLength) {
    return fail(CryptoError::Malformed);
  }
  // proof_attr.offset > 0: 'c' and 'r' precede it, so offset - 1 is the ',' before "p=".
  std::string_view without_proof = msg.substr(0, proof_attr.offset - 1);

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + server_first_.size() + without_proof.size() + 2);
  auth_message.append(client_first_bare_).append(",").append(server_first_).append(",");
  auth_message.append(without_proof);

  // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); accept iff H(ClientKey) equals
  // StoredKey. The mock path does the same work and then refuses.
  auto client_signature = hmac_sha256(verifier_.stored_key, wire::as_bytes(auth_message));
  if (!client_signature) {
    return fail(client_signature.error());
  }
  ScramKey client_key{};
  for (std::size_t i = 0; i < kScramKeyLength; ++i) {
    client_key[i] = (*proof)[i] ^ (*client_signature)[i];
  }
  wipe(*client_signature);
  auto computed_stored = sha256(client_key);
  wipe(client_key);
  if (!computed_stored) {
    return fail(computed_stored.error());
  }
  bool proof_ok =
      CRYPTO_memcmp(computed_stored->data(), verifier_.stored_key.data(), kScramKeyLength) == 0;
  wipe(*computed_stored);
  if (!proof_ok || mock_) {
    return fail(CryptoError::BadProof);
  }

  auto server_signature = hmac_sha256(verifier_.server_key, wire::as_bytes(auth_message));
  if (!server_signature) {
    return fail(server_signature.error());
  }
  Reply reply{"v=" + base64_encode(*server_signature), true};
  wipe(*server_signature);
  state_ = State::Complete;
  wipe_secrets();
  return reply;
}

}  // namespace pgwarden::crypto

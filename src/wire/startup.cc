#include "wire/startup.h"

#include <algorithm>

namespace pgwarden::wire {
namespace {

constexpr std::uint16_t kRequestMajor = 1234;

}  // namespace

std::optional<std::string_view> StartupMessage::find(std::string_view name) const {
  for (const auto& p : parameters) {
    if (p.name == name) {
      return p.value;
    }
  }
  return std::nullopt;
}

bool StartupMessage::has_protocol_options() const {
  return std::ranges::any_of(parameters, [](const auto& p) { return p.is_protocol_option(); });
}

FirstBytes classify_first_bytes(Bytes data) {
  if (data.empty()) {
    return FirstBytes::NeedMore;
  }
  return data[0] == kTlsHandshakeRecord ? FirstBytes::TlsClientHello : FirstBytes::Postgres;
}

std::expected<StartupMessage, WireError> parse_startup_message(Bytes body,
                                                               std::size_t max_parameters) {
  Reader r(body);
  auto code = r.u32();
  if (!code) {
    return std::unexpected(code.error());
  }
  StartupMessage m;
  m.major = static_cast<std::uint16_t>(*code >> 16);
  m.minor = static_cast<std::uint16_t>(*code & 0xffff);
  if (m.major != 3) {
    return std::unexpected(WireError::UnknownProtocol);
  }
  // Each pair takes at least 2 bytes (two NULs); reserve only what the body can hold.
  m.parameters.reserve(std::min(max_parameters, r.remaining() / 2));
  for (;;) {
    auto name = r.cstring();
    if (!name) {
      return std::unexpected(name.error());
    }
    if (name->empty()) {
      break;  // the terminator: an empty name is never a parameter
    }
    auto value = r.cstring();
    if (!value) {
      return std::unexpected(value.error());
    }
    if (m.parameters.size() >= max_parameters) {
      return std::unexpected(WireError::BadCount);
    }
    if (m.find(*name)) {
      return std::unexpected(WireError::BadValue);
    }
    m.parameters.push_back({*name, *value});
  }
  if (auto end = expect_end(r); !end) {
    return std::unexpected(end.error());
  }
  return m;
}

std::expected<CancelRequest, WireError> parse_cancel_request(Bytes body) {
  Reader r(body);
  auto code = r.u32();
  if (!code) {
    return std::unexpected(code.error());
  }
  if (*code != kCancelRequestCode) {
    return std::unexpected(WireError::UnknownProtocol);
  }
  auto pid = r.u32();
  if (!pid) {
    return std::unexpected(pid.error());
  }
  if (r.remaining() < kMinCancelKey) {
    return std::unexpected(WireError::ShortMessage);
  }
  if (r.remaining() > kMaxCancelKey) {
    return std::unexpected(WireError::TooLarge);
  }
  return CancelRequest{*pid, ByteView{r.rest()}};
}

std::expected<StartupPacket, WireError> decode_startup(Bytes body, std::size_t max_parameters) {
  Reader r(body);
  auto code = r.u32();
  if (!code) {
    return std::unexpected(code.error());
  }
  if ((*code >> 16) == kRequestMajor) {
    switch (*code) {
      case kCancelRequestCode: {
        auto c = parse_cancel_request(body);
        if (!c) {
          return std::unexpected(c.error());
        }
        return std::expected<StartupPacket, WireError>(std::in_place,
                                                       std::in_place_type<CancelRequest>, *c);
      }
      case kSslRequestCode:
        if (auto end = expect_end(r); !end) {
          return std::unexpected(end.error());
        }
        return std::expected<StartupPacket, WireError>(std::in_place,
                                                       std::in_place_type<SslRequest>);
      case kGssEncRequestCode:
        if (auto end = expect_end(r); !end) {
          return std::unexpected(end.error());
        }
        return std::expected<StartupPacket, WireError>(std::in_place,
                                                       std::in_place_type<GssEncRequest>);
      default:
        return std::unexpected(WireError::UnknownProtocol);
    }
  }
  auto m = parse_startup_message(body, max_parameters);
  if (!m) {
    return std::unexpected(m.error());
  }
  return std::expected<StartupPacket, WireError>(std::in_place, std::in_place_type<StartupMessage>,
                                                 std::move(*m));
}

void encode(const StartupMessage& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_untyped();
  w.u32(m.version());
  for (const auto& p : m.parameters) {
    if (p.name.empty()) {
      continue;  // an empty name would terminate the list early
    }
    put_cstring(w, p.name);
    put_cstring(w, p.value);
  }
  w.u8(0);
  w.end_message(at);
}

void encode(const SslRequest&, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_untyped();
  w.u32(kSslRequestCode);
  w.end_message(at);
}

void encode(const GssEncRequest&, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_untyped();
  w.u32(kGssEncRequestCode);
  w.end_message(at);
}

void encode(const CancelRequest& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_untyped();
  w.u32(kCancelRequestCode);
  w.u32(m.process_id);
  w.bytes(m.secret_key);
  w.end_message(at);
}

void encode(const StartupPacket& m, ByteVector& out) {
  std::visit([&out](const auto& v) { encode(v, out); }, m);
}

}  // namespace pgwarden::wire

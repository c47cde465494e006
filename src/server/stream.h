// One side of a proxied connection: a TCP socket that may be upgraded to TLS in place.
// Plain and TLS reads/writes share one interface so the session code is written once. Every
// operation reports errors as values (no exceptions on the data path).
#pragma once

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <system_error>
#include <tuple>

namespace pgwarden::server {

using tcp = asio::ip::tcp;
template <typename T>
using awaitable = asio::awaitable<T>;
// Completion token: co_await yields std::tuple<error_code, ...> instead of throwing.
inline constexpr auto use_nothrow = asio::experimental::as_tuple(asio::use_awaitable);

class Stream {
 public:
  explicit Stream(tcp::socket socket) : plain_(std::move(socket)) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  bool is_tls() const { return tls_.has_value(); }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  // Wraps the socket in TLS (the handshake is the caller's next step).
  asio::ssl::stream<tcp::socket>& start_tls(asio::ssl::context& context) {
    tls_.emplace(std::move(plain_), context);
    return *tls_;
  }
  asio::ssl::stream<tcp::socket>& tls() { return *tls_; }

  // Reads what is available (at least one byte, or an error).
  awaitable<std::tuple<std::error_code, std::size_t>> read_some(std::span<std::byte> buf) {
    if (tls_) {
      co_return co_await tls_->async_read_some(asio::buffer(buf.data(), buf.size()), use_nothrow);
    }
    co_return co_await plain_.async_read_some(asio::buffer(buf.data(), buf.size()), use_nothrow);
  }

  // Writes all of `data`. After enable_fast_path(), a plain socket first tries one
  // non-blocking send, which on the hot path nearly always takes everything, and falls back
  // to asio's asynchronous write only when the kernel buffer is full (backpressure).
  awaitable<std::error_code> write(std::span<const std::byte> data) {
    if (data.empty()) {
      co_return std::error_code{};
    }
    if (tls_) {
      auto [ec, n] =
          co_await asio::async_write(*tls_, asio::buffer(data.data(), data.size()), use_nothrow);
      co_return ec;
    }
    std::error_code ec;
    std::size_t done = 0;
    if (non_blocking_) {
      done = plain_.write_some(asio::buffer(data.data(), data.size()), ec);
      if (!ec && done == data.size()) {
        co_return std::error_code{};
      }
      if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        co_return ec;
      }
      if (ec) {
        done = 0;
      }
    }
    auto [aec, n] = co_await asio::async_write(
        plain_, asio::buffer(data.data() + done, data.size() - done), use_nothrow);
    co_return aec;
  }

  // Switches a plain socket to the non-blocking send used by write().
  void enable_fast_path() {
    if (!tls_) {
      std::error_code ec;
      plain_.non_blocking(true, ec);
      non_blocking_ = !ec;
    }
  }

  // Aborts pending operations (they complete with operation_aborted). Never throws.
  void cancel() {
    std::error_code ignored;
    socket().cancel(ignored);
  }
  void close() {
    std::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
  }

 private:
  tcp::socket plain_;
  std::optional<asio::ssl::stream<tcp::socket>> tls_;
  bool non_blocking_ = false;
};

}  // namespace pgwarden::server

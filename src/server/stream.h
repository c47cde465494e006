// One side of a proxied connection: a TCP socket that may be upgraded to TLS in place.
// Plain and TLS reads/writes share one interface so the session code is written once. Every
// operation reports errors as values (no exceptions on the data path).
//
// TLS runs OpenSSL directly on the socket (SSL_set_fd), driven by readiness waits from the
// worker's event loop: SSL_read/SSL_write say WANT_READ or WANT_WRITE and we wait for that,
// then retry with the same arguments. There is no memory BIO pair and no staging buffer in
// between (asio::ssl::stream keeps four 17 KiB buffers per connection and copies every
// record through them), and idle connections give OpenSSL's record buffers back
// (SSL_MODE_RELEASE_BUFFERS, set on the contexts in src/tls).
//
// One read and one write may be in progress at the same time (the two pumps of a session),
// on one thread; OpenSSL allows interleaving them as long as each call that wants to be
// retried is retried with the same arguments, which read_some()/write() do.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <cstddef>
#include <memory>
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
  explicit Stream(tcp::socket socket) : socket_(std::move(socket)) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  tcp::socket& socket() { return socket_; }
  bool is_tls() const { return ssl_ != nullptr; }
  SSL* ssl() { return ssl_.get(); }

  // Creates this connection's TLS state from `context` on the socket; the handshake is the
  // caller's next step. False if OpenSSL could not allocate it.
  bool start_tls(SSL_CTX* context) {
    if (!ensure_non_blocking()) {
      return false;
    }
    ssl_.reset(SSL_new(context));
    if (!ssl_ || SSL_set_fd(ssl_.get(), socket_.native_handle()) != 1) {
      ssl_.reset();
      return false;
    }
    SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
    // One recv() takes whatever is there (several records), instead of one for each
    // record's header and another for its body.
    SSL_set_read_ahead(ssl_.get(), 1);
    return true;
  }

  // The TLS handshake, as server or client. On failure, openssl_error() is the first
  // OpenSSL error code of the failure (0 for a plain I/O error).
  awaitable<std::error_code> handshake(bool server) {
    if (server) {
      SSL_set_accept_state(ssl_.get());
    } else {
      SSL_set_connect_state(ssl_.get());
    }
    for (;;) {
      ERR_clear_error();
      const int r = SSL_do_handshake(ssl_.get());
      if (r == 1) {
        co_return std::error_code{};
      }
      auto step = co_await wait_for(SSL_get_error(ssl_.get(), r));
      if (step) {
        co_return step;
      }
    }
  }
  unsigned long openssl_error() const { return openssl_error_; }

  // Reads what is available (at least one byte, or an error; eof when the peer closed).
  awaitable<std::tuple<std::error_code, std::size_t>> read_some(std::span<std::byte> buf) {
    if (!ssl_) {
      co_return co_await socket_.async_read_some(asio::buffer(buf.data(), buf.size()), use_nothrow);
    }
    if (drained_) {
      // The last read emptied both OpenSSL's buffer and (most likely) the socket: trying
      // SSL_read now would cost a recv() that says EAGAIN before the wait anyway. asio
      // re-arms the registration for a wait, so data that is already there is seen.
      drained_ = false;
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, use_nothrow);
      if (ec) {
        co_return std::tuple{ec, std::size_t{0}};
      }
    }
    for (;;) {
      ERR_clear_error();
      std::size_t n = 0;
      if (SSL_read_ex(ssl_.get(), buf.data(), buf.size(), &n) == 1) {
        drained_ = n < buf.size() && SSL_has_pending(ssl_.get()) == 0;
        co_return std::tuple{std::error_code{}, n};
      }
      auto step = co_await wait_for(SSL_get_error(ssl_.get(), 0));
      if (step) {
        co_return std::tuple{step, std::size_t{0}};
      }
    }
  }

  // Writes all of `data`. A plain socket first tries one non-blocking send, which on the hot
  // path nearly always takes everything, and falls back to asio's asynchronous write only
  // when the kernel buffer is full (backpressure). TLS writes record by record, waiting
  // for the socket whenever OpenSSL says so.
  awaitable<std::error_code> write(std::span<const std::byte> data) {
    if (data.empty()) {
      co_return std::error_code{};
    }
    if (ssl_) {
      std::size_t done = 0;
      while (done < data.size()) {
        ERR_clear_error();
        std::size_t n = 0;
        if (SSL_write_ex(ssl_.get(), data.data() + done, data.size() - done, &n) == 1) {
          done += n;
          continue;
        }
        auto step = co_await wait_for(SSL_get_error(ssl_.get(), 0));
        if (step) {
          co_return step;
        }
      }
      co_return std::error_code{};
    }
    std::error_code ec;
    std::size_t done = 0;
    if (ensure_non_blocking()) {
      done = socket_.write_some(asio::buffer(data.data(), data.size()), ec);
    } else {
      ec = asio::error::would_block;
    }
    if (!ec && done == data.size()) {
      co_return std::error_code{};
    }
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      co_return ec;
    }
    if (ec) {
      done = 0;
    }
    auto [aec, n] = co_await asio::async_write(
        socket_, asio::buffer(data.data() + done, data.size() - done), use_nothrow);
    co_return aec;
  }

  // Aborts pending operations (they complete with operation_aborted). Never throws.
  void cancel() {
    std::error_code ignored;
    socket_.cancel(ignored);
  }
  void close() {
    std::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  struct SslFree {
    void operator()(SSL* s) const { SSL_free(s); }
  };

  // The socket's own non-blocking mode, so a synchronous send or an OpenSSL call never
  // blocks the worker. Set lazily: an upstream socket is opened only by its connect.
  bool ensure_non_blocking() {
    if (!non_blocking_ && socket_.is_open()) {
      std::error_code ec;
      socket_.non_blocking(true, ec);
      non_blocking_ = !ec;
    }
    return non_blocking_;
  }

  // After an OpenSSL call failed with `error`: waits for the readiness it asks for and
  // returns no error (retry), or returns why the connection cannot go on.
  awaitable<std::error_code> wait_for(int error) {
    switch (error) {
      case SSL_ERROR_WANT_READ: {
        auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, use_nothrow);
        co_return ec;
      }
      case SSL_ERROR_WANT_WRITE: {
        auto [ec] = co_await socket_.async_wait(tcp::socket::wait_write, use_nothrow);
        co_return ec;
      }
      case SSL_ERROR_ZERO_RETURN:
        co_return make_error_code(asio::error::eof);  // close_notify
      case SSL_ERROR_SYSCALL:
        openssl_error_ = ERR_peek_error();
        // No error queued: the peer closed without close_notify (or a socket error).
        if (openssl_error_ != 0) {
          co_return make_error_code(asio::error::connection_aborted);
        }
        co_return make_error_code(asio::error::eof);
      default:
        openssl_error_ = ERR_peek_error();
        co_return make_error_code(asio::error::connection_aborted);
    }
  }

  tcp::socket socket_;
  std::unique_ptr<SSL, SslFree> ssl_;  // after socket_: freed before the socket closes
  unsigned long openssl_error_ = 0;
  bool non_blocking_ = false;
  bool drained_ = false;  // the last TLS read left nothing buffered
};

}  // namespace pgwarden::server

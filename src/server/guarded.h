// Runs a coroutine so that an exception escaping it is reported instead of lost: spawned with
// co_spawn(..., detached), an exception thrown by a session coroutine would vanish without a
// log line, and whatever it left half done would go unnoticed. `on_error` gets the
// exception's what() (or "unknown exception") once the coroutine has unwound; it must not
// throw. Nothing on the session path is meant to throw (parsers return values), so a call of
// `on_error` is a bug to look into.
#pragma once

#include <asio/awaitable.hpp>

#include <exception>
#include <string>
#include <string_view>
#include <utility>

namespace pgwarden::server {

template <typename OnError>
asio::awaitable<void> guarded(asio::awaitable<void> body, OnError on_error) {
  std::string failure;
  try {
    co_await std::move(body);
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  if (!failure.empty()) {
    on_error(std::string_view(failure));
  }
}

}  // namespace pgwarden::server

// guarded(): an exception escaping a coroutine spawned detached is reported with its text,
// once, after the coroutine has unwound; a coroutine that ends normally reports nothing; and
// the event loop goes on serving other coroutines either way.
#include "server/guarded.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace pgwarden::server {
namespace {

struct Unwound {
  bool& flag;
  ~Unwound() { flag = true; }
};

asio::awaitable<void> throws_after_a_step(bool& unwound) {
  Unwound guard{unwound};
  auto executor = co_await asio::this_coro::executor;
  co_await asio::post(executor, asio::use_awaitable);
  throw std::runtime_error("boom in session 42");
}

asio::awaitable<void> throws_something_odd() {
  auto executor = co_await asio::this_coro::executor;
  co_await asio::post(executor, asio::use_awaitable);
  throw 7;
}

asio::awaitable<void> ends_normally(int& steps) {
  auto executor = co_await asio::this_coro::executor;
  co_await asio::post(executor, asio::use_awaitable);
  ++steps;
}

TEST(Guarded, ReportsAnEscapingExceptionOnceAfterUnwinding) {
  asio::io_context io;
  std::vector<std::string> errors;
  bool unwound = false;
  bool unwound_when_reported = false;
  int other_steps = 0;
  asio::co_spawn(io,
                 guarded(throws_after_a_step(unwound),
                         [&](std::string_view what) {
                           errors.emplace_back(what);
                           unwound_when_reported = unwound;
                         }),
                 asio::detached);
  asio::co_spawn(io,
                 guarded(ends_normally(other_steps),
                         [&](std::string_view what) { errors.emplace_back(what); }),
                 asio::detached);
  io.run();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "boom in session 42");
  EXPECT_TRUE(unwound_when_reported);
  EXPECT_EQ(other_steps, 1);  // the loop served the other coroutine too
}

TEST(Guarded, ReportsANonStandardException) {
  asio::io_context io;
  std::vector<std::string> errors;
  asio::co_spawn(
      io,
      guarded(throws_something_odd(), [&](std::string_view what) { errors.emplace_back(what); }),
      asio::detached);
  io.run();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "unknown exception");
}

TEST(Guarded, NormalEndReportsNothing) {
  asio::io_context io;
  int steps = 0;
  int reports = 0;
  asio::co_spawn(io, guarded(ends_normally(steps), [&](std::string_view) { ++reports; }),
                 asio::detached);
  io.run();
  EXPECT_EQ(steps, 1);
  EXPECT_EQ(reports, 0);
}

}  // namespace
}  // namespace pgwarden::server

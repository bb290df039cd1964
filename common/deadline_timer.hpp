// A timeout that is cheap to move: arming records a deadline and touches
// the libuv timer only when it would otherwise fire too late. A connection
// re-arms its timeout several times per request (header, body, idle...);
// with a plain uv_timer that is a heap removal and insertion each time.
// When the timer fires early it re-arms itself for the rest.
#pragma once

#include <uv.h>

#include <cstdint>

namespace torii {

class DeadlineTimer {
 public:
  using Callback = void (*)(void* owner);

  // `owner` is what the expiry callback and, after close(), the handle's
  // data pointer refer to (the owner's close callback finds itself there).
  void init(uv_loop_t* loop, void* owner, Callback on_expire);
  void arm(uint64_t ms);
  void disarm() { deadline_ = 0; }
  bool armed() const { return deadline_ != 0; }
  void close(uv_close_cb cb);

 private:
  static void on_fire(uv_timer_t* t);
  void start(uint64_t at);

  uv_timer_t timer_;
  void* owner_ = nullptr;
  Callback on_expire_ = nullptr;
  uint64_t deadline_ = 0;  // loop time (ms) when the timeout expires; 0 = none
  uint64_t fires_at_ = 0;  // when the libuv timer is due; 0 = not running
};

}  // namespace torii

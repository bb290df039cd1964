#include "common/deadline_timer.hpp"

namespace torii {

void DeadlineTimer::init(uv_loop_t* loop, void* owner, Callback on_expire) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  owner_ = owner;
  on_expire_ = on_expire;
}

void DeadlineTimer::start(uint64_t at) {
  const uint64_t now = uv_now(timer_.loop);
  uv_timer_start(&timer_, &DeadlineTimer::on_fire, at > now ? at - now : 0, 0);
  fires_at_ = at;
}

void DeadlineTimer::arm(uint64_t ms) {
  deadline_ = uv_now(timer_.loop) + ms;
  if (deadline_ == 0) deadline_ = 1;
  // A running timer due before the new deadline just re-arms when it fires.
  if (fires_at_ == 0 || fires_at_ > deadline_) start(deadline_);
}

void DeadlineTimer::on_fire(uv_timer_t* t) {
  auto* self = static_cast<DeadlineTimer*>(t->data);
  self->fires_at_ = 0;
  if (self->deadline_ == 0) return;
  if (uv_now(t->loop) < self->deadline_) {
    self->start(self->deadline_);
    return;
  }
  self->deadline_ = 0;
  self->on_expire_(self->owner_);
}

void DeadlineTimer::close(uv_close_cb cb) {
  deadline_ = 0;
  timer_.data = owner_;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), cb);
}

}  // namespace torii

#include "gateway/prewarm_relay.hpp"

#include "common/log.hpp"
#include "gateway/prewarm_share.hpp"

namespace torii::gateway {

bool PrewarmRelay::on_message(ControlChannel& from, const std::string& message) {
  const ControlHeader h = peek_control(message);
  const uint64_t now = uv_now(loop_);
  if (h.op == kOpSync) {
    for (const auto& [key, copy] : copies_) from.send(copy.entry);
    from.send(make_simple(kOpSyncDone));
    return true;
  }
  if (h.op == kOpClaim) {
    // A claimer that missed a newer copy (its claim crossed our broadcast)
    // gets that copy instead of a second fetch.
    auto copy = copies_.find(h.key);
    if (copy != copies_.end() && copy->second.fingerprint == h.fingerprint &&
        copy->second.response_time_ms > h.response_time_ms) {
      from.send(copy->second.entry);
      from.send(make_simple(kOpGrant, h.key, false));
      return true;
    }
    Lease& lease = leases_[h.key];
    const bool granted = lease.holder == nullptr || lease.holder == &from || now >= lease.until_ms;
    if (granted) lease = Lease{&from, now + kLeaseMs};
    from.send(make_simple(kOpGrant, h.key, granted));
    return true;
  }
  if (h.op == kOpFailed) {
    auto it = leases_.find(h.key);
    if (it != leases_.end() && it->second.holder == &from) leases_.erase(it);
    // Workers still waiting for a first copy stop waiting (and will claim later).
    for (ControlChannel* ch : live_channels_()) {
      if (ch != &from) ch->send(message);
    }
    return true;
  }
  if (h.op == kOpShare) {
    std::string entry = with_op(message, kOpEntry);
    if (entry.empty() || h.key.empty()) return true;
    leases_.erase(h.key);
    for (ControlChannel* ch : live_channels_()) {
      if (ch != &from) ch->send(entry);
    }
    copies_[h.key] = Copy{std::move(entry), h.response_time_ms, h.fingerprint};
    return true;
  }
  return false;
}

void PrewarmRelay::on_channel_closed(ControlChannel* channel) {
  std::erase_if(leases_, [channel](const auto& item) { return item.second.holder == channel; });
}

}  // namespace torii::gateway

#include "gateway/response_capture.hpp"

namespace torii::gateway {

cache::StoreDecision ResponseCapture::start(const CaptureRequest& req,
                                            const http::MessageHead& resp,
                                            const cache::StorePolicy& policy,
                                            const ForwardContext& ctx, int64_t now_ms) {
  reset();
  cache::StoreDecision d = cache::decide_store(*req.head, resp, policy, now_ms);
  if (!d.storable) return d;
  auto r = std::make_unique<cache::StoredResponse>();
  std::string head;
  build_stored_response_head(resp, ctx, cache::format_http_date(now_ms / 1000), head);
  if (resp.framing == http::BodyFraming::kContentLength) {
    r->bytes.reserve(head.size() + 2 + resp.content_length);
  }
  r->assign(head, {});
  r->status = resp.status;
  r->key = req.key;
  r->host = req.host;
  r->target = req.target;
  r->vary_names = cache::vary_names(resp);
  r->vary_values = cache::vary_values(*req.head, r->vary_names);
  r->etag = std::string(resp.get("etag"));
  r->last_modified = std::string(resp.get("last-modified"));
  r->response_time_ms = now_ms;
  r->initial_age_ms = cache::initial_age_ms(resp, req.request_time_ms, now_ms);
  r->lifetime_ms = d.lifetime_ms;
  r->swr_ms = d.swr_ms;
  r->sie_ms = d.sie_ms;
  r->no_stale = d.no_stale;
  r->always_revalidate = d.always_revalidate;
  building_ = std::move(r);
  max_body_ = policy.max_object_size;
  return d;
}

void ResponseCapture::add(const std::vector<std::string_view>& spans) {
  if (!building_) return;
  for (std::string_view s : spans) {
    if (building_->body().size() + s.size() > max_body_) {
      building_.reset();
      too_large_ = true;
      return;
    }
    building_->bytes.append(s);
  }
}

cache::ResponsePtr ResponseCapture::finish() {
  if (!building_) return nullptr;
  building_->bytes.shrink_to_fit();
  return cache::ResponsePtr(std::move(building_));
}

cache::ResponsePtr refreshed_by_304(const cache::StoredResponse& old,
                                    const http::MessageHead& not_modified,
                                    const http::MessageHead& req, const cache::StorePolicy& policy,
                                    int64_t request_time_ms, int64_t now_ms) {
  auto r = std::make_shared<cache::StoredResponse>(old);
  const cache::CacheControl cc = cache::parse_cache_control(not_modified.headers);
  const bool explicit_freshness = cc.max_age || cc.s_maxage || !not_modified.get("expires").empty();
  if (explicit_freshness) {
    // Judge the 304's freshness as if it were the stored status.
    http::MessageHead as_stored = not_modified;
    as_stored.status = old.status;
    const cache::StoreDecision d = cache::decide_store(req, as_stored, policy, now_ms);
    if (d.storable) {
      r->lifetime_ms = d.lifetime_ms;
      r->swr_ms = d.swr_ms;
      r->sie_ms = d.sie_ms;
      r->no_stale = d.no_stale;
      r->always_revalidate = d.always_revalidate;
    }
  }
  r->response_time_ms = now_ms;
  r->initial_age_ms = cache::initial_age_ms(not_modified, request_time_ms, now_ms);
  return r;
}

}  // namespace torii::gateway

#include "gateway/cache_purge.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/http_types.hpp"
#include "gateway/router.hpp"

namespace torii::gateway {

namespace {

constexpr uint64_t kPurgeTimeoutMs = 2000;
constexpr uint64_t kPollMs = 50;

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

bool valid_target(std::string_view t) {
  if (t.empty() || t.front() != '/' || t.size() > 8192) return false;
  return std::none_of(t.begin(), t.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

// Fields of a control message; a field of the wrong type counts as absent
// (messages come from our own processes, but a bad one must not throw).
std::string string_field(const nlohmann::json& doc, const char* key) {
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t uint_field(const nlohmann::json& doc, const char* key) {
  auto it = doc.find(key);
  return it != doc.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}
bool bool_field(const nlohmann::json& doc, const char* key) {
  auto it = doc.find(key);
  return it != doc.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

bool parse_purge_request(std::string_view body, PurgeRequest& out, std::string& error) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    error =
        R"(the body must be a JSON object such as {"path": "/items?page=1"} or {"prefix": "/items/"})";
    return false;
  }
  for (const auto& item : doc.items()) {
    if (item.key() != "host" && item.key() != "path" && item.key() != "prefix") {
      error = "unknown key \"" + item.key() + "\" (expected host, path or prefix)";
      return false;
    }
    if (!item.value().is_string()) {
      error = "\"" + item.key() + "\" must be a string";
      return false;
    }
  }
  const bool has_path = doc.contains("path");
  const bool has_prefix = doc.contains("prefix");
  if (has_path == has_prefix) {
    error = "give exactly one of \"path\" (one URL) or \"prefix\" (every URL starting with it)";
    return false;
  }
  out.prefix = has_prefix;
  out.target = doc[has_prefix ? "prefix" : "path"].get<std::string>();
  if (!valid_target(out.target)) {
    error = "the path must start with / and contain no spaces or control characters";
    return false;
  }
  out.host = doc.contains("host") ? normalize_host(doc["host"].get<std::string>()) : std::string();
  if (!has_prefix && out.host.empty()) {
    error = "an exact purge needs \"host\" (the request's Host, e.g. \"api.example.com\")";
    return false;
  }
  return true;
}

int check_admin_token(const http::MessageHead& head, std::string_view token) {
  if (token.empty()) return 403;
  std::string_view auth = head.get("authorization");
  constexpr std::string_view kScheme = "bearer ";
  if (auth.size() <= kScheme.size() || !http::iequals(auth.substr(0, kScheme.size()), kScheme)) {
    return 401;
  }
  return constant_time_equal(http::trim_ows(auth.substr(kScheme.size())), token) ? 0 : 401;
}

std::string handle_purge_message(const std::string& message,
                                 const std::function<size_t(const PurgeRequest&)>& purge) {
  nlohmann::json doc = nlohmann::json::parse(message, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || string_field(doc, "op") != "purge") return {};
  PurgeRequest req;
  req.host = string_field(doc, "host");
  req.target = string_field(doc, "target");
  req.prefix = bool_field(doc, "prefix");
  const size_t n = purge(req);
  return nlohmann::json{{"op", "purged"}, {"id", uint_field(doc, "id")}, {"count", n}}.dump();
}

PurgeCoordinator::PurgeCoordinator(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

void PurgeCoordinator::start(const PurgeRequest& req, const std::vector<ControlChannel*>& channels,
                             AdminServer::Responder respond) {
  Pending& p = pending_.emplace_back();
  p.id = next_id_++;
  p.waiting = channels;
  p.deadline_ms = uv_now(loop_) + kPurgeTimeoutMs;
  p.respond = std::move(respond);
  const std::string message = nlohmann::json{
      {"op", "purge"},
      {"id", p.id},
      {"host", req.host},
      {"target", req.target},
      {"prefix", req.prefix}}.dump();
  for (ControlChannel* ch : channels) ch->send(message);
  if (channels.empty()) {
    finish(std::prev(pending_.end()), false);
    return;
  }
  if (!timer_running_) {
    timer_running_ = true;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<PurgeCoordinator*>(t->data)->check_deadlines(); },
        kPollMs, kPollMs);
  }
}

void PurgeCoordinator::on_message(ControlChannel* from, const std::string& message) {
  nlohmann::json doc = nlohmann::json::parse(message, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || string_field(doc, "op") != "purged") return;
  const uint64_t id = uint_field(doc, "id");
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->id != id) continue;
    auto w = std::find(it->waiting.begin(), it->waiting.end(), from);
    if (w == it->waiting.end()) return;
    it->waiting.erase(w);
    it->workers += 1;
    it->purged += uint_field(doc, "count");
    if (it->waiting.empty()) finish(it, false);
    return;
  }
}

void PurgeCoordinator::on_channel_closed(ControlChannel* channel) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto next = std::next(it);
    auto w = std::find(it->waiting.begin(), it->waiting.end(), channel);
    if (w != it->waiting.end()) {
      it->waiting.erase(w);
      if (it->waiting.empty()) finish(it, false);
    }
    it = next;
  }
}

void PurgeCoordinator::check_deadlines() {
  const uint64_t now = uv_now(loop_);
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto next = std::next(it);
    if (now >= it->deadline_ms) finish(it, true);
    it = next;
  }
  if (pending_.empty() && timer_running_) {
    timer_running_ = false;
    uv_timer_stop(&timer_);
  }
}

void PurgeCoordinator::finish(std::list<Pending>::iterator it, bool timed_out) {
  nlohmann::json body{{"purged", it->purged}, {"workers", it->workers}};
  if (timed_out) body["workers_not_answering"] = it->waiting.size();
  AdminServer::Responder respond = std::move(it->respond);
  pending_.erase(it);
  respond(AdminResponse{timed_out ? 504 : 200, "application/json", body.dump() + "\n"});
}

void PurgeCoordinator::close() {
  if (closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

}  // namespace torii::gateway

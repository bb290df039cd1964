#include "cache/fill_table.hpp"

namespace torii::cache {

bool FillTable::begin(const std::string& key) { return fills_.try_emplace(key).second; }

bool FillTable::wait(const std::string& key, FillWaiter* w, Ticket& ticket) {
  auto it = fills_.find(key);
  if (it == fills_.end()) return false;
  ticket.list = &it->second;  // unordered_map nodes do not move
  ticket.it = it->second.insert(it->second.end(), w);
  return true;
}

void FillTable::cancel(Ticket& ticket) {
  if (!ticket) return;
  ticket.list->erase(ticket.it);
  ticket.list = nullptr;
}

void FillTable::end(const std::string& key) {
  auto it = fills_.find(key);
  if (it == fills_.end()) return;
  // Take the waiters out first: a woken waiter may start a new fill of the
  // same key, which must get a fresh list.
  std::list<FillWaiter*> waiters = std::move(it->second);
  fills_.erase(it);
  while (!waiters.empty()) {
    FillWaiter* w = waiters.front();
    waiters.pop_front();
    w->on_fill_done();
  }
}

size_t FillTable::waiting() const {
  size_t n = 0;
  for (const auto& [key, list] : fills_) n += list.size();
  return n;
}

}  // namespace torii::cache

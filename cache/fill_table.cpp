#include "cache/fill_table.hpp"

namespace torii::cache {

bool FillTable::begin(const std::string& key) {
  auto [it, inserted] = fills_.try_emplace(key);
  if (inserted) it->second = std::make_shared<Fill>();
  return inserted;
}

bool FillTable::wait(const std::string& key, FillWaiter* w, Ticket& ticket) {
  auto it = fills_.find(key);
  if (it == fills_.end()) return false;
  ticket.fill = it->second;
  ticket.it = it->second->waiters.insert(it->second->waiters.end(), w);
  return true;
}

void FillTable::cancel(Ticket& ticket) {
  if (!ticket) return;
  ticket.fill->waiters.erase(ticket.it);
  ticket.fill.reset();
}

void FillTable::end(const std::string& key) {
  auto it = fills_.find(key);
  if (it == fills_.end()) return;
  // Out of the table first: a woken waiter may start a new fill of the
  // same key, which gets a new list. This one lives on while tickets (and
  // this function) hold it.
  std::shared_ptr<Fill> fill = std::move(it->second);
  fills_.erase(it);
  while (!fill->waiters.empty()) {
    FillWaiter* w = fill->waiters.front();
    fill->waiters.pop_front();
    w->on_fill_done();
  }
}

size_t FillTable::waiting() const {
  size_t n = 0;
  for (const auto& [key, fill] : fills_) n += fill->waiters.size();
  return n;
}

}  // namespace torii::cache

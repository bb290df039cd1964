// API key set and query helpers; see auth_api_key.hpp.
#include "gateway/auth_api_key.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <array>
#include <stdexcept>

namespace torii::gateway {

namespace {

// SHA-256 of `text` as 32 raw bytes; empty only if OpenSSL fails.
std::string sha256(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_len = 0;
  if (EVP_Digest(text.data(), text.size(), digest.data(), &digest_len, EVP_sha256(), nullptr) !=
      1) {
    ERR_clear_error();
    return {};
  }
  return std::string(reinterpret_cast<const char*>(digest.data()), digest_len);
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '@';
}

// The reason `key` / `name` cannot be used; empty when they can.
std::string key_problem(std::string_view key) {
  if (key.size() < ApiKeySet::kMinKeyLength) {
    return "API key is shorter than " + std::to_string(ApiKeySet::kMinKeyLength) + " characters";
  }
  for (const char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    // A header value is trimmed and cannot carry controls: such a key could
    // never match, so it is a configuration mistake.
    if (byte <= 0x20 || byte == 0x7f) return "API key contains whitespace or control characters";
  }
  return {};
}

std::string name_problem(std::string_view name) {
  if (name.size() > ApiKeySet::kMaxNameLength) {
    return "API key name is longer than " + std::to_string(ApiKeySet::kMaxNameLength) +
           " characters";
  }
  for (const char c : name) {
    if (!is_name_char(c)) return "API key name may only contain letters, digits and -._@";
  }
  return {};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;  // truncated escape
    const int high = hex_value(text[i + 1]);
    const int low = hex_value(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

// Calls visit(name, value, whole) for each '&'-separated parameter, in order,
// until it returns false; `value` is raw (not decoded), "" without '='.
template <typename Visit>
void for_each_parameter(std::string_view query, Visit visit) {
  while (true) {
    const size_t amp = query.find('&');
    const std::string_view whole = query.substr(0, amp);
    const size_t eq = whole.find('=');
    const std::string_view name = whole.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : whole.substr(eq + 1);
    if (!visit(name, value, whole) || amp == std::string_view::npos) return;
    query.remove_prefix(amp + 1);
  }
}

}  // namespace

void ApiKeySet::add(std::string_view key, std::string_view name) {
  if (const std::string problem = key_problem(key); !problem.empty()) {
    throw std::invalid_argument(problem);
  }
  if (const std::string problem = name_problem(name); !problem.empty()) {
    throw std::invalid_argument(problem);
  }
  std::string digest = sha256(key);
  if (digest.empty()) throw std::invalid_argument("cannot hash the API key (OpenSSL error)");
  const std::string final_name =
      name.empty() ? "key-" + std::to_string(names_by_digest_.size() + 1) : std::string(name);
  const auto [it, inserted] = names_by_digest_.emplace(std::move(digest), final_name);
  if (!inserted) throw std::invalid_argument("duplicate API key (same as \"" + it->second + "\")");
}

void ApiKeySet::add_list(const std::vector<std::string>& keys) {
  for (size_t i = 0; i < keys.size(); ++i) {
    try {
      add(keys[i]);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("api key " + std::to_string(i) + ": " + e.what());
    }
  }
}

void ApiKeySet::add_file_text(std::string_view text, std::string_view source) {
  size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;

    const std::string where = std::string(source) + ":" + std::to_string(line_number) + ": ";
    std::string_view name;
    std::string_view key = line;
    if (const size_t space = line.find_first_of(" \t"); space != std::string_view::npos) {
      name = line.substr(0, space);
      key = trim(line.substr(space));
      if (key.find_first_of(" \t") != std::string_view::npos) {
        throw std::invalid_argument(where + "expected \"key\", \"name:key\" or \"name key\"");
      }
    } else if (const size_t colon = line.find(':'); colon != std::string_view::npos) {
      name = line.substr(0, colon);
      key = line.substr(colon + 1);
    }
    if (key.size() != line.size() && name.empty()) {
      throw std::invalid_argument(where + "empty API key name");
    }
    try {
      add(key, name);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
  }
}

std::optional<std::string_view> ApiKeySet::match(std::string_view presented) const {
  if (presented.empty() || names_by_digest_.empty()) return std::nullopt;
  const auto it = names_by_digest_.find(sha256(presented));
  if (it == names_by_digest_.end()) return std::nullopt;
  return std::string_view(it->second);
}

std::optional<std::string> query_parameter(std::string_view query, std::string_view name) {
  std::optional<std::string> found;
  for_each_parameter(
      query, [&](std::string_view param_name, std::string_view value, std::string_view /*whole*/) {
        if (param_name != name) return true;
        found = percent_decode(value);
        return false;
      });
  return found;
}

std::string remove_query_parameter(std::string_view query, std::string_view name) {
  std::string out;
  out.reserve(query.size());
  for_each_parameter(
      query, [&](std::string_view param_name, std::string_view /*value*/, std::string_view whole) {
        if (param_name != name && !whole.empty()) {
          if (!out.empty()) out += '&';
          out += whole;
        }
        return true;
      });
  return out;
}

}  // namespace torii::gateway

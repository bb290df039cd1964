#include "common/error.hpp"

namespace torii {

namespace {
struct ErrorInfo {
  std::string_view name;
  int status;
  ErrorSide side;
};

constexpr ErrorInfo kErrorInfo[] = {
#define TORII_ERROR_INFO(name, status, side) {#name, status, ErrorSide::side},
    TORII_ERRORS(TORII_ERROR_INFO)
#undef TORII_ERROR_INFO
};
}  // namespace

std::string_view error_name(Error e) {
  std::string_view n = kErrorInfo[static_cast<size_t>(e)].name;
  n.remove_prefix(1);  // drop the 'k'
  return n;
}
int error_status(Error e) { return kErrorInfo[static_cast<size_t>(e)].status; }
ErrorSide error_side(Error e) { return kErrorInfo[static_cast<size_t>(e)].side; }

}  // namespace torii

#pragma once

namespace torii {
inline constexpr const char* kVersion = "0.1.0";
}
